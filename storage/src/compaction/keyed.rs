//! Key compaction (Kafka's `cleanup.policy=compact`): the owner of a stream
//! rewrites its committed ranges keeping, per key, only the newest record,
//! as Kafka's log cleaner does. Offsets stay where they were (a rewritten
//! range covers the same offsets, with gaps), so consumers, committed
//! offsets and the metadata's contiguity are untouched.
//!
//! A round cleans one stream: it builds a map from key to newest offset over
//! the dirty part (committed above the stream's `cleaned_end`, old enough
//! for `min.compaction.lag.ms`), then rewrites everything from the start of
//! the stream up to the end of that part, dropping records the map
//! supersedes, records without a key, and tombstones older than
//! `delete.retention.ms`. The output is written as objects of at most
//! `max_output_bytes`, each committed (and fenced) like any compaction; the
//! last one moves `cleaned_end`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use object_store::ObjectStoreExt;

use super::{CompactionConfig, CompactionOutput};
use crate::error::{Result, StorageError};
use crate::meta::{CompactedRun, MetaState};
use crate::object::{ObjectBuilder, ObjectRange};
use crate::store::StreamStore;
use crate::StreamId;

/// One record as key compaction sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedRecord {
    pub offset: i64,
    /// A 128-bit hash of the key (None: the record has no key).
    pub key: Option<u128>,
    /// The value is null: a deletion marker.
    pub tombstone: bool,
    pub timestamp: i64,
}

/// The record format, as key compaction needs it (the Kafka codec lives in
/// the broker). Batches that hold no user records (control batches) are
/// skipped by `scan` and kept whole by `retain`.
pub trait RecordKeys: Send + Sync {
    /// Calls `f` for every record of one batch.
    fn scan(&self, batch: &Bytes, f: &mut dyn FnMut(KeyedRecord)) -> std::result::Result<(), String>;
    /// The batch with only the records `keep` wants (None: none of them,
    /// unless `keep_empty`: then the batch with no records, which still
    /// carries its offsets to consumers).
    fn retain(
        &self,
        batch: &Bytes,
        keep: &mut dyn FnMut(KeyedRecord) -> bool,
        keep_empty: bool,
    ) -> std::result::Result<Option<Bytes>, String>;
}

/// A 128-bit key hash: a collision would drop a live key's newest record,
/// so 64 bits (one in ~10^19 per pair) is not enough margin for billions of
/// keys; two independent SipHash passes are.
pub fn key_hash(key: &[u8]) -> u128 {
    let half = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// A compacted stream's cleaning rules (its topic's configs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeyPolicy {
    pub stream: StreamId,
    /// `min.cleanable.dirty.ratio`: clean once this share of the bytes is dirty.
    pub min_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: records younger than this are not cleaned.
    pub min_lag_ms: i64,
    /// `max.compaction.lag.ms`: dirty records older than this are cleaned
    /// whatever the ratio.
    pub max_lag_ms: i64,
    /// `delete.retention.ms`: tombstones older than this are dropped.
    pub delete_retention_ms: i64,
}

/// One stream's cleaning round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedPlan {
    pub stream: StreamId,
    pub stream_epoch: u32,
    /// Every committed range from the stream's start to `cleanable_end`.
    pub ranges: Vec<(String, ObjectRange)>,
    /// Ranges ending above this are dirty: their keys make the map.
    pub first_dirty: i64,
    pub cleanable_end: i64,
    /// Tombstones with a timestamp below this go.
    pub tombstone_horizon: i64,
}

