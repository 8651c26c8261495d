//! The stream store: appends through the WAL, reads from the log cache or
//! objects, topics and producer ids through the metadata log.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::{Bytes, BytesMut};
use tokio::sync::{oneshot, watch, Notify};

use crate::block_cache::BlockCache;
use crate::config::StoreConfig;
use crate::error::{Result, StorageError};
use crate::meta::{MetaRecord, MetaState, MetadataLog, TopicMeta};
use crate::object_store_url::Bucket;
use crate::stream::{CachedBatch, Stream, StreamState};
use crate::wal::{Lsn, Wal, WalFailed, WalRecord};
use crate::StreamId;

/// A batch to append: bytes as the client sent them (the first 8 bytes, the
/// base offset, are overwritten), how many offsets it takes, its newest
/// timestamp.
#[derive(Debug, Clone)]
pub struct AppendInput {
    pub bytes: Bytes,
    pub records: u32,
    pub max_timestamp: i64,
}

/// An append that has its offsets and is on its way to disk.
#[must_use = "an append is acknowledged only once durable"]
pub struct Appended {
    pub base_offset: i64,
    durable: oneshot::Receiver<std::result::Result<Lsn, WalFailed>>,
}

impl Appended {
    /// Resolves once the batch is fsynced to the WAL.
    pub async fn durable(self) -> Result<i64> {
        match self.durable.await {
            Ok(Ok(_)) => Ok(self.base_offset),
            _ => Err(StorageError::WalClosed),
        }
    }
}

/// What a read returns: whole batches starting at or before the offset asked for.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    pub batches: Vec<Bytes>,
    pub high_watermark: i64,
    pub start_offset: i64,
}

/// The readable offsets of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOffsets {
    pub start_offset: i64,
    pub high_watermark: i64,
}

/// Where a timestamp search should start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampHint {
    /// First offset of the first chunk whose newest timestamp is at least the target.
    pub offset: i64,
}

/// Shared by the store handle and the uploader task.
pub(crate) struct Inner {
    pub config: StoreConfig,
    pub bucket: Bucket,
    pub meta: MetadataLog,
    pub wal: Wal,
    pub broker_epoch: u64,
    pub streams: RwLock<HashMap<StreamId, Arc<Stream>>>,
    /// Bytes appended and not yet committed in an object.
    pub pending_bytes: AtomicU64,
    /// Bytes held by all log caches.
    pub cached_bytes: AtomicU64,
    pub upload_now: Notify,
    pub object_seq: AtomicU64,
    pub blocks: BlockCache,
    /// Set when this broker was fenced: it must stop writing.
    pub fenced: AtomicBool,
    /// Uploads run one at a time (the task, `flush` and `shutdown` share it).
    pub upload_lock: tokio::sync::Mutex<()>,
    producer_ids: Mutex<(i64, i64)>,
}

/// The uploader task and the switch that stops it.
type UploaderHandle = (tokio::task::JoinHandle<()>, watch::Sender<bool>);

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct StreamStore {
    pub(crate) inner: Arc<Inner>,
    uploader: Arc<Mutex<Option<UploaderHandle>>>,
}

