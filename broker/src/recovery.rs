//! Recovering a dead peer's WAL: when the controller names this broker the
//! recoverer of a fenced broker (one on the same host, so its WAL directory
//! is reachable, as a re-attached network volume would be), this broker
//! locks that directory (a paused owner still holds the lock, so nothing is
//! read while it could write), reads its un-uploaded tail, uploads it as one
//! object and commits it; the controller then hands the dead broker's
//! streams to live brokers. Acknowledged records survive the broker's loss.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use floe_protocol::RecordBatch;
use floe_storage::object::ObjectBuilder;
use floe_storage::wal::Wal;
use floe_storage::{MetaState, StorageError, StoreConfig, StreamId, WalLock};
use object_store::{PutMode, PutOptions, PutPayload};

use crate::broker::Broker;
use crate::control_plane::storage_error;
use crate::controller::wal_dir_of;
use crate::producer_state::ProducerStates;
use crate::proto;

/// Recovers broker `dead`'s WAL while this broker is still its named
/// recoverer (bounded: about ten minutes of attempts).
pub async fn recover_peer(broker: Arc<Broker>, dead: i32, dead_epoch: u64, instance: String) {
    let me = broker.broker_id();
    let dir = PathBuf::from(wal_dir_of(&instance));
    for attempt in 0..600u32 {
        let state = broker.metadata();
        let still_mine = state
            .brokers
            .get(&dead)
            .is_some_and(|b| b.epoch == dead_epoch && b.fenced && b.recovery == Some(me) && !b.wal_recovered);
        if !still_mine {
            break;
        }
        match recover_once(&broker, dead, dead_epoch, &dir, &state).await {
            Ok(streams) => {
                tracing::info!(dead, dead_epoch, streams, dir = %dir.display(), "recovered a fenced broker's WAL");
                break;
            }
            Err(error) => {
                if attempt % 10 == 0 {
                    tracing::warn!(dead, %error, attempt, "recovering the fenced broker's WAL failed; retrying");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    broker.recovering.lock().expect("recovering lock").remove(&dead);
}

async fn recover_once(
    broker: &Broker,
    dead: i32,
    dead_epoch: u64,
    dir: &std::path::Path,
    state: &MetaState,
) -> Result<usize, StorageError> {
    let segment = StoreConfig::new(dir).wal_segment_bytes;
    let owned_dir = dir.to_path_buf();
    // The lock is held until the commit is done: the owner cannot restart
    // and replay the same tail meanwhile.
    let (_lock, records) = tokio::task::spawn_blocking(move || {
        let lock = WalLock::acquire(&owned_dir)?;
        Wal::read_only(&owned_dir, segment).map(|r| (lock, r))
    })
    .await
    .map_err(|e| StorageError::Wal(std::io::Error::other(e)))??;

    // Each owned stream's contiguous tail after its committed end.
    let mut tails: BTreeMap<StreamId, (u32, i64, i64, i64, Vec<Bytes>)> = state
        .streams_of(dead)
        .map(|(id, m)| (id, (m.epoch, m.end_offset, m.end_offset, -1, Vec::new())))
        .collect();
    for rec in records {
        let r = rec.record;
        if let Some((_, _, next, max_ts, batches)) = tails.get_mut(&r.stream) {
            if r.base_offset == *next {
                *next += i64::from(r.records);
                *max_ts = (*max_ts).max(r.max_timestamp);
                batches.push(r.payload);
            }
        }
    }
    // Producer state as the metadata had it, plus the recovered batches.
    let producers = ProducerStates::default();
    let mut builder = ObjectBuilder::default();
    for (&stream, (epoch, start, end, max_ts, batches)) in &tails {
        if let Some(m) = state.streams.get(&stream) {
            producers.restore(stream, m.producers.values());
        }
        for b in batches {
            if let Ok(batch) = RecordBatch::parse_unchecked_crc(b.clone()) {
                producers.observe(stream, &batch);
            }
        }
        if end > start {
            builder.add_stream(stream, *epoch, *start, *end, *max_ts, batches);
        }
    }
    let me = broker.broker_id();
    let (key, ranges) = if builder.is_empty() {
        (String::new(), Vec::new())
    } else {
        let key = format!("data/r{me}-b{dead}-e{dead_epoch}-{:016x}.obj", floe_storage::meta::log::nonce());
        let (object, ranges) = builder.finish();
        let bucket = broker.store.bucket();
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        bucket.store.put_opts(&bucket.key(&key), PutPayload::from(object), opts).await?;
        (key, ranges)
    };
    let snapshots =
        tails.iter().flat_map(|(s, (_, start, end, _, _))| producers.snapshot(*s, *start, *end)).collect();
    let req = proto::WalRecoveryRequest {
        recoverer: me,
        recoverer_epoch: broker.member.broker_epoch,
        broker_id: dead,
        broker_epoch: dead_epoch,
        key,
        ranges: ranges.iter().map(proto::Range::from).collect(),
        producers: snapshots,
    };
    let resp = broker.member.control.complete_wal_recovery(req).await.map_err(|s| storage_error(&s))?;
    broker.member.wait_for(resp.seq).await;
    Ok(tails.len())
}
