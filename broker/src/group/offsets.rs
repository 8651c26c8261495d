//! Committed group offsets, kept durably as records in an internal stream
//! (the `__consumer_offsets` topic) through the same WAL and uploader as
//! client data, and in memory for OffsetFetch. The group's offsets partition
//! (a hash of the group id) decides which broker coordinates the group.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bytes::Bytes;
use floe_protocol::batch::{encode_batch, Record};
use floe_protocol::{RecordBatch, ResponseError};
use floe_storage::{AppendInput, StorageError, StreamStore};
use serde::{Deserialize, Serialize};

use crate::broker::{storage_error_code, Broker};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Partitions of the offsets topic: the unit by which groups will be spread
/// over brokers.
pub const OFFSETS_PARTITIONS: u32 = 16;
/// Kafka's offset.metadata.max.bytes default.
pub const MAX_METADATA_BYTES: usize = 4096;

/// A committed offset as OffsetFetch returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// One record of the offsets stream: a commit, or a deletion (`committed` None).
#[derive(Debug, Serialize, Deserialize)]
struct OffsetRecord {
    group: String,
    topic: String,
    partition: i32,
    committed: Option<Committed>,
}

type GroupOffsets = BTreeMap<(String, i32), Committed>;

pub struct OffsetStore {
    committed: Mutex<HashMap<String, GroupOffsets>>,
    /// Offsets partitions served here whose commits are still being read:
    /// their groups get COORDINATOR_LOAD_IN_PROGRESS, never "no offset".
    loading: Mutex<std::collections::HashSet<usize>>,
    /// Commits to one offsets partition are appended and applied in order.
    partition_locks: Vec<tokio::sync::Mutex<()>>,
}

/// The offsets partition of a group (Java's `abs(hashCode) % n` on UTF-16
/// would tie us to Kafka's placement; FNV-1a is stable and simple).
pub fn offsets_partition(group: &str) -> usize {
    let h =
        group.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (h % u64::from(OFFSETS_PARTITIONS)) as usize
}

impl Default for OffsetStore {
    fn default() -> Self {
        Self::new()
    }
}