/// The stream of `broker_id` most in need of cleaning under its policy, if
/// any needs it at `now_ms`.
pub fn plan_keyed(
    state: &MetaState,
    broker_id: i32,
    policies: &[KeyPolicy],
    now_ms: i64,
) -> Option<KeyedPlan> {
    let mut best: Option<(f64, KeyedPlan)> = None;
    for p in policies {
        let Some(s) = state.streams.get(&p.stream) else { continue };
        if s.owner != Some(broker_id) || s.moving_to.is_some() {
            continue;
        }
        let first_dirty = s.cleaned_end.max(s.start_offset);
        let too_new = now_ms.saturating_sub(p.min_lag_ms.max(0));
        let (mut clean, mut dirty, mut oldest_dirty) = (0u64, 0u64, i64::MAX);
        let mut ranges = Vec::new();
        for (key, r) in s.ranges.iter() {
            if r.max_timestamp > too_new {
                break;
            }
            if r.end_offset > first_dirty {
                dirty += r.length;
                oldest_dirty = oldest_dirty.min(r.max_timestamp);
            } else {
                clean += r.length;
            }
            ranges.push((key.clone(), r.clone()));
        }
        let Some(cleanable_end) = ranges.last().map(|(_, r)| r.end_offset) else { continue };
        let expired_tombstone =
            s.oldest_tombstone.is_some_and(|t| t < now_ms.saturating_sub(p.delete_retention_ms.max(0)));
        if !expired_tombstone && (cleanable_end <= first_dirty || dirty == 0) {
            continue;
        }
        let ratio = dirty as f64 / (clean + dirty).max(1) as f64;
        let horizon = now_ms.saturating_sub(p.delete_retention_ms.max(0));
        let overdue = oldest_dirty < now_ms.saturating_sub(p.max_lag_ms)
            || s.oldest_tombstone.is_some_and(|t| t < horizon);
        if ratio < p.min_dirty_ratio && !overdue {
            continue;
        }
        // Overdue streams first, then the dirtiest.
        let score = if overdue { 2.0 } else { ratio };
        if best.as_ref().is_none_or(|(b, _)| score > *b) {
            let plan = KeyedPlan {
                stream: p.stream,
                stream_epoch: s.epoch,
                ranges,
                first_dirty,
                cleanable_end,
                tombstone_horizon: now_ms.saturating_sub(p.delete_retention_ms.max(0)),
            };
            best = Some((score, plan));
        }
    }
    best.map(|(_, plan)| plan)
}

/// Splits a range's bytes into its batches (v2 framing).
fn batches(data: &Bytes) -> std::result::Result<Vec<Bytes>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        if pos + 12 > data.len() {
            return Err(format!("partial batch header at {pos}"));
        }
        let len = i32::from_be_bytes(data[pos + 8..pos + 12].try_into().expect("4 bytes"));
        let total = 12 + len.max(0) as usize;
        if len < 49 || pos + total > data.len() {
            return Err(format!("bad batch length {len} at {pos}"));
        }
        out.push(data.slice(pos..pos + total));
        pos += total;
    }
    Ok(out)
}

/// What the cleaner keeps of one record.
fn keep(r: KeyedRecord, map: &HashMap<u128, i64>, horizon: i64) -> bool {
    let Some(key) = r.key else { return false };
    let newest = map.get(&key).copied().unwrap_or(i64::MIN);
    r.offset >= newest && !(r.tombstone && r.timestamp < horizon)
}

/// An output range being filled: consecutive inputs of one epoch.
struct Group {
    epoch: u32,
    start: i64,
    end: i64,
    max_ts: i64,
    batches: Vec<Bytes>,
    bytes: u64,
}

impl StreamStore {
    async fn read_range(&self, key: &str, r: &ObjectRange) -> Result<Bytes> {
        if r.length == 0 {
            return Ok(Bytes::new());
        }
        let bucket = &self.inner.bucket;
        bucket
            .store
            .get_range(&bucket.key(key), r.position..r.position + r.length)
            .await
            .map_err(|e| StorageError::ObjectRead { key: key.to_string(), reason: e.to_string() })
    }

