//! The block cache: object ranges read by catch-up consumers, in memory
//! (foyer), keyed by object and position. Concurrent misses for the same range
//! are coalesced into one GET.

use std::sync::Arc;

use bytes::Bytes;
use foyer_memory::{Cache, CacheBuilder};
use object_store::ObjectStoreExt;

use crate::error::{Result, StorageError};
use crate::object::ObjectRange;
use crate::object_store_url::Bucket;

#[derive(Clone)]
pub(crate) struct BlockCache {
    cache: Cache<(Arc<str>, u64), Bytes>,
}

impl BlockCache {
    pub fn new(capacity_bytes: u64) -> Self {
        let cache = CacheBuilder::new(capacity_bytes.max(1 << 20) as usize)
            .with_weighter(|_k: &(Arc<str>, u64), v: &Bytes| v.len() + 64)
            .build();
        Self { cache }
    }

    /// The bytes of `range` inside object `key`.
    pub async fn get(&self, bucket: &Bucket, key: &Arc<str>, range: &ObjectRange) -> Result<Bytes> {
        if range.length == 0 {
            // Key compaction can empty a range; an empty GET is not a request
            // every S3 server accepts.
            return Ok(Bytes::new());
        }
        let store = bucket.store.clone();
        let path = bucket.key(key);
        let span = range.position..range.position + range.length;
        let entry = self
            .cache
            .get_or_fetch(&(key.clone(), range.position), move || async move {
                store.get_range(&path, span).await
            })
            .await
            .map_err(|e| StorageError::ObjectRead { key: key.to_string(), reason: e.to_string() })?;
        Ok(entry.value().clone())
    }
}

impl BlockCache {
    /// Starts fetching `range` into the cache in the background, unless it
    /// is there already; a later `get` joins the same fetch.
    pub fn prefetch(&self, bucket: &Bucket, key: Arc<str>, range: ObjectRange) {
        if range.length == 0 || self.cache.contains(&(key.clone(), range.position)) {
            return;
        }
        let (this, bucket) = (self.clone(), bucket.clone());
        tokio::spawn(async move {
            if let Err(error) = this.get(&bucket, &key, &range).await {
                // The reader's own `get` will retry and report it.
                tracing::debug!(%error, "read-ahead failed");
            }
        });
    }
}

/// Splits a run of batches (each framed as `base_offset i64 | length i32 |
/// length bytes`, the record batch v2 framing) and returns those that end
/// after `offset`, up to about `max_bytes` (at least one).
pub(crate) fn batches_from(data: &Bytes, offset: i64, max_bytes: usize, key: &str) -> Result<Vec<Bytes>> {
    let mut out = Vec::new();
    let mut size = 0usize;
    let mut pos = 0usize;
    while pos + 61 <= data.len() {
        let base = i64::from_be_bytes(data[pos..pos + 8].try_into().expect("8 bytes"));
        let len = i32::from_be_bytes(data[pos + 8..pos + 12].try_into().expect("4 bytes"));
        let total = 12 + len.max(0) as usize;
        if len < 49 || pos + total > data.len() {
            return Err(StorageError::CorruptObject {
                key: key.into(),
                reason: format!("bad batch length {len} at {pos}"),
            });
        }
        let delta = i32::from_be_bytes(data[pos + 23..pos + 27].try_into().expect("4 bytes"));
        let end = base + i64::from(delta) + 1;
        if end > offset {
            if size > 0 && size + total > max_bytes {
                break;
            }
            out.push(data.slice(pos..pos + total));
            size += total;
        }
        pos += total;
    }
    Ok(out)
}
