//! Cluster metadata: a snapshot plus an append-only log of records in the
//! object store, the only place metadata lives.
//!
//! Entry `n` of the log is the object `meta/log/{n:020}.json`, written with a
//! create-only put: of two writers racing for the same number exactly one
//! wins, so a deposed writer learns it is fenced instead of forking history.
//! Every `SNAPSHOT_EVERY` entries the writer stores the whole state as
//! `meta/snapshot/{n:020}.json` and deletes the log entries it covers.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::object::ObjectRange;
use crate::object_store_url::Bucket;
use crate::StreamId;

const SNAPSHOT_EVERY: u64 = 512;

/// A topic as stored: its partitions are streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    /// 16 random bytes, as Kafka's topic id (a UUID).
    pub id: [u8; 16],
    /// Stream of each partition, by partition index.
    pub streams: Vec<StreamId>,
    pub configs: BTreeMap<String, String>,
}

impl TopicMeta {
    /// The stream of partition `partition`, if the topic has it.
    pub fn stream(&self, partition: i32) -> Option<StreamId> {
        usize::try_from(partition).ok().and_then(|i| self.streams.get(i).copied())
    }
}

/// One stream's committed state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    /// Bumped whenever a broker takes the stream over; commits from an older
    /// epoch are refused.
    pub epoch: u32,
    /// First offset still readable (retention moves it).
    pub start_offset: i64,
    /// Every offset below this is in a committed object.
    pub end_offset: i64,
    /// Committed ranges in offset order, with the object key holding each.
    pub ranges: Vec<(String, ObjectRange)>,
}

/// One metadata log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetaRecord {
    /// A broker (re)started: its epoch fences every earlier incarnation, and
    /// it takes over `streams` (all of them, for a single broker) at a new epoch.
    BrokerRegistered {
        broker_id: i32,
        broker_epoch: u64,
        streams: Vec<StreamId>,
    },
    TopicCreated {
        topic: TopicMeta,
    },
    TopicDeleted {
        name: String,
    },
    PartitionsAdded {
        name: String,
        streams: Vec<StreamId>,
    },
    TopicConfigsSet {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// An uploaded object's ranges become part of their streams.
    ObjectCommitted {
        key: String,
        size: u64,
        broker_id: i32,
        broker_epoch: u64,
        ranges: Vec<ObjectRange>,
    },
    /// A block of producer ids handed to a broker.
    ProducerIdsAllocated {
        broker_id: i32,
        first: i64,
        count: i64,
    },
}

/// The state the log describes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    /// Sequence number of the last applied log entry (0: none).
    pub seq: u64,
    pub broker_epochs: BTreeMap<i32, u64>,
    pub topics: BTreeMap<String, TopicMeta>,
    pub streams: BTreeMap<StreamId, StreamMeta>,
    pub next_stream_id: StreamId,
    pub next_producer_id: i64,
}

impl MetaState {
    /// Checks `record` against the state; an error leaves the state unchanged.
    pub fn validate(&self, record: &MetaRecord) -> Result<()> {
        match record {
            MetaRecord::BrokerRegistered { broker_id, broker_epoch, .. } => {
                if self.broker_epochs.get(broker_id).is_some_and(|e| e >= broker_epoch) {
                    return Err(StorageError::Fenced(format!(
                        "broker {broker_id} epoch {broker_epoch} is not newer than the registered one"
                    )));
                }
            }
            MetaRecord::TopicCreated { topic } => {
                if self.topics.contains_key(&topic.name) {
                    return Err(StorageError::TopicExists(topic.name.clone()));
                }
            }
            MetaRecord::TopicDeleted { name }
            | MetaRecord::PartitionsAdded { name, .. }
            | MetaRecord::TopicConfigsSet { name, .. } => {
                if !self.topics.contains_key(name) {
                    return Err(StorageError::UnknownTopic(name.clone()));
                }
            }
            MetaRecord::ObjectCommitted { broker_id, broker_epoch, ranges, key, .. } => {
                if self.broker_epochs.get(broker_id) != Some(broker_epoch) {
                    return Err(StorageError::Fenced(format!(
                        "commit of {key} by broker {broker_id} at stale epoch {broker_epoch}"
                    )));
                }
                for r in ranges {
                    // A deleted stream's data is simply dropped.
                    let Some(s) = self.streams.get(&r.stream) else { continue };
                    if r.epoch != s.epoch {
                        return Err(StorageError::Fenced(format!(
                            "commit of {key}: stream {} is at epoch {}, not {}",
                            r.stream, s.epoch, r.epoch
                        )));
                    }
                    if r.start_offset != s.end_offset {
                        return Err(StorageError::Invalid(format!(
                            "commit of {key}: stream {} continues at {}, range starts at {}",
                            r.stream, s.end_offset, r.start_offset
                        )));
                    }
                }
            }
            MetaRecord::ProducerIdsAllocated { first, .. } => {
                if *first != self.next_producer_id {
                    return Err(StorageError::Invalid("producer id block out of order".into()));
                }
            }
        }
        Ok(())
    }