impl OffsetStore {
    pub fn new() -> Self {
        Self {
            committed: Mutex::new(HashMap::new()),
            loading: Mutex::new(std::collections::HashSet::new()),
            partition_locks: (0..OFFSETS_PARTITIONS).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    /// Marks an offsets partition as loading, before its stream is served
    /// here: until [`OffsetStore::load_partition`] finishes, its groups wait.
    pub fn begin_load(&self, partition: usize) {
        self.loading.lock().expect("loading lock").insert(partition);
    }

    pub fn end_load(&self, partition: usize) {
        self.loading.lock().expect("loading lock").remove(&partition);
    }

    pub fn is_loading(&self, partition: usize) -> bool {
        self.loading.lock().expect("loading lock").contains(&partition)
    }

    /// Loads the committed offsets of one offsets partition (its stream was
    /// just assigned to this broker), replacing what was known of its groups;
    /// its groups are served again when it returns, loaded or not.
    pub async fn load_partition(
        &self,
        store: &StreamStore,
        stream: u64,
        partition: usize,
    ) -> Result<(), StorageError> {
        let loaded = self.read_partition(store, stream, partition).await;
        self.loading.lock().expect("loading lock").remove(&partition);
        loaded
    }

    async fn read_partition(
        &self,
        store: &StreamStore,
        stream: u64,
        partition: usize,
    ) -> Result<(), StorageError> {
        self.committed.lock().expect("offsets poisoned").retain(|g, _| offsets_partition(g) != partition);
        let offsets = store.offsets(stream)?;
        let mut at = offsets.start_offset;
        let mut loaded = 0usize;
        while at < offsets.high_watermark {
            let read = store.read(stream, at, 4 << 20).await?;
            if read.batches.is_empty() {
                break;
            }
            for bytes in read.batches {
                let batch = RecordBatch::parse_unchecked_crc(bytes)
                    .map_err(|e| StorageError::Invalid(format!("offsets stream {stream}: {e}")))?;
                at = batch.last_offset() + 1;
                for (_, record) in batch.records().unwrap_or_default() {
                    let parsed = match (&record.key, &record.value) {
                        (_, Some(v)) => serde_json::from_slice::<OffsetRecord>(v).ok(),
                        (Some(k), None) => deletion(k),
                        (None, None) => None,
                    };
                    if let Some(r) = parsed {
                        self.apply(r);
                        loaded += 1;
                    }
                }
            }
        }
        tracing::info!(partition, records = loaded, "committed offsets loaded");
        Ok(())
    }

    /// Forgets the groups of an offsets partition that moved away.
    pub fn forget_partition(&self, partition: usize) {
        self.loading.lock().expect("loading lock").remove(&partition);
        self.committed.lock().expect("offsets poisoned").retain(|g, _| offsets_partition(g) != partition);
    }

    fn apply(&self, r: OffsetRecord) {
        let mut all = self.committed.lock().expect("offsets poisoned");
        let group = all.entry(r.group.clone()).or_default();
        match r.committed {
            Some(c) => {
                group.insert((r.topic, r.partition), c);
            }
            None => {
                group.remove(&(r.topic, r.partition));
                if group.is_empty() {
                    all.remove(&r.group);
                }
            }
        }
    }

    /// Writes commits (or deletions) durably, then makes them visible.
    pub async fn write(
        &self,
        broker: &Broker,
        group: &str,
        entries: Vec<(String, i32, Option<Committed>)>,
    ) -> Result<(), ResponseError> {
        if entries.is_empty() {
            return Ok(());
        }
        let store = &broker.store;
        let stream = ensure_offsets_topic(broker).await?[offsets_partition(group)];
        let records: Vec<OffsetRecord> = entries
            .into_iter()
            .map(|(topic, partition, committed)| OffsetRecord {
                group: group.to_string(),
                topic,
                partition,
                committed,
            })
            .collect();
        // A deletion is a tombstone (null value), so key compaction drops the
        // offset's history and, after delete.retention.ms, the tombstone.
        let encoded: Vec<Record> = records
            .iter()
            .map(|r| Record {
                key: Some(Bytes::from(format!("{}\u{0}{}\u{0}{}", r.group, r.topic, r.partition))),
                value: r
                    .committed
                    .as_ref()
                    .map(|_| Bytes::from(serde_json::to_vec(r).expect("offset record serializes"))),
            })
            .collect();
        let now = now_ms();
        let batch = encode_batch(0, now, -1, -1, -1, &encoded);
        let input = AppendInput { bytes: batch, records: records.len() as u32, max_timestamp: now };
        let _order = self.partition_locks[offsets_partition(group)].lock().await;
        let appended = store.append(stream, input).map_err(|e| storage_error_code(&e))?;
        appended.durable().await.map_err(|e| storage_error_code(&e))?;
        for r in records {
            self.apply(r);
        }
        Ok(())
    }

    pub fn fetch(&self, group: &str, topic: &str, partition: i32) -> Option<Committed> {
        let all = self.committed.lock().expect("offsets poisoned");
        all.get(group)?.get(&(topic.to_string(), partition)).cloned()
    }

    /// Every committed offset of a group: (topic, partition) → offset.
    pub fn group(&self, group: &str) -> GroupOffsets {
        self.committed.lock().expect("offsets poisoned").get(group).cloned().unwrap_or_default()
    }

    pub fn groups(&self) -> Vec<String> {
        self.committed.lock().expect("offsets poisoned").keys().cloned().collect()
    }
}

/// The deletion a tombstone's key names: `group \0 topic \0 partition`
/// (topic names cannot hold a NUL, group ids could: split from the right).
fn deletion(key: &[u8]) -> Option<OffsetRecord> {
    let key = std::str::from_utf8(key).ok()?;
    let mut parts = key.rsplitn(3, '\u{0}');
    let partition = parts.next()?.parse().ok()?;
    let topic = parts.next()?.to_string();
    let group = parts.next()?.to_string();
    Some(OffsetRecord { group, topic, partition, committed: None })
}

/// The offsets topic's streams, creating the topic on first use.
pub async fn ensure_offsets_topic(broker: &Broker) -> Result<Vec<u64>, ResponseError> {
    if let Some(t) = broker.topic(OFFSETS_TOPIC) {
        return Ok(t.streams.clone());
    }
    let configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
    match broker.create_topic(OFFSETS_TOPIC, OFFSETS_PARTITIONS, configs).await {
        Ok(t) => Ok(t.streams),
        Err(StorageError::TopicExists(_)) => {
            broker.member.wait_for(broker.metadata().seq).await;
            broker.topic(OFFSETS_TOPIC).map(|t| t.streams).ok_or(ResponseError::CoordinatorNotAvailable)
        }
        Err(e) => {
            tracing::warn!(error = %e, "creating the offsets topic failed");
            Err(ResponseError::CoordinatorNotAvailable)
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
