//! The compaction task: now and then, rewrite the ranges of the streams this
//! broker owns out of small objects into a larger one (the planner and the
//! writer live in `floe_storage::compaction`) and commit it through the
//! controller. Reads move to the new object when the metadata entry arrives
//! (`Member::apply`); the old objects are deleted once they are garbage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_storage::compaction::{self, CompactionConfig};
use floe_storage::StorageError;
use tokio::sync::watch;
use tonic::Code;

use crate::broker::Broker;
use crate::control_plane::storage_error;
use crate::controller::retention;
use crate::proto;

/// Compacts every `interval` until `stop`, or until this incarnation is fenced.
pub async fn run(
    broker: Arc<Broker>,
    cfg: CompactionConfig,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if broker.store.is_fenced() || broker.member.is_fenced() {
            return;
        }
        match once(&broker, &cfg).await {
            Ok(()) => {}
            Err(StorageError::Fenced(reason)) => {
                tracing::error!(%reason, "compaction refused: this broker incarnation was fenced");
                return;
            }
            Err(error) => tracing::warn!(%error, "compaction failed; the data stays where it is"),
        }
    }
}

async fn once(broker: &Broker, cfg: &CompactionConfig) -> Result<(), StorageError> {
    let state = broker.metadata();
    // A move waits for its tail to be uploaded and committed: a compaction's
    // large GETs, PUT and metadata entry would only slow it down. Wait.
    let moving = state.streams_of(broker.broker_id()).any(|(_, s)| s.moving_to.is_some());
    if moving || !broker.releasing.lock().expect("releasing lock").is_empty() {
        return Ok(());
    }
    let defaults =
        retention::Defaults { ms: broker.config.log_retention_ms, bytes: broker.config.log_retention_bytes };
    let cfg = &CompactionConfig {
        time_window_ms: retention::compaction_window_ms(&state, &defaults),
        ..cfg.clone()
    };
    let Some(plan) = compaction::plan(&state, broker.broker_id(), cfg) else { return Ok(()) };
    let started = Instant::now();
    let out = broker.store.write_compaction(&plan, cfg).await?;
    let req = proto::CompactionRequest {
        broker_id: broker.broker_id(),
        broker_epoch: broker.member.broker_epoch,
        key: out.key.clone(),
        size: out.size,
        runs: out
            .runs
            .iter()
            .map(|r| proto::CompactedRun {
                stream: r.stream,
                stream_epoch: r.stream_epoch,
                start_offset: r.start_offset,
                end_offset: r.end_offset,
                ranges: r.ranges.iter().map(proto::Range::from).collect(),
            })
            .collect(),
    };
    // A commit whose answer was lost is recognised by its key, so the same
    // one is tried again (bounded). An object never committed stays until
    // this incarnation ends, then the bucket sweep deletes it.
    let mut backoff = Duration::from_millis(200);
    for attempt in 1..=5 {
        match broker.member.control.commit_compaction(req.clone()).await {
            Ok(resp) => {
                tracing::info!(
                    key = out.key,
                    inputs = plan.inputs.len(),
                    runs = out.runs.len(),
                    applied = resp.applied.len(),
                    bytes = out.size,
                    ms = started.elapsed().as_millis() as u64,
                    "compacted"
                );
                return Ok(());
            }
            Err(s) if s.code() == Code::FailedPrecondition => return Err(storage_error(&s)),
            Err(s) if attempt == 5 => return Err(storage_error(&s)),
            Err(s) => {
                tracing::debug!(status = %s, attempt, "committing a compaction failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
    Ok(())
}