    /// Applies a validated record.
    pub fn apply(&mut self, record: &MetaRecord) {
        match record {
            MetaRecord::BrokerRegistered { broker_id, broker_epoch, streams } => {
                self.broker_epochs.insert(*broker_id, *broker_epoch);
                for id in streams {
                    if let Some(s) = self.streams.get_mut(id) {
                        s.epoch += 1;
                    }
                }
            }
            MetaRecord::TopicCreated { topic } => {
                for &id in &topic.streams {
                    self.streams.insert(id, StreamMeta::default());
                    self.next_stream_id = self.next_stream_id.max(id + 1);
                }
                self.topics.insert(topic.name.clone(), topic.clone());
            }
            MetaRecord::TopicDeleted { name } => {
                if let Some(t) = self.topics.remove(name) {
                    for id in t.streams {
                        self.streams.remove(&id);
                    }
                }
            }
            MetaRecord::PartitionsAdded { name, streams } => {
                if let Some(t) = self.topics.get_mut(name) {
                    for &id in streams {
                        t.streams.push(id);
                        self.streams.insert(id, StreamMeta::default());
                        self.next_stream_id = self.next_stream_id.max(id + 1);
                    }
                }
            }
            MetaRecord::TopicConfigsSet { name, configs } => {
                if let Some(t) = self.topics.get_mut(name) {
                    t.configs = configs.clone();
                }
            }
            MetaRecord::ObjectCommitted { key, ranges, .. } => {
                for r in ranges {
                    if let Some(s) = self.streams.get_mut(&r.stream) {
                        s.end_offset = r.end_offset;
                        s.ranges.push((key.clone(), r.clone()));
                    }
                }
            }
            MetaRecord::ProducerIdsAllocated { first, count, .. } => {
                self.next_producer_id = first + count;
            }
        }
    }
}

/// The metadata log of one bucket. Appends are serialised; the state after
/// each append is visible through [`MetadataLog::state`].
pub struct MetadataLog {
    bucket: Bucket,
    state: tokio::sync::Mutex<MetaState>,
    snapshot: std::sync::RwLock<Arc<MetaState>>,
}

impl MetadataLog {
    /// Loads the newest snapshot and every log entry after it.
    pub async fn open(bucket: Bucket) -> Result<Self> {
        let mut state = MetaState::default();
        let snapshots = list_seqs(&bucket, "meta/snapshot/").await?;
        if let Some(&seq) = snapshots.last() {
            let bytes = bucket.store.get(&bucket.key(&snapshot_name(seq))).await?.bytes().await?;
            state = serde_json::from_slice(&bytes)
                .map_err(|e| StorageError::CorruptMetadata { seq, reason: e.to_string() })?;
        }
        let entries = list_seqs(&bucket, "meta/log/").await?;
        let base = state.seq;
        for seq in entries.into_iter().filter(|&s| s > base) {
            if seq != state.seq + 1 {
                return Err(StorageError::CorruptMetadata {
                    seq,
                    reason: format!("gap after entry {}", state.seq),
                });
            }
            let bytes = bucket.store.get(&bucket.key(&log_name(seq))).await?.bytes().await?;
            let records: Vec<MetaRecord> = serde_json::from_slice(&bytes)
                .map_err(|e| StorageError::CorruptMetadata { seq, reason: e.to_string() })?;
            for r in &records {
                state.apply(r);
            }
            state.seq = seq;
        }
        tracing::info!(seq = state.seq, topics = state.topics.len(), "metadata loaded");
        let snapshot = std::sync::RwLock::new(Arc::new(state.clone()));
        Ok(Self { bucket, state: tokio::sync::Mutex::new(state), snapshot })
    }

