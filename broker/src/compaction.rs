//! The compaction task: now and then, rewrite the ranges of the streams this
//! broker owns out of small objects into a larger one, or (when no merge is
//! due) clean one compacted topic's stream of superseded keys (the planners
//! and writers live in `floe_storage::compaction`), and commit it through
//! the controller. Reads move to the new object when the metadata entry arrives
//! (`Member::apply`); the old objects are deleted once they are garbage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use floe_protocol::{RecordBatch, RecordView, Retained};
use floe_storage::compaction::keyed::{self, KeyPolicy, KeyedRecord, RecordKeys};
use floe_storage::compaction::{self, CompactionConfig, CompactionOutput};
use floe_storage::meta::MetaState;
use floe_storage::StorageError;
use tokio::sync::watch;
use tonic::Code;

use crate::broker::Broker;
use crate::control_plane::storage_error;
use crate::controller::retention;
use crate::group::offsets::now_ms;
use crate::group::OFFSETS_TOPIC;
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
    let Some(plan) = compaction::plan_at(&state, broker.broker_id(), cfg, now_ms()) else {
        return clean_keys(broker, cfg).await;
    };
    let started = Instant::now();
    let out = broker.store.write_compaction(&plan, cfg).await?;
    let applied = commit(broker, &out).await?;
    tracing::info!(
        key = out.key,
        inputs = plan.inputs.len(),
        runs = out.runs.len(),
        applied,
        bytes = out.size,
        ms = started.elapsed().as_millis() as u64,
        "compacted"
    );
    Ok(())
}

/// One key-compaction round (`cleanup.policy=compact`): the stream most in
/// need of it, cleaned and committed object by object.
async fn clean_keys(broker: &Broker, cfg: &CompactionConfig) -> Result<(), StorageError> {
    let state = broker.metadata();
    let policies = key_policies(&state);
    let Some(plan) = keyed::plan_keyed(&state, broker.broker_id(), &policies, now_ms()) else {
        return Ok(());
    };
    let started = Instant::now();
    let before: u64 = plan.ranges.iter().map(|(_, r)| r.length).sum();
    let outputs = broker.store.write_key_compaction(&plan, Arc::new(KafkaRecordKeys), cfg).await?;
    let after: u64 = outputs.iter().flat_map(|o| &o.runs).flat_map(|r| &r.ranges).map(|r| r.length).sum();
    for out in &outputs {
        // A run that no longer fits (the stream moved, was trimmed or
        // deleted meanwhile) ends the round; the objects not committed are
        // swept with this incarnation's other leftovers.
        if commit(broker, out).await? == 0 {
            tracing::info!(stream = plan.stream, "key compaction went stale; trying again later");
            return Ok(());
        }
    }
    tracing::info!(
        stream = plan.stream,
        cleaned_to = plan.cleanable_end,
        objects = outputs.len(),
        bytes_before = before,
        bytes_after = after,
        ms = started.elapsed().as_millis() as u64,
        "key-compacted"
    );
    Ok(())
}

/// The cleaning rules of every compacted topic's streams, from its configs
/// (Kafka's defaults where unset). `__consumer_offsets` is compacted too.
fn key_policies(state: &MetaState) -> Vec<KeyPolicy> {
    let mut out = Vec::new();
    for topic in state.topics.values() {
        let policy = topic.configs.get("cleanup.policy").map_or("delete", String::as_str);
        if !(topic.name == OFFSETS_TOPIC || policy.split(',').any(|p| p.trim() == "compact")) {
            continue;
        }
        let get = |key: &str, default: i64| {
            topic.configs.get(key).and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(default)
        };
        let ratio = topic.configs.get("min.cleanable.dirty.ratio").and_then(|v| v.trim().parse().ok());
        for id in &topic.streams {
            out.push(KeyPolicy {
                stream: *id,
                min_dirty_ratio: ratio.unwrap_or(0.5),
                min_lag_ms: get("min.compaction.lag.ms", 0),
                max_lag_ms: get("max.compaction.lag.ms", i64::MAX),
                delete_retention_ms: get("delete.retention.ms", 86_400_000),
            });
        }
    }
    out
}

/// Kafka record batches as key compaction sees them.
struct KafkaRecordKeys;

impl RecordKeys for KafkaRecordKeys {
    fn scan(&self, batch: &Bytes, f: &mut dyn FnMut(KeyedRecord)) -> Result<(), String> {
        let b = RecordBatch::parse_unchecked_crc(batch.clone()).map_err(|e| e.to_string())?;
        if b.is_control() {
            return Ok(());
        }
        b.for_each_record(|r| f(keyed(r))).map_err(|e| e.to_string())
    }

    fn retain(
        &self,
        batch: &Bytes,
        keep: &mut dyn FnMut(KeyedRecord) -> bool,
        keep_empty: bool,
    ) -> Result<Option<Bytes>, String> {
        let b = RecordBatch::parse_unchecked_crc(batch.clone()).map_err(|e| e.to_string())?;
        if b.is_control() {
            return Ok(Some(batch.clone()));
        }
        match b.retain(|r| keep(keyed(r))).map_err(|e| e.to_string())? {
            Retained::All => Ok(Some(batch.clone())),
            Retained::Nothing if keep_empty => Ok(Some(b.emptied().into_bytes())),
            Retained::Nothing => Ok(None),
            Retained::Some(b) => Ok(Some(b.into_bytes())),
        }
    }
}

fn keyed(r: &RecordView<'_>) -> KeyedRecord {
    KeyedRecord {
        offset: r.offset,
        key: r.key.map(keyed::key_hash),
        tombstone: r.value.is_none(),
        timestamp: r.timestamp,
    }
}

/// Commits one compaction output through the controller; how many of its
/// runs applied. A commit whose answer was lost is recognised by its key, so
/// the same one is tried again (bounded). An object never committed stays
/// until this incarnation ends, then the bucket sweep deletes it.
async fn commit(broker: &Broker, out: &CompactionOutput) -> Result<usize, StorageError> {
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
                cleaned_to: r.cleaned_to,
                oldest_tombstone: r.oldest_tombstone,
            })
            .collect(),
    };
    let mut backoff = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match broker.member.control.commit_compaction(req.clone()).await {
            Ok(resp) => return Ok(resp.applied.len()),
            Err(s) if s.code() == Code::FailedPrecondition || attempt == 5 => return Err(storage_error(&s)),
            Err(s) => {
                tracing::debug!(status = %s, attempt, "committing a compaction failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
        }
    }
}
