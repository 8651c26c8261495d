//! The stream store: the streams this broker owns, appended through the WAL,
//! read from the log cache or objects, uploaded and committed through a
//! [`Committer`]. Which streams it holds is decided outside (the controller's
//! assignments); the store enforces it at append time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use tokio::sync::{oneshot, watch, Notify};

use crate::block_cache::BlockCache;
use crate::config::StoreConfig;
use crate::error::{Result, StorageError};
use crate::meta::{StreamMeta, WriteLease};
use crate::object::ObjectRange;
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
    lease: Arc<dyn WriteLease>,
}

impl Appended {
    /// Resolves once the batch is fsynced to the WAL, and only while this
    /// broker's lease holds: after it runs out, the controller may hand the
    /// stream to another broker, so nothing more is acknowledged here.
    pub async fn durable(self) -> Result<i64> {
        match self.durable.await {
            Ok(Ok(_)) if Instant::now() < self.lease.valid_until() => Ok(self.base_offset),
            Ok(Ok(_)) => Err(StorageError::LeaseExpired),
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

/// An uploaded object to make part of its streams.
#[derive(Debug, Clone)]
pub struct ObjectCommit {
    pub key: String,
    pub size: u64,
    pub ranges: Vec<ObjectRange>,
}

/// What the committer did with an object's ranges.
#[derive(Debug, Clone, Default)]
pub struct CommitOutcome {
    /// Streams whose ranges were not committed.
    pub refused: Vec<Refusal>,
}

/// A stream whose range a commit refused, and why.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub stream: StreamId,
    pub reason: String,
    /// Owned elsewhere or at a newer epoch: this broker drops the stream.
    /// Otherwise the range did not continue the stream, which is committed
    /// up to `committed_end`: nothing is dropped, the WAL is not trimmed.
    pub fenced: bool,
    pub committed_end: i64,
}

/// Makes uploaded objects part of their streams: the controller, in process
/// for one node, over gRPC in a cluster. Errors say what to do:
/// `Fenced` (this broker incarnation is over), retriable (try the same commit
/// again; a commit that landed is recognised by its key), anything else
/// (give the object up).
pub trait Committer: Send + Sync + 'static {
    fn commit(&self, commit: ObjectCommit) -> BoxFuture<'_, Result<CommitOutcome>>;
}

/// An uploaded object whose commit has not been confirmed yet.
pub(crate) struct PendingCommit {
    pub commit: ObjectCommit,
    pub cutoff: Lsn,
    pub bytes: u64,
}

/// Shared by the store handle and the uploader task.
pub(crate) struct Inner {
    pub config: StoreConfig,
    pub bucket: Bucket,
    pub committer: Arc<dyn Committer>,
    /// This broker's lease from the controller: nothing is acknowledged after it runs out.
    pub lease: Arc<dyn WriteLease>,
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
    /// Uploads run one at a time (the task, `flush`, `seal` and `shutdown` share it).
    pub upload_lock: tokio::sync::Mutex<Option<PendingCommit>>,
}

impl Inner {
    /// Removes a stream from this broker: no more appends or reads here, and
    /// its bytes leave the accounting (the one place that subtracts them).
    pub(crate) fn remove_stream(&self, id: StreamId) -> Option<Arc<Stream>> {
        let stream = self.streams.write().expect("streams lock poisoned").remove(&id)?;
        let mut st = stream.lock();
        st.deleted = true;
        let cached: u64 = st.cache.iter().map(|b| b.bytes.len() as u64).sum();
        let pending: u64 =
            st.cache.iter().filter(|b| b.base_offset >= st.uploaded_end).map(|b| b.bytes.len() as u64).sum();
        st.cache.clear();
        drop(st);
        sub_saturating(&self.cached_bytes, cached);
        sub_saturating(&self.pending_bytes, pending);
        Some(stream)
    }
}

pub(crate) fn sub_saturating(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some(v.saturating_sub(n)));
}

/// The uploader task and the switch that stops it.
type UploaderHandle = (tokio::task::JoinHandle<()>, watch::Sender<bool>);

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct StreamStore {
    pub(crate) inner: Arc<Inner>,
    uploader: Arc<Mutex<Option<UploaderHandle>>>,
}