    /// Cleans one stream as `plan` says: writes the rewritten ranges as one
    /// or more objects (create-only, keys of this incarnation) and returns
    /// them in offset order, to be committed in that order. Nothing is
    /// committed here.
    pub async fn write_key_compaction(
        &self,
        plan: &KeyedPlan,
        keys: std::sync::Arc<dyn RecordKeys>,
        cfg: &CompactionConfig,
    ) -> Result<Vec<CompactionOutput>> {
        let corrupt = |key: &str, reason: String| StorageError::CorruptObject { key: key.into(), reason };
        // Pass 1: the newest offset of every key in the dirty part.
        let mut map: HashMap<u128, i64> = HashMap::new();
        for (key, r) in plan.ranges.iter().filter(|(_, r)| r.end_offset > plan.first_dirty) {
            let data = self.read_range(key, r).await?;
            let k = keys.clone();
            map = tokio::task::spawn_blocking(move || {
                for b in batches(&data)? {
                    k.scan(&b, &mut |rec| {
                        if let Some(h) = rec.key {
                            let e = map.entry(h).or_insert(rec.offset);
                            *e = (*e).max(rec.offset);
                        }
                    })?;
                }
                Ok::<_, String>(map)
            })
            .await
            .map_err(|e| StorageError::Invalid(format!("key compaction task failed: {e}")))?
            .map_err(|reason| corrupt(key, reason))?;
        }
        let map = std::sync::Arc::new(map);
        // Pass 2: rewrite from the start, an object at a time.
        let mut outputs = Vec::new();
        let mut builder = ObjectBuilder::default();
        let mut run: Vec<ObjectRange> = Vec::new();
        let mut group: Option<Group> = None;
        let close = |g: Group, builder: &mut ObjectBuilder, run: &mut Vec<ObjectRange>| {
            run.push(builder.add_stream(plan.stream, g.epoch, g.start, g.end, g.max_ts, &g.batches));
        };
        let mut oldest_tombstone: Option<i64> = None;
        for (i, (key, r)) in plan.ranges.iter().enumerate() {
            let data = self.read_range(key, r).await?;
            let (k, m, horizon) = (keys.clone(), map.clone(), plan.tombstone_horizon);
            let tail = i + 1 == plan.ranges.len();
            let (kept, oldest): (Vec<Bytes>, Option<i64>) = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                let mut oldest: Option<i64> = None;
                let all = batches(&data)?;
                let n = all.len();
                for (j, b) in all.into_iter().enumerate() {
                    // The section's last batch stays, emptied if need be, so
                    // that a consumer at the end of the log sees it pass.
                    let keep_empty = tail && j + 1 == n;
                    let mut decide = |rec: KeyedRecord| {
                        let kept = keep(rec, &m, horizon);
                        if kept && rec.tombstone {
                            oldest = Some(oldest.map_or(rec.timestamp, |t| t.min(rec.timestamp)));
                        }
                        kept
                    };
                    if let Some(b) = k.retain(&b, &mut decide, keep_empty)? {
                        out.push(b);
                    }
                }
                Ok::<_, String>((out, oldest))
            })
            .await
            .map_err(|e| StorageError::Invalid(format!("key compaction task failed: {e}")))?
            .map_err(|reason| corrupt(key, reason))?;
            if let Some(t) = oldest {
                oldest_tombstone = Some(oldest_tombstone.map_or(t, |o| o.min(t)));
            }
            let bytes: u64 = kept.iter().map(|b| b.len() as u64).sum();
            // KIP-320 needs epoch boundaries; a catch-up read wants bounded ranges.
            if let Some(g) = group.take() {
                if g.epoch != r.epoch || (g.bytes > 0 && g.bytes + bytes > cfg.max_range_bytes) {
                    close(g, &mut builder, &mut run);
                } else {
                    group = Some(g);
                }
            }
            let g = group.get_or_insert_with(|| Group {
                epoch: r.epoch,
                start: r.start_offset,
                end: r.start_offset,
                max_ts: -1,
                batches: Vec::new(),
                bytes: 0,
            });
            g.end = r.end_offset;
            g.max_ts = g.max_ts.max(r.max_timestamp);
            g.bytes += bytes;
            g.batches.extend(kept);
            let last = i + 1 == plan.ranges.len();
            let full = builder_bytes(&run) + group.as_ref().map_or(0, |g| g.bytes) >= cfg.max_output_bytes;
            if last || full {
                if let Some(g) = group.take() {
                    close(g, &mut builder, &mut run);
                }
                let done = std::mem::take(&mut builder);
                let ranges = std::mem::take(&mut run);
                let cleaned = last.then_some((plan.cleanable_end, oldest_tombstone));
                outputs.push(self.put_keyed(plan, done, ranges, cleaned).await?);
            }
        }
        Ok(outputs)
    }

    async fn put_keyed(
        &self,
        plan: &KeyedPlan,
        builder: ObjectBuilder,
        ranges: Vec<ObjectRange>,
        cleaned: Option<(i64, Option<i64>)>,
    ) -> Result<CompactionOutput> {
        let (object, _) = builder.finish();
        let (key, size) = self.put_compacted(object).await?;
        let run = CompactedRun {
            stream: plan.stream,
            stream_epoch: plan.stream_epoch,
            start_offset: ranges.first().map_or(0, |r| r.start_offset),
            end_offset: ranges.last().map_or(0, |r| r.end_offset),
            ranges,
            cleaned_to: cleaned.map(|(to, _)| to),
            oldest_tombstone: cleaned.and_then(|(_, t)| t),
        };
        Ok(CompactionOutput { key, size, runs: vec![run] })
    }
}

