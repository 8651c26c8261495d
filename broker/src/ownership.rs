//! Following ownership: after every metadata change, this broker opens the
//! streams assigned to it (with their producer state and, for offsets
//! partitions, their groups' committed offsets), hands over the streams the
//! controller moves away (seal, commit the tail, release), and drops the
//! streams it no longer owns. Also the store's committer: uploads are
//! committed through the controller with this broker's epochs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use floe_storage::meta::StreamMeta;
use floe_storage::{CommitOutcome, Committer, ObjectCommit, Refusal, StorageError, StreamId};
use futures::future::BoxFuture;

use crate::broker::Broker;
use crate::control_plane::{storage_error, ControlPlane};
use crate::group::OFFSETS_TOPIC;
use crate::producer_state::ProducerStates;
use crate::proto;

/// Commits uploads through the controller, with the producer state of the
/// committed ranges so that it travels with its streams.
pub struct ControllerCommitter {
    pub control: Arc<ControlPlane>,
    pub broker_id: i32,
    pub broker_epoch: u64,
    pub producers: Arc<ProducerStates>,
}

impl Committer for ControllerCommitter {
    fn commit(&self, commit: ObjectCommit) -> BoxFuture<'_, floe_storage::Result<CommitOutcome>> {
        Box::pin(async move {
            let mut producers = Vec::new();
            for r in &commit.ranges {
                producers.extend(self.producers.snapshot(r.stream, r.start_offset, r.end_offset));
            }
            let req = proto::CommitRequest {
                broker_id: self.broker_id,
                broker_epoch: self.broker_epoch,
                key: commit.key,
                size: commit.size,
                ranges: commit.ranges.iter().map(proto::Range::from).collect(),
                producers,
            };
            let resp = self.control.commit(req).await.map_err(|s| storage_error(&s))?;
            let refused = resp
                .refused
                .into_iter()
                .map(|r| Refusal {
                    stream: r.stream,
                    reason: r.reason,
                    fenced: r.fenced,
                    committed_end: r.committed_end,
                })
                .collect();
            Ok(CommitOutcome { refused })
        })
    }
}

/// At start-up: producer state and committed offsets of the streams the
/// store opened (with what the WAL replayed), then a first reconcile.
pub async fn start(broker: &Arc<Broker>) {
    let state = broker.metadata();
    let offsets_streams: Vec<StreamId> =
        state.topics.get(OFFSETS_TOPIC).map(|t| t.streams.clone()).unwrap_or_default();
    for (id, _) in broker.store.stream_epochs() {
        if let Some(meta) = state.streams.get(&id) {
            broker.producers.restore(id, meta.producers.values());
        }
        broker.producers.recover(&broker.store, id);
        if let Some(partition) = offsets_streams.iter().position(|s| *s == id) {
            if let Err(error) = broker.offsets.load_partition(&broker.store, id, partition).await {
                tracing::warn!(%error, stream = id, "loading committed offsets failed");
            }
        }
    }
    reconcile(broker).await;
}

/// Brings what this broker serves in line with the metadata it has.
/// Boxed: a release ends with a reconcile, which may start a release.
pub fn reconcile(broker: &Arc<Broker>) -> BoxFuture<'static, ()> {
    let broker = broker.clone();
    Box::pin(async move {
        let _one_at_a_time = broker.reconcile_lock.lock().await;
        reconcile_now(&broker).await;
    })
}

async fn reconcile_now(broker: &Arc<Broker>) {
    let state = broker.metadata();
    let me = broker.broker_id();
    for (id, b) in state.brokers.iter() {
        if b.fenced
            && b.recovery == Some(me)
            && !b.wal_recovered
            && broker.recovering.lock().expect("recovering lock").insert(*id)
        {
            tokio::spawn(crate::recovery::recover_peer(
                broker.clone(),
                *id,
                b.epoch,
                b.address.instance.clone(),
            ));
        }
    }
    let held: HashMap<StreamId, u32> = broker.store.stream_epochs().into_iter().collect();
    let offsets_streams: Vec<StreamId> =
        state.topics.get(OFFSETS_TOPIC).map(|t| t.streams.clone()).unwrap_or_default();
    for (id, meta) in state.streams_of(me) {
        if meta.moving_to.is_some() {
            if held.contains_key(&id) && broker.releasing.lock().expect("releasing lock").insert(id) {
                tokio::spawn(release(broker.clone(), id, meta.epoch));
            }
            continue;
        }
        if held.get(&id) == Some(&meta.epoch) {
            // Retention or DeleteRecords may have moved its start.
            broker.store.trim(id, meta.start_offset);
            continue;
        }
        let offsets_partition = offsets_streams.iter().position(|s| *s == id);
        if let Some(partition) = offsets_partition {
            broker.offsets.begin_load(partition);
        }
        open(broker, id, meta);
        if let Some(partition) = offsets_partition {
            // Bounded: a read that fails is tried again a few times before
            // the groups are served with what could be read.
            for attempt in 1..=3 {
                match broker.offsets.load_partition(&broker.store, id, partition).await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(%error, stream = id, attempt, "loading committed offsets failed");
                        broker.offsets.begin_load(partition);
                        tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
                    }
                }
            }
            broker.offsets.end_load(partition);
        }
    }
    for id in held.keys() {
        let mine = state.streams.get(id).is_some_and(|m| m.owner == Some(me));
        if !mine {
            broker.store.remove_stream(*id);
            broker.producers.forget(*id);
            if let Some(partition) = offsets_streams.iter().position(|s| s == id) {
                broker.offsets.forget_partition(partition);
                broker.groups.unload_partition(partition);
            }
            tracing::info!(stream = id, "stream no longer served here");
        }
    }
}

fn open(broker: &Broker, id: StreamId, meta: &StreamMeta) {
    if broker.store.open_stream(id, meta) {
        broker.producers.forget(id);
        broker.producers.restore(id, meta.producers.values());
    }
    tracing::info!(stream = id, epoch = meta.epoch, end_offset = meta.end_offset, "serving stream");
}

/// Hands a stream that is moving away to the controller: no more appends,
/// the acknowledged tail committed, then released with its producer state.
async fn release(broker: Arc<Broker>, id: StreamId, epoch: u32) {
    let started = std::time::Instant::now();
    // Bounded: the controller restarts a move that stalls.
    for attempt in 0..50u32 {
        let still_moving = broker.metadata().streams.get(&id).is_some_and(|m| {
            m.owner == Some(broker.broker_id()) && m.moving_to.is_some() && m.epoch == epoch
        });
        if !still_moving {
            break;
        }
        let result: Result<(), StorageError> = async {
            let end = broker.store.seal(id).await?;
            let req = proto::ReleaseRequest {
                broker_id: broker.broker_id(),
                broker_epoch: broker.member.broker_epoch,
                stream: id,
                epoch,
                end_offset: end,
                producers: broker.producers.snapshot(id, i64::MIN, i64::MAX),
            };
            let resp = broker.member.control.release(req).await.map_err(|s| storage_error(&s))?;
            broker.member.wait_for(resp.seq).await;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                tracing::info!(
                    stream = id,
                    epoch,
                    ms = started.elapsed().as_millis() as u64,
                    "stream released"
                );
                break;
            }
            Err(error) => {
                tracing::warn!(stream = id, attempt, %error, "releasing the stream failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(10) + 1))).await;
            }
        }
    }
    broker.releasing.lock().expect("releasing lock").remove(&id);
    reconcile(&broker).await;
}
