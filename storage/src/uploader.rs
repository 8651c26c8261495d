//! The uploader: moves what the WAL holds into one stream-set object, commits
//! the object's ranges through the [`Committer`](crate::store::Committer),
//! then trims the WAL.
//!
//! One PUT (plus one commit) per upload whatever the number of streams: the
//! request rate, and so the S3 bill, is set by the upload policy
//! (`upload_bytes`, `upload_interval`), not by the partition count.
//!
//! A commit whose answer is lost may have landed, so a failed commit is kept
//! and retried as it is (same object, same ranges) before anything new is
//! uploaded: the controller recognises a repeated commit by its key.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use object_store::{PutMode, PutOptions, PutPayload};
use tokio::sync::watch;

use crate::error::{Result, StorageError};
use crate::object::ObjectBuilder;
use crate::store::{sub_saturating, Inner, ObjectCommit, PendingCommit};
use crate::stream::Stream;

/// The uploader task: uploads every `upload_interval`, or sooner when enough
/// bytes wait, until `stop` turns true.
pub(crate) async fn run(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let mut failures = 0u32;
    loop {
        // Back off while the object store or the controller fails, up to 8 intervals.
        let wait = inner.config.upload_interval * (1 << failures.min(3));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = inner.upload_now.notified() => {}
            _ = stop.changed() => return,
        }
        match upload_once(&inner).await {
            Ok(_) => failures = 0,
            Err(StorageError::Fenced(reason)) => {
                tracing::error!(%reason, "this broker incarnation was fenced; uploads stop");
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
    // A pending commit is finished first, then what is new goes up.
    upload_once(inner).await?;
    upload_once(inner).await.map(|_| ())
}

/// Finishes a pending commit, or uploads everything durable and not yet
/// uploaded and commits it. Returns whether an object was committed.
pub(crate) async fn upload_once(inner: &Inner) -> Result<bool> {
    let mut pending = inner.upload_lock.lock().await;
    let upload = match pending.take() {
        Some(p) => p,
        None => match build_and_put(inner).await? {
            Some(p) => p,
            None => return Ok(false),
        },
    };
    let outcome = match inner.committer.commit(upload.commit.clone()).await {
        Ok(outcome) => outcome,
        // Only this broker's own fencing ends the commit: any other failure
        // may hide a commit that landed, so the same one is tried again.
        Err(error @ StorageError::Fenced(_)) => return Err(error),
        Err(error) => {
            *pending = Some(upload);
            return Err(error);
        }
    };
    let key: Arc<str> = Arc::from(upload.commit.key.as_str());
    let streams: Vec<Arc<Stream>> =
        inner.streams.read().expect("streams lock poisoned").values().cloned().collect();
    for range in &upload.commit.ranges {
        if outcome.refused.iter().any(|r| r.stream == range.stream) {
            continue;
        }
        if let Some(stream) = streams.iter().find(|s| s.id == range.stream) {
            let mut st = stream.lock();
            if st.uploaded_end == range.start_offset {
                st.uploaded_end = range.end_offset;
                st.ranges.push((key.clone(), range.clone()));
            }
        }
    }
    sub_saturating(&inner.pending_bytes, upload.bytes);
    let mut keep_wal = false;
    for r in &outcome.refused {
        if r.fenced {
            // Owned elsewhere at a newer epoch: what this broker acknowledged
            // was committed by whoever took the stream over.
            tracing::error!(stream = r.stream, reason = %r.reason, "commit refused: the stream is owned elsewhere; dropping it");
            inner.remove_stream(r.stream);
            continue;
        }
        // The stream is ours but its committed end is not where we thought:
        // resynchronise from the controller's end and keep every WAL entry.
        keep_wal = true;
        tracing::error!(stream = r.stream, reason = %r.reason, committed_end = r.committed_end, "commit refused: range does not continue the stream");
        if let Some(stream) = streams.iter().find(|s| s.id == r.stream) {
            let mut st = stream.lock();
            if r.committed_end > st.uploaded_end && r.committed_end <= st.next_offset {
                st.uploaded_end = r.committed_end;
            }
        }
    }
    evict(inner, &streams);
    if !keep_wal {
        inner.wal.trim(upload.cutoff);
    }
    tracing::debug!(key = %upload.commit.key, size = upload.commit.size, streams = upload.commit.ranges.len(), "object committed");
    Ok(true)
}

/// Builds one object of every stream's durable, not yet uploaded batches and
/// writes it. None: nothing to upload.
async fn build_and_put(inner: &Inner) -> Result<Option<PendingCommit>> {
    let cutoff = inner.wal.durable_lsn();
    let mut streams: Vec<Arc<Stream>> =
        inner.streams.read().expect("streams lock poisoned").values().cloned().collect();
    streams.sort_by_key(|s| s.id);

    let mut builder = ObjectBuilder::default();
    let mut bytes = 0u64;
    for stream in &streams {
        let st = stream.lock();
        let first = st.cache.partition_point(|b| b.base_offset < st.uploaded_end);
        let batches: Vec<_> = st.cache.iter().skip(first).take_while(|b| b.lsn < cutoff).collect();
        let Some(last) = batches.last() else { continue };
        let max_ts = batches.iter().map(|b| b.max_timestamp).max().unwrap_or(-1);
        let data: Vec<_> = batches.iter().map(|b| b.bytes.clone()).collect();
        bytes += data.iter().map(|b| b.len() as u64).sum::<u64>();
        builder.add_stream(stream.id, st.epoch, st.uploaded_end, last.end_offset, max_ts, &data);
    }
    if builder.is_empty() {
        inner.wal.trim(cutoff);
        return Ok(None);
    }
    let seq = inner.object_seq.fetch_add(1, Ordering::AcqRel);
    let key = format!("data/b{}-e{}-{seq:012}.obj", inner.config.broker_id, inner.broker_epoch);
    let (object, ranges) = builder.finish();
    let size = object.len() as u64;
    let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
    match inner.bucket.store.put_opts(&inner.bucket.key(&key), PutPayload::from(object), opts).await {
        // The key is this incarnation's alone: "exists" is our own earlier try.
        Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Some(PendingCommit { commit: ObjectCommit { key, size, ranges }, cutoff, bytes }))
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