impl StreamStore {
    /// Loads metadata, registers this broker (fencing earlier incarnations),
    /// replays the WAL into the log cache and starts the uploader.
    pub async fn open(config: StoreConfig, bucket: Bucket) -> Result<Self> {
        let meta = MetadataLog::open(bucket.clone()).await?;
        let broker_id = config.broker_id;
        let state = meta
            .append_with(|s| {
                let broker_epoch = s.broker_epochs.get(&broker_id).copied().unwrap_or(0) + 1;
                let streams = s.streams.keys().copied().collect();
                Ok(vec![MetaRecord::BrokerRegistered { broker_id, broker_epoch, streams }])
            })
            .await?;
        let broker_epoch = state.broker_epochs[&broker_id];
        let wal_dir = config.wal_dir.clone();
        let segment = config.wal_segment_bytes;
        let (wal, recovered) = tokio::task::spawn_blocking(move || Wal::open(&wal_dir, segment))
            .await
            .map_err(|e| StorageError::Wal(std::io::Error::other(e)))??;

        let mut streams = HashMap::new();
        for (&id, s) in &state.streams {
            let st = StreamState::from_meta(s);
            streams.insert(id, st);
        }
        let (mut replayed, mut pending) = (0usize, 0u64);
        for rec in recovered {
            let r = rec.record;
            let Some(st) = streams.get_mut(&r.stream) else { continue };
            if r.base_offset < st.next_offset {
                continue; // already in a committed object
            }
            if r.base_offset > st.next_offset {
                tracing::error!(
                    stream = r.stream,
                    expected = st.next_offset,
                    found = r.base_offset,
                    "WAL has a gap; skipping the entry"
                );
                continue;
            }
            let end = r.base_offset + i64::from(r.records);
            pending += r.payload.len() as u64;
            st.cache.push_back(CachedBatch {
                base_offset: r.base_offset,
                end_offset: end,
                max_timestamp: r.max_timestamp,
                lsn: rec.lsn,
                bytes: r.payload,
            });
            st.next_offset = end;
            replayed += 1;
        }
        tracing::info!(broker_id, broker_epoch, replayed, pending_bytes = pending, "stream store opened");
        let streams = streams.into_iter().map(|(id, st)| (id, Stream::new(id, st))).collect();
        let inner = Arc::new(Inner {
            blocks: BlockCache::new(config.block_cache_bytes),
            config,
            bucket,
            meta,
            wal,
            broker_epoch,
            streams: RwLock::new(streams),
            pending_bytes: AtomicU64::new(pending),
            cached_bytes: AtomicU64::new(pending),
            upload_now: Notify::new(),
            object_seq: AtomicU64::new(0),
            fenced: AtomicBool::new(false),
            upload_lock: tokio::sync::Mutex::new(()),
            producer_ids: Mutex::new((0, 0)),
        });
        // What the WAL replayed goes to the object store before the broker
        // serves anything: losing this disk right after a crash-restart then
        // loses nothing that was acknowledged before the crash.
        if pending > 0 {
            if let Err(error) = crate::uploader::upload_once(&inner).await {
                tracing::warn!(%error, "uploading the replayed WAL failed; the uploader retries");
            }
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(crate::uploader::run(inner.clone(), stop_rx));
        Ok(Self { inner, uploader: Arc::new(Mutex::new(Some((task, stop_tx)))) })
    }

    /// The metadata as of the last change.
    pub fn metadata(&self) -> Arc<MetaState> {
        self.inner.meta.state()
    }

    pub fn broker_epoch(&self) -> u64 {
        self.inner.broker_epoch
    }

    fn stream(&self, id: StreamId) -> Result<Arc<Stream>> {
        let streams = self.inner.streams.read().expect("streams lock poisoned");
        streams.get(&id).cloned().ok_or(StorageError::UnknownStream(id))
    }

    /// Assigns offsets to `input` and queues it for the WAL. The offsets are
    /// final; the data becomes readable (and should be acknowledged) once
    /// [`Appended::durable`] resolves.
    pub fn append(&self, id: StreamId, input: AppendInput) -> Result<Appended> {
        let inner = &self.inner;
        if inner.fenced.load(Ordering::Acquire) {
            return Err(StorageError::Fenced("this broker was fenced by a newer one".into()));
        }
        let pending = inner.pending_bytes.load(Ordering::Acquire);
        if pending > inner.config.max_pending_upload_bytes {
            inner.upload_now.notify_one();
            return Err(StorageError::Backpressure { pending, limit: inner.config.max_pending_upload_bytes });
        }
        if input.records == 0 || input.bytes.len() < 8 {
            return Err(StorageError::Invalid("an append needs at least one record".into()));
        }
        let stream = self.stream(id)?;
        let mut st = stream.lock();
        if st.deleted {
            return Err(StorageError::UnknownStream(id));
        }
        let base_offset = st.next_offset;
        let end = base_offset + i64::from(input.records);
        let mut stamped = BytesMut::from(&input.bytes[..]);
        stamped[..8].copy_from_slice(&base_offset.to_be_bytes());
        let bytes = stamped.freeze();
        let (tx, rx) = oneshot::channel();
        let on_durable = stream.clone();
        let record = WalRecord {
            stream: id,
            base_offset,
            max_timestamp: input.max_timestamp,
            records: input.records,
            payload: bytes.clone(),
        };
        let lsn = inner.wal.append(
            record,
            Box::new(move |res| {
                if res.is_ok() {
                    on_durable.mark_durable(end);
                }
                let _ = tx.send(res);
            }),
        )?;
        let len = bytes.len() as u64;
        st.cache.push_back(CachedBatch {
            base_offset,
            end_offset: end,
            max_timestamp: input.max_timestamp,
            lsn,
            bytes,
        });
        st.next_offset = end;
        drop(st);
        let pending = inner.pending_bytes.fetch_add(len, Ordering::AcqRel) + len;
        inner.cached_bytes.fetch_add(len, Ordering::AcqRel);
        if pending >= inner.config.upload_bytes {
            inner.upload_now.notify_one();
        }
        Ok(Appended { base_offset, durable: rx })
    }

    /// Start offset and high watermark of a stream.
    pub fn offsets(&self, id: StreamId) -> Result<StreamOffsets> {
        let stream = self.stream(id)?;
        let start_offset = stream.lock().start_offset;
        Ok(StreamOffsets { start_offset, high_watermark: stream.high_watermark() })
    }

    /// Latency of the WAL's queue and group commits since start.
    pub fn wal_stats(&self) -> &crate::wal::WalStats {
        self.inner.wal.stats()
    }

    /// Watches durability: changes whenever new data may be readable.
    pub fn data_arrivals(&self) -> watch::Receiver<Lsn> {
        self.inner.wal.watch_durable()
    }

    /// Reads whole batches from `offset` up to about `max_bytes` (at least one
    /// batch if any is readable). Below the start offset or above the high
    /// watermark is `OffsetOutOfRange`.
    pub async fn read(&self, id: StreamId, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        let stream = self.stream(id)?;
        let high_watermark = stream.high_watermark();
        let (start_offset, source) = {
            let st = stream.lock();
            if offset < st.start_offset || offset > high_watermark {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    start: st.start_offset,
                    end: high_watermark,
                });
            }
            if offset == high_watermark {
                return Ok(ReadResult { batches: vec![], high_watermark, start_offset: st.start_offset });
            }
            if let Some(i) = st.cache_index(offset) {
                let mut batches = Vec::new();
                let mut size = 0usize;
                for b in st.cache.iter().skip(i) {
                    if b.base_offset >= high_watermark || (size > 0 && size + b.bytes.len() > max_bytes) {
                        break;
                    }
                    size += b.bytes.len();
                    batches.push(b.bytes.clone());
                }
                return Ok(ReadResult { batches, high_watermark, start_offset: st.start_offset });
            }
            let Some((key, range)) = st.range_for(offset).cloned() else {
                return Err(StorageError::Invalid(format!(
                    "stream {id} has no data for offset {offset} below its high watermark"
                )));
            };
            let next = st.range_for(range.end_offset).cloned();
            (st.start_offset, (key, range, next))
        };
        let (key, range, next) = source;
        // Read ahead: a reader in this range will want the next one, so its
        // GET overlaps with serving this one instead of stalling the reader
        // once per range.
        if let Some((next_key, next_range)) = next {
            self.inner.blocks.prefetch(&self.inner.bucket, next_key, next_range);
        }
        let data = self.inner.blocks.get(&self.inner.bucket, &key, &range).await?;
        let batches = crate::block_cache::batches_from(&data, offset, max_bytes, &key)?;
        Ok(ReadResult { batches, high_watermark, start_offset })
    }

    /// Where to start looking for the first record with timestamp >= `ts`:
    /// the first object range or cached batch whose newest timestamp reaches it.
    pub fn timestamp_hint(&self, id: StreamId, ts: i64) -> Result<Option<TimestampHint>> {
        let stream = self.stream(id)?;
        let hw = stream.high_watermark();
        let st = stream.lock();
        let in_objects = st
            .ranges
            .iter()
            .find(|(_, r)| r.max_timestamp >= ts && r.end_offset > st.start_offset)
            .map(|(_, r)| r.start_offset.max(st.start_offset));
        let found = in_objects.or_else(|| {
            st.cache
                .iter()
                .find(|b| b.end_offset > st.uploaded_end && b.base_offset < hw && b.max_timestamp >= ts)
                .map(|b| b.base_offset)
        });
        Ok(found.map(|offset| TimestampHint { offset }))
    }

    /// Creates a topic of `partitions` new streams.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta> {
        let state = self
            .inner
            .meta
            .append_with(|s| {
                let first = s.next_stream_id;
                let topic = TopicMeta {
                    name: name.to_string(),
                    id: random_id(),
                    streams: (first..first + u64::from(partitions)).collect(),
                    configs,
                };
                Ok(vec![MetaRecord::TopicCreated { topic }])
            })
            .await?;
        let topic = state.topics[name].clone();
        self.open_streams(&state, &topic.streams);
        Ok(topic)
    }

    /// Grows a topic to `total` partitions.
    pub async fn add_partitions(&self, name: &str, total: u32) -> Result<TopicMeta> {
        let state = self
            .inner
            .meta
            .append_with(|s| {
                let topic = s.topics.get(name).ok_or_else(|| StorageError::UnknownTopic(name.into()))?;
                let have = topic.streams.len() as u64;
                if u64::from(total) <= have {
                    return Err(StorageError::Invalid(format!(
                        "topic {name} has {have} partitions; the new count must be larger"
                    )));
                }
                let first = s.next_stream_id;
                let streams = (first..first + u64::from(total) - have).collect();
                Ok(vec![MetaRecord::PartitionsAdded { name: name.into(), streams }])
            })
            .await?;
        let topic = state.topics[name].clone();
        self.open_streams(&state, &topic.streams);
        Ok(topic)
    }

    /// Replaces a topic's stored configs.
    pub async fn set_topic_configs(&self, name: &str, configs: BTreeMap<String, String>) -> Result<()> {
        self.inner.meta.append(vec![MetaRecord::TopicConfigsSet { name: name.into(), configs }]).await?;
        Ok(())
    }

    /// Deletes a topic: its streams stop taking appends and reads at once.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let state = self.inner.meta.state();
        let streams = state
            .topics
            .get(name)
            .map(|t| t.streams.clone())
            .ok_or_else(|| StorageError::UnknownTopic(name.into()))?;
        self.inner.meta.append(vec![MetaRecord::TopicDeleted { name: name.into() }]).await?;
        let mut map = self.inner.streams.write().expect("streams lock poisoned");
        for id in streams {
            if let Some(stream) = map.remove(&id) {
                let mut st = stream.lock();
                st.deleted = true;
                let cached: u64 = st.cache.iter().map(|b| b.bytes.len() as u64).sum();
                let pending: u64 = st
                    .cache
                    .iter()
                    .filter(|b| b.base_offset >= st.uploaded_end)
                    .map(|b| b.bytes.len() as u64)
                    .sum();
                st.cache.clear();
                self.inner.cached_bytes.fetch_sub(cached, Ordering::AcqRel);
                self.inner.pending_bytes.fetch_sub(pending, Ordering::AcqRel);
            }
        }
        Ok(())
    }

    fn open_streams(&self, state: &MetaState, ids: &[StreamId]) {
        let mut map = self.inner.streams.write().expect("streams lock poisoned");
        for &id in ids {
            if map.contains_key(&id) {
                continue;
            }
            let st = StreamState::from_meta(&state.streams.get(&id).cloned().unwrap_or_default());
            map.insert(id, Stream::new(id, st));
        }
    }

    /// A new producer id, from a block reserved in the metadata log.
    pub async fn allocate_producer_id(&self) -> Result<i64> {
        const BLOCK: i64 = 1000;
        {
            let mut ids = self.inner.producer_ids.lock().expect("producer ids poisoned");
            if ids.0 < ids.1 {
                ids.0 += 1;
                return Ok(ids.0 - 1);
            }
        }
        let broker_id = self.inner.config.broker_id;
        let state = self
            .inner
            .meta
            .append_with(|s| {
                Ok(vec![MetaRecord::ProducerIdsAllocated {
                    broker_id,
                    first: s.next_producer_id,
                    count: BLOCK,
                }])
            })
            .await?;
        let end = state.next_producer_id;
        let mut ids = self.inner.producer_ids.lock().expect("producer ids poisoned");
        *ids = (end - BLOCK + 1, end);
        Ok(end - BLOCK)
    }

    /// Asks the uploader to upload what waits now, and waits until everything
    /// appended before the call is committed in the object store.
    pub async fn flush(&self) -> Result<()> {
        crate::uploader::upload_all(&self.inner).await
    }

    /// Graceful stop: the WAL takes no more appends, everything is uploaded and
    /// committed, the WAL is trimmed.
    pub async fn shutdown(&self) -> Result<()> {
        let handle = self.uploader.lock().expect("uploader handle poisoned").take();
        if let Some((task, stop)) = handle {
            let _ = stop.send(true);
            let _ = task.await;
        }
        let wal = self.inner.wal.clone();
        tokio::task::spawn_blocking(move || wal.close())
            .await
            .map_err(|e| StorageError::Wal(std::io::Error::other(e)))?;
        crate::uploader::upload_all(&self.inner).await
    }
}

/// 16 bytes that differ between calls and processes, for topic ids.
fn random_id() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

impl StreamStore {
    /// The batches the log cache holds for a stream, oldest first (after a
    /// restart: what the WAL replayed).
    pub fn cached_batches(&self, id: StreamId) -> Vec<Bytes> {
        match self.stream(id) {
            Ok(stream) => stream.lock().cache.iter().map(|b| b.bytes.clone()).collect(),
            Err(_) => Vec::new(),
        }
    }
}
