//! The fenced metadata log: a snapshot plus numbered, create-only entries in
//! the bucket, written by one controller at a time.
//!
//! Entry `n` is the object `meta/log/{n:020}.json`, written with a
//! create-only put: of two writers racing for the same number exactly one
//! wins, so a deposed controller learns it is deposed instead of forking
//! history. Every entry carries its writer, term and a nonce: a PUT whose
//! answer was lost (it may have landed) is resolved by reading the entry
//! back, ours (adopt it) or theirs (step down), never by guessing.
//!
//! Every `SNAPSHOT_EVERY` entries, or sooner once the entries since the last
//! snapshot outweigh it twice, the writer stores the state as
//! `meta/snapshot/{n:020}.json` in the background and deletes entries more
//! than `KEEP` behind it. A deleted number could be written again only by
//! a writer whose PUT returned after its lease ran out, and such an append
//! is not trusted (see [`MetadataLog::append`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::sync::{oneshot, watch};

use crate::error::{Result, StorageError};
use crate::meta::record::{LogEntry, MetaRecord, FORMAT};
use crate::meta::state::MetaState;
use crate::object_store_url::Bucket;

const SNAPSHOT_EVERY: u64 = 512;
/// Entries kept behind a snapshot, so that a writer a little behind still
/// collides with them instead of writing unseen.
const KEEP: u64 = 64;
/// A snapshot is due once this many bytes of entries, or twice the last
/// snapshot's size, were written since it: an entry holds a piece of every
/// partition an upload had, so with many partitions bytes, not counts, set
/// what the log costs to store and to load.
const SNAPSHOT_AFTER_BYTES: u64 = 1 << 20;
/// Entries kept in memory for followers that ask for what they missed.
const FOLLOW_WINDOW: usize = 4096;
/// How long an ambiguous append keeps retrying the same entry.
const RESOLVE_FOR: Duration = Duration::from_secs(20);

/// Loads the newest snapshot and every log entry after it.
pub async fn load(bucket: &Bucket) -> Result<MetaState> {
    let mut state = MetaState::default();
    let snapshots = list_seqs(bucket, "meta/snapshot/").await?;
    if let Some(&seq) = snapshots.last() {
        let bytes = bucket.store.get(&bucket.key(&snapshot_name(seq))).await?.bytes().await?;
        state = serde_json::from_slice(&bytes)
            .map_err(|e| StorageError::CorruptMetadata { seq, reason: e.to_string() })?;
        state.upgrade();
    }
    catch_up(bucket, &mut state).await?;
    Ok(state)
}

/// Entries read at once while loading: a load after a snapshot reads up to
/// `SNAPSHOT_EVERY` of them, and one at a time that is that many round trips.
const READ_AHEAD: usize = 32;

/// Applies every entry after `state.seq`, listing from there.
async fn catch_up(bucket: &Bucket, state: &mut MetaState) -> Result<()> {
    let entries: Vec<u64> =
        list_seqs(bucket, "meta/log/").await?.into_iter().filter(|&s| s > state.seq).collect();
    for (expected, &seq) in (state.seq + 1..).zip(entries.iter()) {
        if seq != expected {
            return Err(StorageError::CorruptMetadata {
                seq,
                reason: format!("gap after entry {}", expected - 1),
            });
        }
    }
    // Read ahead, apply in order.
    let mut reads = futures::stream::iter(
        entries.into_iter().map(|seq| async move { read_entry(bucket, seq).await.map(|e| (seq, e)) }),
    )
    .buffered(READ_AHEAD);
    while let Some(read) = reads.next().await {
        let (seq, Some(entry)) = read? else { break };
        apply_entry(state, seq, &entry)?;
    }
    Ok(())
}

/// Applies a stored entry. Entries of an older term than the state's are
/// refused (a deposed writer cannot reach past the new controller's first
/// entry, so this is defence in depth), as is any record its writer should
/// not have written.
pub fn apply_entry(state: &mut MetaState, seq: u64, entry: &LogEntry) -> Result<()> {
    if entry.format > FORMAT {
        return Err(StorageError::CorruptMetadata {
            seq,
            reason: format!("format {} is newer than this release reads ({FORMAT})", entry.format),
        });
    }
    if entry.term < state.term {
        return Err(StorageError::CorruptMetadata {
            seq,
            reason: format!("entry of term {} after term {}", entry.term, state.term),
        });
    }
    if entry.format == 1 {
        // Format 1 applied records unchecked.
        for r in &entry.records {
            state.apply(r);
        }
    } else {
        state
            .apply_all(&entry.records)
            .map_err(|e| StorageError::CorruptMetadata { seq, reason: e.to_string() })?;
    }
    state.seq = seq;
    Ok(())
}

