//! The uploader: moves what the WAL holds into one stream-set object, commits
//! the object's ranges to the metadata log, then trims the WAL.
//!
//! One PUT (plus one metadata PUT) per upload whatever the number of streams:
//! the request rate, and so the S3 bill, is set by the upload policy
//! (`upload_bytes`, `upload_interval`), not by the partition count.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use object_store::{PutMode, PutOptions, PutPayload};
use tokio::sync::watch;

use crate::error::{Result, StorageError};
use crate::meta::MetaRecord;
use crate::object::ObjectBuilder;
use crate::store::Inner;
use crate::stream::Stream;

/// The uploader task: uploads every `upload_interval`, or sooner when enough
/// bytes wait, until `stop` turns true.
pub(crate) async fn run(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let mut failures = 0u32;
    loop {
        // Back off while the object store fails, up to 8 intervals.
        let wait = inner.config.upload_interval * (1 << failures.min(3));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = inner.upload_now.notified() => {}
            _ = stop.changed() => return,
        }
        match upload_once(&inner).await {
            Ok(_) => failures = 0,
            Err(StorageError::Fenced(reason)) => {
                tracing::error!(%reason, "fenced by a newer broker; uploads stop");
                inner.fenced.store(true, Ordering::Release);
                return;
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(%error, failures, "upload failed; the data stays in the WAL and is retried");
            }
        }
    }
}

/// Waits until everything appended so far is durable (bounded), then uploads it.
pub(crate) async fn upload_all(inner: &Inner) -> Result<()> {
    let target = inner.wal.appended_lsn();
    let mut durable = inner.wal.watch_durable();
    let _ = tokio::time::timeout(Duration::from_secs(10), durable.wait_for(|l| *l >= target)).await;
    upload_once(inner).await.map(|_| ())
}

/// Uploads everything durable and not yet uploaded. Returns whether an object
/// was written.
pub(crate) async fn upload_once(inner: &Inner) -> Result<bool> {
    let _serial = inner.upload_lock.lock().await;
    let cutoff = inner.wal.durable_lsn();
    let mut streams: Vec<Arc<Stream>> =
        inner.streams.read().expect("streams lock poisoned").values().cloned().collect();
    streams.sort_by_key(|s| s.id);

    let mut builder = ObjectBuilder::default();
    let mut bytes_in_object = 0u64;
    for stream in &streams {
        let st = stream.lock();
        let first = st.cache.partition_point(|b| b.base_offset < st.uploaded_end);
        let batches: Vec<_> = st.cache.iter().skip(first).take_while(|b| b.lsn < cutoff).collect();
        let Some(last) = batches.last() else { continue };
        let max_ts = batches.iter().map(|b| b.max_timestamp).max().unwrap_or(-1);
        let data: Vec<_> = batches.iter().map(|b| b.bytes.clone()).collect();
        bytes_in_object += data.iter().map(|b| b.len() as u64).sum::<u64>();
        builder.add_stream(stream.id, st.epoch, st.uploaded_end, last.end_offset, max_ts, &data);
    }
    if builder.is_empty() {
        inner.wal.trim(cutoff);
        return Ok(false);
    }

    let seq = inner.object_seq.fetch_add(1, Ordering::AcqRel);
    let key = format!("data/b{}-e{}-{seq:012}.obj", inner.config.broker_id, inner.broker_epoch);
    let (object, ranges) = builder.finish();
    let size = object.len() as u64;
    let started = std::time::Instant::now();
    let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
    inner.bucket.store.put_opts(&inner.bucket.key(&key), PutPayload::from(object), opts).await?;
    let put_ms = started.elapsed().as_millis() as u64;
    inner
        .meta
        .append(vec![MetaRecord::ObjectCommitted {
            key: key.clone(),
            size,
            broker_id: inner.config.broker_id,
            broker_epoch: inner.broker_epoch,
            ranges: ranges.clone(),
        }])
        .await?;

    let key: Arc<str> = Arc::from(key.as_str());
    for range in &ranges {
        if let Some(stream) = streams.iter().find(|s| s.id == range.stream) {
            let mut st = stream.lock();
            st.uploaded_end = range.end_offset;
            st.ranges.push((key.clone(), range.clone()));
        }
    }
    inner
        .pending_bytes
        .fetch_sub(bytes_in_object.min(inner.pending_bytes.load(Ordering::Acquire)), Ordering::AcqRel);
    evict(inner, &streams);
    inner.wal.trim(cutoff);
    tracing::debug!(%key, size, streams = ranges.len(), put_ms, total_ms = started.elapsed().as_millis() as u64, "object committed");
    Ok(true)
}

/// Drops uploaded batches from the log caches, oldest first per stream, until
/// the caches fit their budget.
fn evict(inner: &Inner, streams: &[Arc<Stream>]) {
    let budget = inner.config.log_cache_bytes;
    for stream in streams {
        if inner.cached_bytes.load(Ordering::Acquire) <= budget {
            return;
        }
        let mut st = stream.lock();
        while let Some(front) = st.cache.front() {
            if front.end_offset > st.uploaded_end || inner.cached_bytes.load(Ordering::Acquire) <= budget {
                break;
            }
            let len = front.bytes.len() as u64;
            st.cache.pop_front();
            inner.cached_bytes.fetch_sub(len, Ordering::AcqRel);
        }
    }
}
