//! One stream's in-memory state: offsets, the log cache and committed ranges.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::meta::StreamMeta;
use crate::object::ObjectRange;
use crate::wal::Lsn;
use crate::StreamId;

/// A batch held in memory: not yet uploaded, or recently uploaded and kept for
/// tailing readers.
#[derive(Debug, Clone)]
pub(crate) struct CachedBatch {
    pub base_offset: i64,
    /// One past the batch's last offset.
    pub end_offset: i64,
    pub max_timestamp: i64,
    pub lsn: Lsn,
    pub bytes: Bytes,
}

#[derive(Debug)]
pub(crate) struct StreamState {
    pub epoch: u32,
    /// Offset the next append gets ("written" end; may not be durable yet).
    pub next_offset: i64,
    pub start_offset: i64,
    /// Everything below this is in committed objects.
    pub uploaded_end: i64,
    /// Contiguous batches ending at `next_offset`.
    pub cache: VecDeque<CachedBatch>,
    /// Committed object ranges in offset order.
    pub ranges: Vec<(Arc<str>, ObjectRange)>,
    pub deleted: bool,
    /// Being handed to another broker: no appends, reads still served.
    pub sealed: bool,
}

impl StreamState {
    /// The in-memory state of a stream as the metadata log left it: offsets
    /// and ranges committed, nothing cached.
    pub fn from_meta(meta: &StreamMeta) -> Self {
        Self {
            epoch: meta.epoch,
            next_offset: meta.end_offset,
            start_offset: meta.start_offset,
            uploaded_end: meta.end_offset,
            cache: VecDeque::new(),
            ranges: meta.ranges.iter().map(|(k, r)| (Arc::from(k.as_str()), r.clone())).collect(),
            deleted: false,
            sealed: false,
        }
    }

    /// Index of the cached batch holding `offset`.
    pub fn cache_index(&self, offset: i64) -> Option<usize> {
        let i = self.cache.partition_point(|b| b.end_offset <= offset);
        (i < self.cache.len() && self.cache[i].base_offset <= offset).then_some(i)
    }

    /// The committed range holding `offset`.
    pub fn range_for(&self, offset: i64) -> Option<&(Arc<str>, ObjectRange)> {
        let i = self.ranges.partition_point(|(_, r)| r.end_offset <= offset);
        self.ranges.get(i).filter(|(_, r)| r.start_offset <= offset)
    }
}

/// A stream and its high watermark. The high watermark (one past the last
/// durable offset) is atomic so readers check it without the lock.
#[derive(Debug)]
pub(crate) struct Stream {
    pub id: StreamId,
    state: Mutex<StreamState>,
    durable_end: AtomicI64,
}

impl Stream {
    pub fn new(id: StreamId, state: StreamState) -> Arc<Self> {
        let durable = state.next_offset;
        Arc::new(Self { id, state: Mutex::new(state), durable_end: AtomicI64::new(durable) })
    }

    pub fn lock(&self) -> MutexGuard<'_, StreamState> {
        self.state.lock().expect("stream lock poisoned")
    }

    pub fn high_watermark(&self) -> i64 {
        self.durable_end.load(Ordering::Acquire)
    }

    pub fn mark_durable(&self, end_offset: i64) {
        self.durable_end.fetch_max(end_offset, Ordering::AcqRel);
    }
}