/// Where the store lives and whom it answers to.
pub struct StoreContext {
    pub bucket: Bucket,
    pub committer: Arc<dyn Committer>,
    pub lease: Arc<dyn WriteLease>,
    pub broker_epoch: u64,
}

impl StreamStore {
    /// Opens the WAL, replays it into the streams this broker owns (`owned`,
    /// as the metadata log has them), uploads what it replayed before
    /// returning, and starts the uploader. WAL entries of streams not owned
    /// here are skipped: they were recovered elsewhere or never acknowledged.
    pub async fn open(
        config: StoreConfig,
        ctx: StoreContext,
        owned: Vec<(StreamId, StreamMeta)>,
    ) -> Result<Self> {
        let StoreContext { bucket, committer, lease, broker_epoch } = ctx;
        let wal_dir = config.wal_dir.clone();
        let segment = config.wal_segment_bytes;
        let (wal, recovered) = tokio::task::spawn_blocking(move || Wal::open(&wal_dir, segment))
            .await
            .map_err(|e| StorageError::Wal(std::io::Error::other(e)))??;

        let mut streams: HashMap<StreamId, StreamState> =
            owned.iter().map(|(id, s)| (*id, StreamState::from_meta(s))).collect();
        let (mut replayed, mut skipped, mut pending) = (0usize, 0usize, 0u64);
        for rec in recovered {
            let r = rec.record;
            let Some(st) = streams.get_mut(&r.stream) else {
                skipped += 1;
                continue;
            };
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
        tracing::info!(
            broker_id = config.broker_id,
            broker_epoch,
            streams = streams.len(),
            replayed,
            skipped,
            pending_bytes = pending,
            "stream store opened"
        );
        let streams = streams.into_iter().map(|(id, st)| (id, Stream::new(id, st))).collect();
        let inner = Arc::new(Inner {
            blocks: BlockCache::new(config.block_cache_bytes),
            config,
            bucket,
            committer,
            lease,
            wal,
            broker_epoch,
            streams: RwLock::new(streams),
            pending_bytes: AtomicU64::new(pending),
            cached_bytes: AtomicU64::new(pending),
            upload_now: Notify::new(),
            object_seq: AtomicU64::new(0),
            fenced: AtomicBool::new(false),
            upload_lock: tokio::sync::Mutex::new(None),
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

    /// Acknowledged bytes not yet committed to the object store.
    pub fn pending_upload_bytes(&self) -> u64 {
        self.inner.pending_bytes.load(Ordering::Acquire)
    }

    /// The bucket this store uploads to.
    pub fn bucket(&self) -> &Bucket {
        &self.inner.bucket
    }

    pub fn broker_epoch(&self) -> u64 {
        self.inner.broker_epoch
    }

    /// Whether this broker incarnation was fenced (it must stop).
    pub fn is_fenced(&self) -> bool {
        self.inner.fenced.load(Ordering::Acquire)
    }

    pub(crate) fn stream(&self, id: StreamId) -> Result<Arc<Stream>> {
        let streams = self.inner.streams.read().expect("streams lock poisoned");
        streams.get(&id).cloned().ok_or(StorageError::UnknownStream(id))
    }

    /// Whether this store serves `id` (owned and not being handed over).
    pub fn serves(&self, id: StreamId) -> bool {
        self.stream(id).is_ok_and(|s| !s.lock().sealed)
    }

    /// Streams this store holds, with their epochs.
    pub fn stream_epochs(&self) -> Vec<(StreamId, u32)> {
        let streams = self.inner.streams.read().expect("streams lock poisoned");
        streams.values().map(|s| (s.id, s.lock().epoch)).collect()
    }

    /// Starts serving a stream assigned to this broker, at its committed end.
    /// A copy still held here is kept only if it ends exactly there (a move
    /// that came back before anyone wrote); a copy that differs is stale
    /// (the stream was written elsewhere meanwhile) and is rebuilt.
    /// Returns whether the stream was (re)built from the metadata.
    pub fn open_stream(&self, id: StreamId, meta: &StreamMeta) -> bool {
        {
            let map = self.inner.streams.read().expect("streams lock poisoned");
            if let Some(stream) = map.get(&id) {
                let mut st = stream.lock();
                if st.next_offset == meta.end_offset && st.uploaded_end == meta.end_offset {
                    st.epoch = st.epoch.max(meta.epoch);
                    st.sealed = false;
                    return false;
                }
            }
        }
        if self.inner.remove_stream(id).is_some() {
            tracing::warn!(
                stream = id,
                end_offset = meta.end_offset,
                "a stale copy of the stream was rebuilt"
            );
        }
        let mut map = self.inner.streams.write().expect("streams lock poisoned");
        map.insert(id, Stream::new(id, StreamState::from_meta(meta)));
        true
    }

    /// Stops taking appends for `id`, waits until what it acknowledged is
    /// committed, and returns its committed end offset. The stream stays
    /// readable here until [`StreamStore::remove_stream`].
    pub async fn seal(&self, id: StreamId) -> Result<i64> {
        let stream = self.stream(id)?;
        let end = {
            let mut st = stream.lock();
            st.sealed = true;
            st.next_offset
        };
        // Bounded: each round either uploads or waits (up to 50 ms) on the
        // WAL, and the caller gives up a move that takes too long.
        let mut durable = self.inner.wal.watch_durable();
        for _ in 0..200 {
            // Seen before looking, so that a change after the look ends the wait below.
            durable.borrow_and_update();
            if stream.high_watermark() >= end {
                if stream.lock().uploaded_end >= end {
                    return Ok(end);
                }
                if crate::uploader::upload_once(&self.inner).await? {
                    continue;
                }
                // Nothing went up: the WAL marks a stream durable a moment
                // before it publishes the durable LSN the upload cuts at.
            }
            let _ = tokio::time::timeout(std::time::Duration::from_millis(50), durable.changed()).await;
        }
        Err(StorageError::Unavailable(format!("stream {id}: its tail could not be committed")))
    }

    /// Lets a sealed stream take appends again (a move that was called off).
    pub fn unseal(&self, id: StreamId) {
        if let Ok(stream) = self.stream(id) {
            stream.lock().sealed = false;
        }
    }

    /// Moves the stream's log start offset forward to `start` (retention or
    /// DeleteRecords, as the metadata says) and forgets what lies wholly
    /// below it: reads there get OFFSET_OUT_OF_RANGE from now on.
    pub fn trim(&self, id: StreamId, start: i64) {
        let Ok(stream) = self.stream(id) else { return };
        let mut st = stream.lock();
        if start <= st.start_offset {
            return;
        }
        st.start_offset = start.min(st.next_offset);
        let below = st.ranges.partition_point(|(_, r)| r.end_offset <= start);
        st.ranges.drain(..below);
        self.drop_cached_below(&mut st, start);
    }

    /// Drops the stream's cached batches that end at or below `end` and are
    /// uploaded (what is not yet uploaded stays: it is the only copy to read).
    pub(crate) fn drop_cached_below(&self, st: &mut crate::stream::StreamState, end: i64) {
        while let Some(front) = st.cache.front() {
            if front.end_offset > end || front.end_offset > st.uploaded_end {
                break;
            }
            let len = front.bytes.len() as u64;
            st.cache.pop_front();
            sub_saturating(&self.inner.cached_bytes, len);
        }
    }

    /// Drops a stream from this broker (moved away or deleted).
    pub fn remove_stream(&self, id: StreamId) {
        self.inner.remove_stream(id);
    }

    /// Assigns offsets to `input` and queues it for the WAL. The offsets are
    /// final; the data becomes readable (and should be acknowledged) once
    /// [`Appended::durable`] resolves.
    pub fn append(&self, id: StreamId, input: AppendInput) -> Result<Appended> {
        let inner = &self.inner;
        if inner.fenced.load(Ordering::Acquire) {
            return Err(StorageError::Fenced("this broker incarnation was fenced".into()));
        }
        if Instant::now() >= inner.lease.valid_until() {
            return Err(StorageError::LeaseExpired);
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
        if st.sealed {
            return Err(StorageError::Sealed(id));
        }
        let base_offset = st.next_offset;
        let end = base_offset + i64::from(input.records);
        let mut stamped = BytesMut::from(&input.bytes[..]);
        stamped[..8].copy_from_slice(&base_offset.to_be_bytes());
        // The partition leader epoch (bytes 12..16, outside the CRC, as the
        // base offset): consumers validate their position against it (KIP-320).
        if stamped.len() >= 16 {
            stamped[12..16].copy_from_slice(&(st.epoch as i32).to_be_bytes());
        }
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
        Ok(Appended { base_offset, durable: rx, lease: inner.lease.clone() })
    }

    /// Resolves once everything below `offset + 1` of stream `id` is durable
    /// and this broker's lease holds: an idempotent retry of a batch whose
    /// original is still on its way to disk is acknowledged only then.
    pub async fn wait_durable(&self, id: StreamId, offset: i64) -> Result<()> {
        let stream = self.stream(id)?;
        let mut durable = self.inner.wal.watch_durable();
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while stream.high_watermark() <= offset {
            if self.inner.wal.is_failed() {
                return Err(StorageError::WalClosed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StorageError::Unavailable(format!(
                    "stream {id}: offset {offset} is not durable yet"
                )));
            }
            let _ = tokio::time::timeout(left.min(std::time::Duration::from_millis(100)), durable.changed())
                .await;
        }
        if Instant::now() >= self.inner.lease.valid_until() {
            return Err(StorageError::LeaseExpired);
        }
        Ok(())
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
        // Key compaction may leave a range with nothing at or after `at`
        // (superseded records dropped, their offsets kept): read on.
        let mut at = offset;
        loop {
            let (start_offset, key, range, next) = {
                let st = stream.lock();
                if at < st.start_offset || offset > high_watermark {
                    return Err(StorageError::OffsetOutOfRange {
                        offset,
                        start: st.start_offset,
                        end: high_watermark,
                    });
                }
                if at >= high_watermark {
                    return Ok(ReadResult { batches: vec![], high_watermark, start_offset: st.start_offset });
                }
                if let Some(i) = st.cache_index(at) {
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
                let Some((key, range)) = st.range_for(at).cloned() else {
                    return Err(StorageError::Invalid(format!(
                        "stream {id} has no data for offset {at} below its high watermark"
                    )));
                };
                let next = st.range_for(range.end_offset).cloned();
                (st.start_offset, key, range, next)
            };
            // Read ahead: a reader in this range will want the next one, so
            // its GET overlaps with serving this one instead of stalling the
            // reader once per range.
            if let Some((next_key, next_range)) = next {
                self.inner.blocks.prefetch(&self.inner.bucket, next_key, next_range);
            }
            if range.length > 0 {
                let data = self.inner.blocks.get(&self.inner.bucket, &key, &range).await?;
                let batches = crate::block_cache::batches_from(&data, at, max_bytes, &key)?;
                if !batches.is_empty() {
                    return Ok(ReadResult { batches, high_watermark, start_offset });
                }
            }
            at = range.end_offset;
        }
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

    /// Where leader epoch `epoch` ends on this stream (KIP-320): the largest
    /// epoch at or below it that wrote data and the first offset written at
    /// a later epoch, or the high watermark when none was. (-1, -1) when the
    /// stream holds nothing from an epoch that old.
    pub fn epoch_end(&self, id: StreamId, epoch: i32) -> Result<(i32, i64)> {
        let stream = self.stream(id)?;
        let hw = stream.high_watermark();
        let st = stream.lock();
        if epoch >= st.epoch as i32 {
            return Ok((st.epoch as i32, hw));
        }
        // (epoch, first offset) of each run of data, oldest first: committed
        // ranges, then what only the log cache holds.
        let committed = st.ranges.iter().map(|(_, r)| (r.epoch as i32, r.start_offset));
        let cached = st
            .cache
            .iter()
            .filter(|b| b.base_offset >= st.uploaded_end && b.base_offset < hw && b.bytes.len() >= 16)
            .map(|b| {
                (i32::from_be_bytes([b.bytes[12], b.bytes[13], b.bytes[14], b.bytes[15]]), b.base_offset)
            });
        let mut found = (-1, -1);
        for (e, start) in committed.chain(cached) {
            if e > epoch {
                return Ok(if found.0 < 0 { (-1, -1) } else { (found.0, start) });
            }
            found = (e, start);
        }
        Ok(if found.0 < 0 { (-1, -1) } else { (found.0, hw) })
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
