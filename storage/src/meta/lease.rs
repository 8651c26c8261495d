//! The controller lease: one object, `meta/controller.json`, naming the
//! broker that may write the metadata log, its term and its control-plane
//! address. The holder renews it by compare-and-swap; a candidate takes it
//! over only after seeing the same version unchanged for longer than the
//! lease (plus drift and margin) on its own monotonic clock, so no two
//! brokers' clocks need to agree.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::cas::{self, Cas};
use crate::error::Result;
use crate::meta::log::WriteLease;
use crate::object_store_url::Bucket;

const KEY: &str = "meta/controller.json";

/// What the lease object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub holder: i32,
    pub term: u64,
    /// The holder's control-plane address.
    pub rpc: String,
    /// Identifies the holder's process lineage (its WAL directory, which only
    /// one live process can lock): a restart of the same broker on the same
    /// directory may take the lease over at once.
    pub instance: String,
    pub duration_ms: u64,
    /// Bumped by every renewal, so every write is a new version.
    pub renewals: u64,
}

/// A candidate's or holder's view of the lease.
pub struct ControllerLease {
    bucket: Bucket,
    me: LeaseRecord,
    duration: Duration,
    held: Mutex<Option<Held>>,
    watched: Mutex<Option<(String, Instant)>>,
}

#[derive(Clone)]
struct Held {
    version: String,
    record: LeaseRecord,
    valid_until: Instant,
}

/// Slack for clock-rate differences between brokers, and a margin on top.
const DRIFT: f64 = 0.05;
const MARGIN: Duration = Duration::from_millis(500);

impl ControllerLease {
    pub fn new(bucket: Bucket, broker_id: i32, rpc: String, instance: String, duration: Duration) -> Self {
        let me = LeaseRecord {
            holder: broker_id,
            term: 0,
            rpc,
            instance,
            duration_ms: duration.as_millis() as u64,
            renewals: 0,
        };
        Self { bucket, me, duration, held: Mutex::new(None), watched: Mutex::new(None) }
    }

    /// The lease as stored now (None: never taken).
    pub async fn current(&self) -> Result<Option<LeaseRecord>> {
        Ok(self.read().await?.map(|(r, _)| r))
    }

    async fn read(&self) -> Result<Option<(LeaseRecord, String)>> {
        let key = self.bucket.key(KEY);
        let Some((bytes, version)) = cas::read(&self.bucket, &key).await? else { return Ok(None) };
        match serde_json::from_slice(&bytes) {
            Ok(r) => Ok(Some((r, version))),
            Err(error) => {
                // A torn or foreign object: treat it as a holder that never renews.
                tracing::warn!(%error, "controller lease object is unreadable");
                Ok(Some((
                    LeaseRecord {
                        holder: -1,
                        term: 0,
                        rpc: String::new(),
                        instance: String::new(),
                        duration_ms: 0,
                        renewals: 0,
                    },
                    version,
                )))
            }
        }
    }

    /// One election step: takes the lease if it is free, ours from a dead
    /// incarnation, or unchanged for longer than its duration. Returns the
    /// term won, or None (someone else holds it; call again later).
    pub async fn try_acquire(&self) -> Result<Option<u64>> {
        let key = self.bucket.key(KEY);
        let sent = Instant::now();
        let (term, outcome) = match self.read().await? {
            None => {
                let record = LeaseRecord { term: 1, ..self.me.clone() };
                (1, cas::create(&self.bucket, &key, encode(&record)).await?)
            }
            Some((current, version)) => {
                let mine = current.holder == self.me.holder && current.instance == self.me.instance;
                // Released by a holder that ended its term (a clean stop):
                // free now, no need to watch it run out.
                let released = current.duration_ms == 0 && current.holder >= 0;
                let expired = released || {
                    let mut watched = self.watched.lock().expect("lease lock");
                    match &*watched {
                        Some((v, since)) if *v == version => {
                            let wait =
                                Duration::from_millis(current.duration_ms).mul_f64(1.0 + DRIFT) + MARGIN;
                            since.elapsed() >= wait
                        }
                        _ => {
                            *watched = Some((version.clone(), Instant::now()));
                            false
                        }
                    }
                };
                if !(mine || expired) {
                    return Ok(None);
                }
                let term = current.term + 1;
                let record = LeaseRecord { term, ..self.me.clone() };
                (term, cas::replace(&self.bucket, &key, &version, encode(&record)).await?)
            }
        };
        match outcome {
            Cas::Won(version) => {
                let record = LeaseRecord { term, ..self.me.clone() };
                *self.held.lock().expect("lease lock") =
                    Some(Held { version, record, valid_until: sent + self.duration });
                Ok(Some(term))
            }
            Cas::Lost => Ok(None),
        }
    }

    /// Renews a held lease. `Ok(false)`: it was taken over (we are deposed).
    pub async fn renew(&self) -> Result<bool> {
        let Some(held) = self.held.lock().expect("lease lock").clone() else { return Ok(false) };
        let record = LeaseRecord { renewals: held.record.renewals + 1, ..held.record.clone() };
        let sent = Instant::now();
        match cas::replace(&self.bucket, &self.bucket.key(KEY), &held.version, encode(&record)).await? {
            Cas::Won(version) => {
                *self.held.lock().expect("lease lock") =
                    Some(Held { version, record, valid_until: sent + self.duration });
                Ok(true)
            }
            Cas::Lost => {
                *self.held.lock().expect("lease lock") = None;
                Ok(false)
            }
        }
    }

    /// Gives the lease up (clean stop): a successor need not wait it out.
    pub async fn release(&self) {
        let Some(held) = self.held.lock().expect("lease lock").take() else { return };
        let record = LeaseRecord { duration_ms: 0, renewals: held.record.renewals + 1, ..held.record };
        let _ = cas::replace(&self.bucket, &self.bucket.key(KEY), &held.version, encode(&record)).await;
    }

    /// This candidate's process lineage (see [`LeaseRecord::instance`]).
    pub fn instance(&self) -> &str {
        &self.me.instance
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    pub fn is_held(&self) -> bool {
        self.held.lock().expect("lease lock").as_ref().is_some_and(|h| Instant::now() < h.valid_until)
    }
}

impl WriteLease for ControllerLease {
    fn valid_until(&self) -> Instant {
        self.held.lock().expect("lease lock").as_ref().map_or_else(Instant::now, |h| h.valid_until)
    }
}

fn encode(record: &LeaseRecord) -> Bytes {
    Bytes::from(serde_json::to_vec(record).expect("lease serializes"))
}