fn builder_bytes(run: &[ObjectRange]) -> u64 {
    run.iter().map(|r| r.length).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::StreamMeta;

    fn range(start: i64, end: i64, length: u64, ts: i64) -> ObjectRange {
        ObjectRange {
            stream: 3,
            epoch: 1,
            start_offset: start,
            end_offset: end,
            position: 0,
            length,
            max_timestamp: ts,
        }
    }

    fn state(ranges: &[ObjectRange], cleaned_end: i64) -> MetaState {
        let mut s = StreamMeta { owner: Some(1), epoch: 1, cleaned_end, ..StreamMeta::default() };
        for (i, r) in ranges.iter().enumerate() {
            s.ranges.push_back((format!("o{i}"), r.clone()));
            s.end_offset = r.end_offset;
        }
        let mut st = MetaState::default();
        st.streams.insert(3, s);
        st
    }

    const POLICY: KeyPolicy = KeyPolicy {
        stream: 3,
        min_dirty_ratio: 0.5,
        min_lag_ms: 0,
        max_lag_ms: i64::MAX,
        delete_retention_ms: 1000,
    };

    #[test]
    fn a_stream_is_cleaned_once_half_of_it_is_dirty() {
        let ranges = [range(0, 10, 100, 10), range(10, 20, 60, 20), range(20, 30, 50, 30)];
        assert!(plan_keyed(&state(&ranges, 20), 1, &[POLICY], 100).is_none(), "50 of 210 bytes dirty");
        let plan = plan_keyed(&state(&ranges, 10), 1, &[POLICY], 100).expect("110 of 210 dirty");
        assert_eq!((plan.first_dirty, plan.cleanable_end, plan.ranges.len()), (10, 30, 3));
        assert!(plan_keyed(&state(&ranges, 10), 2, &[POLICY], 100).is_none(), "another broker's stream");
        assert!(plan_keyed(&state(&ranges, 30), 1, &[POLICY], 100).is_none(), "all clean");
    }

    #[test]
    fn young_records_wait_for_the_minimum_lag_and_old_ones_force_a_round() {
        let ranges = [range(0, 10, 100, 10), range(10, 20, 10, 90)];
        let lag = KeyPolicy { min_lag_ms: 50, ..POLICY };
        let plan = plan_keyed(&state(&ranges, 0), 1, &[lag], 100).expect("the first range is old enough");
        assert_eq!(plan.cleanable_end, 10);
        let forced = KeyPolicy { max_lag_ms: 50, ..POLICY };
        assert!(plan_keyed(&state(&ranges, 10), 1, &[POLICY], 100).is_none(), "10 of 110 dirty");
        assert!(plan_keyed(&state(&ranges, 10), 1, &[forced], 200).is_some(), "dirty for longer than 50 ms");
        let mut tombstoned = state(&ranges, 20);
        tombstoned.streams.get_mut(&3).unwrap().oldest_tombstone = Some(50);
        assert!(plan_keyed(&tombstoned, 1, &[POLICY], 1000).is_none(), "the tombstone is young");
        assert!(plan_keyed(&tombstoned, 1, &[POLICY], 1100).is_some(), "an expired tombstone is due");
    }

    #[test]
    fn the_newest_record_of_a_key_stays_and_old_tombstones_go() {
        let map = HashMap::from([(1u128, 5i64)]);
        let rec = |offset, key, tombstone, timestamp| KeyedRecord { offset, key, tombstone, timestamp };
        assert!(!keep(rec(3, Some(1), false, 0), &map, 0), "superseded");
        assert!(keep(rec(5, Some(1), false, 0), &map, 0), "newest");
        assert!(keep(rec(2, Some(9), false, 0), &map, 0), "a key the dirty part does not have");
        assert!(!keep(rec(2, None, false, 0), &map, 0), "no key");
        assert!(keep(rec(5, Some(1), true, 50), &map, 10), "a young tombstone");
        assert!(!keep(rec(5, Some(1), true, 5), &map, 10), "an old tombstone");
        assert_ne!(key_hash(b"a"), key_hash(b"b"));
        assert_eq!(key_hash(b"a"), key_hash(b"a"));
    }
}