    /// The state after the last successful append.
    pub fn state(&self) -> Arc<MetaState> {
        self.snapshot.read().expect("metadata lock poisoned").clone()
    }

    /// Validates `records` in order, writes them as the next log entry and
    /// applies them. Either all are applied or none.
    pub async fn append(&self, records: Vec<MetaRecord>) -> Result<Arc<MetaState>> {
        self.append_with(|_| Ok(records)).await
    }

    /// Like [`MetadataLog::append`], with records computed from the current
    /// state under the append lock (ids, epochs, offsets need no second look).
    pub async fn append_with(
        &self,
        make: impl FnOnce(&MetaState) -> Result<Vec<MetaRecord>>,
    ) -> Result<Arc<MetaState>> {
        let mut state = self.state.lock().await;
        let records = make(&state)?;
        let mut next = state.clone();
        for r in &records {
            next.validate(r)?;
            next.apply(r);
        }
        next.seq = state.seq + 1;
        let body = serde_json::to_vec(&records).expect("records serialize");
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self
            .bucket
            .store
            .put_opts(&self.bucket.key(&log_name(next.seq)), PutPayload::from(body), opts)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(StorageError::Fenced(format!(
                    "metadata entry {} was written by another broker",
                    next.seq
                )));
            }
            Err(e) => return Err(e.into()),
        }
        *state = next;
        let shared = Arc::new(state.clone());
        *self.snapshot.write().expect("metadata lock poisoned") = shared.clone();
        if state.seq % SNAPSHOT_EVERY == 0 {
            self.write_snapshot(&state).await;
        }
        Ok(shared)
    }

    /// Stores the whole state and drops the log entries it covers. Failure is
    /// harmless (the log still holds everything), so it is only logged.
    async fn write_snapshot(&self, state: &MetaState) {
        let body = serde_json::to_vec(state).expect("state serializes");
        let key = self.bucket.key(&snapshot_name(state.seq));
        if let Err(error) = self.bucket.store.put(&key, PutPayload::from(body)).await {
            tracing::warn!(%error, seq = state.seq, "metadata snapshot failed; the log keeps growing");
            return;
        }
        let result: Result<()> = async {
            // Entries of the last window stay, so a writer that is a little
            // behind still collides with them instead of writing unseen.
            for seq in list_seqs(&self.bucket, "meta/log/").await? {
                if seq + SNAPSHOT_EVERY <= state.seq {
                    self.bucket.store.delete(&self.bucket.key(&log_name(seq))).await?;
                }
            }
            for seq in list_seqs(&self.bucket, "meta/snapshot/").await? {
                if seq < state.seq {
                    self.bucket.store.delete(&self.bucket.key(&snapshot_name(seq))).await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, "cleaning up covered metadata entries failed");
        }
    }
}

fn log_name(seq: u64) -> String {
    format!("meta/log/{seq:020}.json")
}

fn snapshot_name(seq: u64) -> String {
    format!("meta/snapshot/{seq:020}.json")
}

async fn list_seqs(bucket: &Bucket, dir: &str) -> Result<Vec<u64>> {
    let prefix = bucket.key(dir.trim_end_matches('/'));
    let metas: Vec<_> = bucket.store.list(Some(&prefix)).try_collect().await?;
    let mut seqs: Vec<u64> =
        metas.iter().filter_map(|m| m.location.filename()?.strip_suffix(".json")?.parse().ok()).collect();
    seqs.sort_unstable();
    Ok(seqs)
}

#[cfg(test)]
mod tests;
