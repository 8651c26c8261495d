//! This broker as a member of the cluster: its registration and epoch, the
//! lease it renews with the controller (and fences itself by when renewals
//! stop), and its copy of the metadata, kept current from the controller's
//! stream of log entries.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use floe_storage::meta::{self, LogEntry, MetaState};
use floe_storage::{Bucket, StorageError, WriteLease};
use futures::StreamExt;
use tokio::sync::watch;
use tonic::Code;

use crate::control_plane::ControlPlane;
use crate::proto;

/// The lease this broker holds from the controller, on its own monotonic
/// clock: it runs from the moment a renewal was *sent*, so it always ends
/// before the controller's view of it does.
pub struct BrokerLease {
    origin: Instant,
    until_nanos: AtomicU64,
}

impl BrokerLease {
    fn new() -> Self {
        Self { origin: Instant::now(), until_nanos: AtomicU64::new(0) }
    }

    fn extend(&self, sent: Instant, lease: Duration) {
        let until = (sent + lease).saturating_duration_since(self.origin).as_nanos() as u64;
        self.until_nanos.fetch_max(until, Ordering::AcqRel);
    }
}

impl WriteLease for BrokerLease {
    fn valid_until(&self) -> Instant {
        self.origin + Duration::from_nanos(self.until_nanos.load(Ordering::Acquire))
    }
}

pub struct Member {
    pub broker_id: i32,
    pub broker_epoch: u64,
    pub control: Arc<ControlPlane>,
    pub lease: Arc<BrokerLease>,
    bucket: Bucket,
    view: RwLock<Arc<MetaState>>,
    seq_tx: watch::Sender<u64>,
    fenced: AtomicBool,
    /// The store, once open: heartbeats report its upload lag.
    store: std::sync::OnceLock<floe_storage::StreamStore>,
    /// What consumers fetched here; heartbeats report it.
    pub bytes_out: crate::traffic::BytesOut,
}

impl Member {
    /// Registers with the controller (waiting for one to be elected) and
    /// loads the metadata as of the registration.
    pub async fn join(
        control: Arc<ControlPlane>,
        bucket: Bucket,
        req: proto::RegisterRequest,
    ) -> Result<Arc<Self>, StorageError> {
        let broker_id = req.broker_id;
        let lease = Arc::new(BrokerLease::new());
        let sent = Instant::now();
        let resp = control.register(req, Duration::from_secs(60)).await.map_err(|s| match s.code() {
            Code::AlreadyExists => StorageError::Config(s.message().to_string()),
            _ => StorageError::Unavailable(format!("registering with the controller: {}", s.message())),
        })?;
        lease.extend(sent, Duration::from_millis(resp.lease_ms));
        let state = Self::load_at_least(&bucket, resp.seq).await?;
        let (seq_tx, _) = watch::channel(state.seq);
        tracing::info!(
            broker_id,
            broker_epoch = resp.broker_epoch,
            seq = state.seq,
            "registered with the controller"
        );
        Ok(Arc::new(Self {
            broker_id,
            broker_epoch: resp.broker_epoch,
            control,
            lease,
            bucket,
            view: RwLock::new(Arc::new(state)),
            seq_tx,
            fenced: AtomicBool::new(false),
            store: std::sync::OnceLock::new(),
            bytes_out: Default::default(),
        }))
    }

    async fn load_at_least(bucket: &Bucket, seq: u64) -> Result<MetaState, StorageError> {
        // Bounded: the entry was written before the controller answered.
        for _ in 0..100 {
            let state = meta::load(bucket).await?;
            if state.seq >= seq {
                return Ok(state);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(StorageError::Unavailable(format!("metadata entry {seq} is not readable")))
    }

    /// The metadata as this broker knows it now.
    pub fn state(&self) -> Arc<MetaState> {
        self.view.read().expect("view lock").clone()
    }

    /// Changes whenever the view moves on.
    pub fn watch_seq(&self) -> watch::Receiver<u64> {
        self.seq_tx.subscribe()
    }

    /// Waits (bounded) until the view includes entry `seq`, so that a change
    /// this broker asked for is visible to its next request.
    pub async fn wait_for(&self, seq: u64) {
        let mut rx = self.watch_seq();
        let _ = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| *s >= seq)).await;
    }

    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// Lets heartbeats report the store's upload lag.
    pub fn attach_store(&self, store: floe_storage::StreamStore) {
        let _ = self.store.set(store);
    }

