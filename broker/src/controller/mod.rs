//! The controller: the one broker that holds the controller lease writes the
//! metadata log and answers the control plane. Every broker runs this
//! election; the one that wins opens a [`Term`], and the term ends when the
//! lease is lost (a newer controller took it, or renewals failed until it ran
//! out) or the broker stops.

mod placement;
pub mod retention;
pub mod service;
mod term;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use floe_storage::meta::ControllerLease;
use floe_storage::{Bucket, StorageError};
use tokio::sync::watch;

pub use term::{host_of, wal_dir_of, Term};

/// The stream of metadata entries a watcher receives.
pub mod term_watch {
    pub use super::term::WatchStream;
}

/// Timing of the control plane. Each knob trades failover speed against
/// false alarms.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// A broker that has not renewed its lease for this long stops
    /// acknowledging writes; the controller acts on it only after this times
    /// (1 + drift) plus a margin. Shorter: faster failover; longer: fewer
    /// fencings from a GC pause or a slow network.
    pub broker_lease: Duration,
    /// The controller lease. Shorter: a dead controller is replaced sooner;
    /// longer: fewer lease PUTs (one per third of it).
    pub controller_lease: Duration,
    /// How often the balancer looks for a fairer spread of partitions.
    pub balance_interval: Duration,
    /// Retention for topics that do not set their own.
    pub retention: retention::Defaults,
    /// How often retention runs. Shorter: the bucket follows the retention
    /// settings more closely; longer: fewer metadata entries.
    pub retention_check_interval: Duration,
    /// How long an object nothing reads stays before it is deleted. Shorter:
    /// the bucket shrinks sooner; longer: a slow reader that found an
    /// object just before a trim still gets it.
    pub object_delete_delay: Duration,
    /// How often the bucket is listed for objects no metadata knows (left
    /// by uploads whose commit never came). Each sweep costs one LIST per
    /// 1,000 objects.
    pub orphan_sweep_interval: Duration,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        Self {
            broker_lease: Duration::from_secs(3),
            controller_lease: Duration::from_secs(3),
            balance_interval: Duration::from_secs(2),
            retention: retention::Defaults::default(),
            retention_check_interval: Duration::from_secs(300),
            object_delete_delay: Duration::from_secs(60),
            orphan_sweep_interval: Duration::from_secs(600),
        }
    }
}

/// Runs a controller call to its end even if its caller gives up (a gRPC
/// deadline, a dropped connection, a dropped future): a metadata append cut
/// off between its PUT and its bookkeeping may still land, under the number
/// the next append then takes too, and the controller would find its own log
/// forked and step down.
pub async fn to_the_end<T: Send + 'static>(
    call: impl std::future::Future<Output = Result<T, tonic::Status>> + Send + 'static,
) -> Result<T, tonic::Status> {
    tokio::spawn(call).await.map_err(|e| tonic::Status::internal(format!("controller call failed: {e}")))?
}

/// Clock-rate slack and margin the controller adds before acting on a lease.
pub const DRIFT: f64 = 0.05;
pub const MARGIN: Duration = Duration::from_millis(500);

pub struct Controller {
    bucket: Bucket,
    broker_id: i32,
    settings: ControllerSettings,
    lease: Arc<ControllerLease>,
    active: RwLock<Option<Arc<Term>>>,
}

impl Controller {
    pub fn new(
        bucket: Bucket,
        broker_id: i32,
        rpc: String,
        instance: String,
        settings: ControllerSettings,
    ) -> Arc<Self> {
        let lease = Arc::new(ControllerLease::new(
            bucket.clone(),
            broker_id,
            rpc,
            instance,
            settings.controller_lease,
        ));
        Arc::new(Self { bucket, broker_id, settings, lease, active: RwLock::new(None) })
    }

    /// The term this broker holds now, if any.
    pub fn active(&self) -> Option<Arc<Term>> {
        self.active.read().expect("controller lock").clone().filter(|t| t.is_valid())
    }

    /// Where the controller is, as the lease object says: (broker id, rpc
    /// address, whether it is this broker's own lineage).
    pub async fn locate(&self) -> Result<Option<(i32, String, bool)>, StorageError> {
        let current = self.lease.current().await?.filter(|l| l.duration_ms > 0);
        Ok(current.map(|l| {
            let mine = l.holder == self.broker_id && l.instance == self.lease.instance();
            (l.holder, l.rpc, mine)
        }))
    }

    /// Runs the election until `stop` turns true, then releases the lease.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let step = self.settings.controller_lease / 3;
        loop {
            let held = self.active.read().expect("controller lock").clone();
            match held {
                Some(term) => match self.lease.renew().await {
                    Ok(true) if !term.log_deposed() => {}
                    outcome => {
                        tracing::warn!(
                            term = term.number(),
                            ?outcome,
                            "controller lease lost; stepping down"
                        );
                        self.step_down(&term);
                    }
                },
                None => match self.lease.try_acquire().await {
                    Ok(Some(number)) => self.start_term(number).await,
                    Ok(None) => {}
                    Err(error) => tracing::debug!(%error, "controller election step failed"),
                },
            }
            // A renewal that failed leaves the lease valid until it runs out.
            if let Some(term) = self.active.read().expect("controller lock").clone() {
                if !term.is_valid() {
                    self.step_down(&term);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(step) => {}
                _ = stop.changed() => break,
            }
        }
        if let Some(term) = self.active.write().expect("controller lock").take() {
            term.end();
        }
        self.lease.release().await;
    }

    async fn start_term(&self, number: u64) {
        let lease: Arc<dyn floe_storage::WriteLease> = self.lease.clone();
        match Term::open(self.bucket.clone(), self.broker_id, number, lease, self.settings.clone()).await {
            Ok(term) => {
                tracing::info!(term = number, broker_id = self.broker_id, "this broker is the controller");
                *self.active.write().expect("controller lock") = Some(term);
            }
            Err(error) => {
                tracing::warn!(%error, term = number, "could not open the metadata log as controller");
                self.lease.release().await;
            }
        }
    }

    fn step_down(&self, term: &Arc<Term>) {
        let mut active = self.active.write().expect("controller lock");
        if active.as_ref().is_some_and(|t| Arc::ptr_eq(t, term)) {
            *active = None;
        }
        term.end();
    }
}