async fn read_entry(bucket: &Bucket, seq: u64) -> Result<Option<LogEntry>> {
    match bucket.store.get(&bucket.key(&log_name(seq))).await {
        Ok(got) => {
            let bytes = got.bytes().await?;
            LogEntry::decode(&bytes)
                .map(Some)
                .map_err(|e| StorageError::CorruptMetadata { seq, reason: e.to_string() })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// When the writer's right to write ends, on its own monotonic clock.
pub trait WriteLease: Send + Sync {
    fn valid_until(&self) -> Instant;
}

/// Records to append, computed from the state at their turn.
type Make = Box<dyn FnOnce(&MetaState) -> Result<Vec<MetaRecord>> + Send>;

struct Proposal {
    make: Make,
    done: oneshot::Sender<Result<Arc<MetaState>>>,
}

/// The same error for every proposal of a failed entry, by what to do.
fn copy_error(e: &StorageError) -> StorageError {
    match e {
        StorageError::Fenced(m) => StorageError::Fenced(m.clone()),
        StorageError::Deposed(m) => StorageError::Deposed(m.clone()),
        e if e.is_retriable() => StorageError::Unavailable(e.to_string()),
        e => StorageError::Invalid(e.to_string()),
    }
}

/// The metadata log as its one writer (the controller) holds it.
pub struct MetadataLog {
    proposals: std::sync::Mutex<Vec<Proposal>>,
    bucket: Bucket,
    writer_id: i32,
    term: u64,
    lease: Arc<dyn WriteLease>,
    writer: tokio::sync::Mutex<MetaState>,
    current: RwLock<Arc<MetaState>>,
    seq_tx: watch::Sender<u64>,
    recent: RwLock<VecDeque<(u64, Arc<LogEntry>)>>,
    snapshotting: Arc<AtomicBool>,
    /// Bytes of entries written since the last snapshot began, and the size
    /// of the last snapshot written.
    since_snapshot: AtomicU64,
    snapshot_bytes: Arc<AtomicU64>,
    deposed: AtomicBool,
}

impl MetadataLog {
    /// The bucket the log (and the data it indexes) lives in.
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// Loads the log to its end and writes this term's `ControllerElected`.
    /// Fails with `Deposed` if a newer term already wrote.
    pub async fn open(bucket: Bucket, writer_id: i32, term: u64, lease: Arc<dyn WriteLease>) -> Result<Self> {
        let state = load(&bucket).await?;
        let (seq_tx, _) = watch::channel(state.seq);
        let this = Self {
            proposals: std::sync::Mutex::new(Vec::new()),
            bucket,
            writer_id,
            term,
            lease,
            current: RwLock::new(Arc::new(state.clone())),
            writer: tokio::sync::Mutex::new(state),
            seq_tx,
            recent: RwLock::new(VecDeque::new()),
            snapshotting: Arc::new(AtomicBool::new(false)),
            since_snapshot: AtomicU64::new(0),
            snapshot_bytes: Arc::new(AtomicU64::new(0)),
            deposed: AtomicBool::new(false),
        };
        // A writer of the old term may still add entries until it collides;
        // read them and try again (bounded: each round adopts at least one).
        for _ in 0..100 {
            match this.append(vec![MetaRecord::ControllerElected { broker_id: writer_id, term }]).await {
                Err(StorageError::Deposed(_) | StorageError::Fenced(_))
                    if !this.is_deposed_by_newer_term().await? =>
                {
                    this.deposed.store(false, Ordering::Release);
                    let mut w = this.writer.lock().await;
                    catch_up(&this.bucket, &mut w).await?;
                    *this.current.write().expect("meta lock") = Arc::new(w.clone());
                }
                Err(StorageError::Fenced(m)) => return Err(StorageError::Deposed(m)),
                Err(e) => return Err(e),
                Ok(_) => {
                    tracing::info!(term, seq = this.state().seq, "metadata log open for writing");
                    return Ok(this);
                }
            }
        }
        Err(StorageError::Deposed("could not reach the end of the metadata log".into()))
    }

    async fn is_deposed_by_newer_term(&self) -> Result<bool> {
        let mut probe = self.writer.lock().await.clone();
        catch_up(&self.bucket, &mut probe).await?;
        Ok(probe.term >= self.term)
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    /// The state after the last successful append.
    pub fn state(&self) -> Arc<MetaState> {
        self.current.read().expect("meta lock").clone()
    }

    /// Changes whenever an entry is appended.
    pub fn watch_seq(&self) -> watch::Receiver<u64> {
        self.seq_tx.subscribe()
    }

    /// Entries after `seq`, if they are all still in memory.
    pub fn entries_since(&self, seq: u64) -> Option<Vec<(u64, Arc<LogEntry>)>> {
        let recent = self.recent.read().expect("meta lock");
        let last = self.state().seq;
        if seq >= last {
            return Some(Vec::new());
        }
        match recent.front() {
            Some((first, _)) if *first <= seq + 1 => {
                Some(recent.iter().filter(|(s, _)| *s > seq).cloned().collect())
            }
            _ => None,
        }
    }

    /// Whether a failed append showed that another controller writes now.
    pub fn is_deposed(&self) -> bool {
        self.deposed.load(Ordering::Acquire)
    }

    /// Validates `records` in order, writes them as the next log entry and
    /// applies them. Either all are applied or none.
    pub async fn append(&self, records: Vec<MetaRecord>) -> Result<Arc<MetaState>> {
        self.append_with(move |_| Ok(records)).await
    }

    /// Like [`MetadataLog::append`], with records computed from the current
    /// state under the append lock (ids, epochs, offsets need no second look).
    ///
    /// Appends group-commit: every proposal queued while an entry is being
    /// written goes into the next entry, each validated against the state the
    /// ones before it leave, so N concurrent callers cost one PUT, not N. A
    /// proposal that fails validation gets its own error and adds nothing.
    /// The returned state is the one after the whole entry: a caller that
    /// needs what *its* records chose (an id, an epoch) captures it in `make`.
    ///
    /// The append counts only if its PUT returned before the writer's lease
    /// ran out: after that, another controller may have taken over and even
    /// deleted old entry numbers, so the result is reported as `Deposed`.
    pub async fn append_with<F>(&self, make: F) -> Result<Arc<MetaState>>
    where
        F: FnOnce(&MetaState) -> Result<Vec<MetaRecord>> + Send + 'static,
    {
        if self.is_deposed() {
            return Err(StorageError::Deposed(format!("controller term {} was deposed", self.term)));
        }
        let (done, mut result) = oneshot::channel();
        self.proposals.lock().expect("meta lock").push(Proposal { make: Box::new(make), done });
        let writer = self.writer.lock().await;
        // The writer before us may have taken our proposal into its entry.
        if let Ok(r) = result.try_recv() {
            return r;
        }
        self.write_batch(writer).await;
        result.await.unwrap_or_else(|_| Err(StorageError::Unavailable("metadata append was dropped".into())))
    }

    /// Writes every queued proposal as one entry and answers each.
    async fn write_batch(&self, mut w: tokio::sync::MutexGuard<'_, MetaState>) {
        let batch = std::mem::take(&mut *self.proposals.lock().expect("meta lock"));
        let mut next = w.clone();
        let mut records = Vec::new();
        let mut accepted = Vec::new();
        for p in batch {
            let outcome = (p.make)(&next).and_then(|rs| {
                let mut trial = next.clone();
                trial.apply_all(&rs)?;
                Ok((rs, trial))
            });
            match outcome {
                Ok((rs, trial)) => {
                    if !rs.is_empty() {
                        records.extend(rs);
                        next = trial;
                    }
                    accepted.push(p.done);
                }
                Err(e) => {
                    let _ = p.done.send(Err(e));
                }
            }
        }
        if records.is_empty() {
            let state = self.state();
            for done in accepted {
                let _ = done.send(Ok(state.clone()));
            }
            return;
        }
        next.seq = w.seq + 1;
        let entry =
            LogEntry { format: FORMAT, writer: self.writer_id, term: self.term, nonce: nonce(), records };
        let written = if Instant::now() >= self.lease.valid_until() {
            Err(StorageError::Deposed(format!("controller lease of term {} ran out", self.term)))
        } else {
            match self.put_entry(next.seq, &entry).await {
                Ok(()) if Instant::now() >= self.lease.valid_until() => {
                    self.deposed.store(true, Ordering::Release);
                    Err(StorageError::Deposed(format!(
                        "controller lease of term {} ran out during the append",
                        self.term
                    )))
                }
                other => other,
            }
        };
        if let Err(e) = written {
            for done in accepted {
                let _ = done.send(Err(copy_error(&e)));
            }
            return;
        }
        *w = next;
        let seq = w.seq;
        let shared = Arc::new(w.clone());
        *self.current.write().expect("meta lock") = shared.clone();
        {
            let mut recent = self.recent.write().expect("meta lock");
            recent.push_back((seq, Arc::new(entry)));
            while recent.len() > FOLLOW_WINDOW {
                recent.pop_front();
            }
        }
        drop(w);
        self.seq_tx.send_replace(seq);
        let since = self.since_snapshot.load(Ordering::Acquire);
        let heavy = since >= SNAPSHOT_AFTER_BYTES.max(2 * self.snapshot_bytes.load(Ordering::Acquire));
        if seq.is_multiple_of(SNAPSHOT_EVERY) || heavy {
            self.snapshot_in_background(shared.clone());
        }
        for done in accepted {
            let _ = done.send(Ok(shared.clone()));
        }
    }

    /// Writes entry `seq`, resolving lost answers by reading it back.
    async fn put_entry(&self, seq: u64, entry: &LogEntry) -> Result<()> {
        let body = serde_json::to_vec(entry).expect("entries serialize");
        let key = self.bucket.key(&log_name(seq));
        let started = Instant::now();
        let mut backoff = Duration::from_millis(20);
        loop {
            let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
            let error = match self.bucket.store.put_opts(&key, PutPayload::from(body.clone()), opts).await {
                Ok(_) => {
                    self.since_snapshot.fetch_add(body.len() as u64, Ordering::AcqRel);
                    return Ok(());
                }
                Err(e) => e,
            };
            let already = matches!(error, object_store::Error::AlreadyExists { .. });
            // Taken, or maybe written by us before the answer got lost: read it.
            match read_entry(&self.bucket, seq).await {
                Ok(Some(found)) if found.nonce == entry.nonce && found.term == entry.term => {
                    tracing::info!(seq, "metadata entry written earlier by this controller; adopted");
                    self.since_snapshot.fetch_add(body.len() as u64, Ordering::AcqRel);
                    return Ok(());
                }
                Ok(Some(found)) => {
                    self.deposed.store(true, Ordering::Release);
                    return Err(StorageError::Deposed(format!(
                        "metadata entry {seq} was written by broker {} in term {}",
                        found.writer, found.term
                    )));
                }
                Ok(None) if already => {
                    // Conflict reported but nothing there (a racing writer's
                    // 409 on some stores): try again.
                }
                Ok(None) => {}
                Err(read_error) => {
                    tracing::debug!(%read_error, seq, "reading back a metadata entry failed");
                }
            }
            if started.elapsed() > RESOLVE_FOR {
                // The entry may still land later; a retry of the same entry
                // would adopt it, so stop writing until a restart resolves it.
                self.deposed.store(true, Ordering::Release);
                return Err(StorageError::ObjectStore(error));
            }
            tracing::warn!(%error, seq, "metadata append failed; retrying the same entry");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Stores the state and drops the entries it covers, off the append path.
    /// Failure is harmless (the log still holds everything), so it is logged.
    fn snapshot_in_background(&self, state: Arc<MetaState>) {
        if self.snapshotting.swap(true, Ordering::AcqRel) {
            return;
        }
        self.since_snapshot.store(0, Ordering::Release);
        let bucket = self.bucket.clone();
        let busy = self.snapshotting.clone();
        let size = self.snapshot_bytes.clone();
        tokio::spawn(async move {
            match write_snapshot(&bucket, &state).await {
                Ok(bytes) => size.store(bytes, Ordering::Release),
                Err(error) => {
                    tracing::warn!(%error, seq = state.seq, "metadata snapshot failed; the log keeps growing")
                }
            }
            busy.store(false, Ordering::Release);
        });
    }
}

/// Stores the state; returns its size.
async fn write_snapshot(bucket: &Bucket, state: &MetaState) -> Result<u64> {
    let body = serde_json::to_vec(state).expect("state serializes");
    let size = body.len() as u64;
    bucket.store.put(&bucket.key(&snapshot_name(state.seq)), PutPayload::from(body)).await?;
    for seq in list_seqs(bucket, "meta/log/").await? {
        if seq + KEEP <= state.seq {
            bucket.store.delete(&bucket.key(&log_name(seq))).await?;
        }
    }
    for seq in list_seqs(bucket, "meta/snapshot/").await? {
        if seq < state.seq {
            bucket.store.delete(&bucket.key(&snapshot_name(seq))).await?;
        }
    }
    Ok(size)
}

/// Random enough to tell two writers' entries apart.
pub fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
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