    /// Renews the lease until `stop`; on learning that this incarnation is
    /// fenced, sets the flag and returns (the broker then stops).
    pub async fn heartbeat(self: Arc<Self>, lease: Duration, mut stop: watch::Receiver<bool>) {
        let every = lease / 6;
        loop {
            let sent = Instant::now();
            let req = proto::HeartbeatRequest {
                broker_id: self.broker_id,
                broker_epoch: self.broker_epoch,
                applied_seq: self.state().seq,
                pending_upload_bytes: self.store.get().map_or(0, |s| s.pending_upload_bytes()),
                bytes_out: self
                    .bytes_out
                    .take()
                    .into_iter()
                    .map(|(stream, bytes)| proto::StreamBytes { stream, bytes })
                    .collect(),
            };
            match self.control.heartbeat(req).await {
                Ok(resp) => self.lease.extend(sent, Duration::from_millis(resp.lease_ms)),
                Err(s) if s.code() == Code::FailedPrecondition => {
                    tracing::error!(reason = s.message(), "this broker was fenced by the controller");
                    self.fenced.store(true, Ordering::Release);
                    return;
                }
                Err(s) => {
                    let left = self.lease.valid_until().saturating_duration_since(Instant::now());
                    tracing::debug!(status = %s, left_ms = left.as_millis() as u64, "heartbeat failed");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Follows the controller's metadata entries until `stop`, calling
    /// `changed` after each batch applied.
    pub async fn follow(self: Arc<Self>, mut stop: watch::Receiver<bool>, changed: impl Fn()) {
        let mut backoff = Duration::from_millis(50);
        loop {
            if *stop.borrow() {
                return;
            }
            let after = self.state().seq;
            let mut stream = match self.control.watch(after).await {
                Ok(s) => s,
                Err(status) => {
                    tracing::debug!(%status, "cannot watch the metadata yet");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            backoff = Duration::from_millis(50);
            loop {
                let event = tokio::select! {
                    e = stream.next() => e,
                    _ = stop.changed() => return,
                };
                match event {
                    Some(Ok(event)) => {
                        if let Err(error) = self.apply(event).await {
                            tracing::warn!(%error, "applying metadata failed; reloading it from the bucket");
                            if let Ok(state) = meta::load(&self.bucket).await {
                                self.set_state(state);
                            }
                            break;
                        }
                        changed();
                    }
                    Some(Err(status)) => {
                        tracing::debug!(%status, "metadata watch ended");
                        break;
                    }
                    None => break,
                }
            }
        }
    }

    async fn apply(&self, event: proto::WatchEvent) -> Result<(), StorageError> {
        if event.reload {
            let state = meta::load(&self.bucket).await?;
            // Whatever happened meanwhile (compactions among it), this
            // broker's copies of its streams follow the metadata.
            if let Some(store) = self.store.get() {
                for (id, _) in store.stream_epochs() {
                    if let Some(s) = state.streams.get(&id) {
                        store.resync_ranges(id, s);
                    }
                }
            }
            self.set_state(state);
            return Ok(());
        }
        let mut state = (*self.state()).clone();
        if event.seq <= state.seq {
            return Ok(());
        }
        if event.seq != state.seq + 1 {
            return Err(StorageError::CorruptMetadata {
                seq: event.seq,
                reason: format!("after {}", state.seq),
            });
        }
        let entry = LogEntry::decode(&event.entry)
            .map_err(|e| StorageError::CorruptMetadata { seq: event.seq, reason: e.to_string() })?;
        meta::log::apply_entry(&mut state, event.seq, &entry)?;
        // A compaction moved ranges to a new object: reads here follow it
        // (the old objects are deleted once nothing has read them a while).
        if let Some(store) = self.store.get() {
            for r in &entry.records {
                if let meta::MetaRecord::ObjectCompacted { runs, .. } = r {
                    for run in runs {
                        if let Some(s) = state.streams.get(&run.stream) {
                            store.resync_ranges(run.stream, s);
                        }
                    }
                }
            }
        }
        self.set_state(state);
        Ok(())
    }

    fn set_state(&self, state: MetaState) {
        let seq = state.seq;
        *self.view.write().expect("view lock") = Arc::new(state);
        self.seq_tx.send_replace(seq);
    }
}
