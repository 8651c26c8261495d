//! Compaction: the owner of streams rewrites their ranges out of many small
//! objects (one per upload) into one larger object, so that a partition's
//! history is a few large ranges: fewer ranges in the metadata, fewer GETs
//! for a catch-up read, and objects that die whole when retention passes.
//!
//! A pure planner picks the input objects from the metadata; the writer
//! reads them (one ranged GET each), writes the new object, and the caller
//! commits it through the controller, which replaces each stream's run of
//! ranges only if the stream is still this broker's at the same epoch and
//! the run is still exactly there. The broker's own copy follows the
//! metadata ([`StreamStore::resync_ranges`]) when the entry arrives.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Result, StorageError};
use crate::meta::{CompactedRun, MetaState};
use crate::object::{ObjectBuilder, ObjectRange};
use crate::store::StreamStore;
use crate::StreamId;

/// What compaction merges and how large its output gets. Larger outputs
/// mean fewer ranges and GETs per partition but more memory per round and
/// bigger reads for a consumer that wants one record.
#[derive(Debug, Clone)]
pub struct CompactionConfig {
    /// An object with fewer live bytes than this is small: worth merging.
    pub small_object_bytes: u64,
    /// Merge once this many small objects hold this broker's streams (or
    /// once one object is at least half dead). More: fewer PUTs, more
    /// ranges in the meantime.
    pub min_inputs: usize,
    /// Most bytes one compaction writes (and holds in memory).
    pub max_output_bytes: u64,
    /// Largest range of one stream in the output: a catch-up read GETs one
    /// range at a time, and a cold read of one record GETs its whole range
    /// into the block cache. Larger: fewer GETs per GB caught up (128 MiB
    /// packs inputs of 16–64 MiB into about 10 a GB), a slower first record.
    pub max_range_bytes: u64,
    /// Only objects whose newest records fall in the same window of this
    /// many milliseconds are merged (0: no windows). Time retention drops a
    /// range once its newest record is old enough, so merging old data with
    /// new would keep the old past its retention; windows bound that to one
    /// window. Shorter: retention closer to exact; longer: fewer, larger
    /// ranges.
    pub time_window_ms: i64,
    /// A class with fewer than `min_inputs` objects (at least two) is merged
    /// anyway once its newest record is this old: partitions that stopped
    /// growing end in a few large ranges, not up to `min_inputs - 1` small
    /// ones per class (a catch-up read GETs each). Shorter: fewer ranges
    /// sooner, more rewrites of slow partitions.
    pub settle_after_ms: i64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            small_object_bytes: 16 << 20,
            min_inputs: 8,
            max_output_bytes: 256 << 20,
            max_range_bytes: 128 << 20,
            time_window_ms: 0,
            settle_after_ms: 300_000,
        }
    }
}

/// One stream's part of a planned compaction: consecutive committed ranges
/// (with their object keys), read at `stream_epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRun {
    pub stream: StreamId,
    pub stream_epoch: u32,
    pub ranges: Vec<(String, ObjectRange)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Input objects (each read with one ranged GET).
    pub inputs: Vec<String>,
    /// Runs in stream order, each in offset order.
    pub runs: Vec<PlannedRun>,
}

/// The object a compaction wrote, and the runs to commit.
#[derive(Debug, Clone)]
pub struct CompactionOutput {
    pub key: String,
    pub size: u64,
    pub runs: Vec<CompactedRun>,
}

/// Picks small (or half-dead) objects holding `broker_id`'s streams, and the
/// runs of those streams' ranges that lie in them. None: nothing worth doing.
/// (Without a clock: classes that have settled are not merged early.)
pub fn plan(state: &MetaState, broker_id: i32, cfg: &CompactionConfig) -> Option<Plan> {
    plan_at(state, broker_id, cfg, i64::MIN)
}

/// [`plan`] at `now_ms`: a settled class (see
/// [`CompactionConfig::settle_after_ms`]) is merged too.
pub fn plan_at(state: &MetaState, broker_id: i32, cfg: &CompactionConfig, now_ms: i64) -> Option<Plan> {
    let mine: Vec<StreamId> = state
        .streams
        .iter()
        .filter(|(_, s)| s.owner == Some(broker_id) && s.moving_to.is_none())
        .map(|(id, _)| *id)
        .collect();
    // Bytes of this broker's ranges per object, and their newest timestamp.
    let mut my_bytes: BTreeMap<&str, u64> = BTreeMap::new();
    let mut newest: HashMap<&str, i64> = HashMap::new();
    for id in &mine {
        for (key, r) in state.streams[id].ranges.iter() {
            *my_bytes.entry(key.as_str()).or_default() += r.length;
            let n = newest.entry(key.as_str()).or_insert(i64::MIN);
            *n = (*n).max(r.max_timestamp);
        }
    }
    let window = |key: &str| match cfg.time_window_ms {
        w if w > 0 => newest.get(key).map_or(0, |t| t.div_euclid(w)),
        _ => 0,
    };
    // Size classes by live bytes (each four times the last), so that data
    // is rewritten once per class, not once per round: a class merges when
    // it has `min_inputs` objects. A half-dead object joins the lowest class
    // and is worth a round by itself. A class whose `min_inputs` smallest
    // objects would not fit in one output is final.
    let class = |key: &str| -> Option<u32> {
        let o = state.objects.get(key)?;
        if o.live_bytes * 2 <= o.size {
            return Some(0);
        }
        let (mut c, mut lower, mut upper) = (0, 0u64, cfg.small_object_bytes.max(1));
        while o.live_bytes >= upper {
            c += 1;
            lower = upper;
            upper = upper.saturating_mul(4);
        }
        (lower.saturating_mul(cfg.min_inputs as u64) <= cfg.max_output_bytes).then_some(c)
    };
    let half_dead = |key: &str| state.objects.get(key).is_some_and(|o| o.live_bytes * 2 <= o.size);
    // Lowest class first, then the oldest window.
    let mut classes: BTreeMap<(u32, i64), Vec<(&str, u64)>> = BTreeMap::new();
    for (key, bytes) in &my_bytes {
        if let Some(c) = class(key) {
            classes.entry((c, window(key))).or_default().push((key, *bytes));
        }
    }
    let settled = |objects: &[(&str, u64)]| {
        let newest = objects.iter().filter_map(|(k, _)| newest.get(k)).max().copied().unwrap_or(i64::MAX);
        objects.len() >= 2 && newest < now_ms.saturating_sub(cfg.settle_after_ms)
    };
    let (_, members) = classes.into_iter().find(|(_, objects)| {
        objects.len() >= cfg.min_inputs || objects.iter().any(|(k, _)| half_dead(k)) || settled(objects)
    })?;
    let settled = settled(&members);
    let mut chosen: HashSet<&str> = HashSet::new();
    let mut total = 0u64;
    // Oldest first: keys of one incarnation sort in upload order.
    for (key, bytes) in members {
        if total + bytes > cfg.max_output_bytes && !chosen.is_empty() {
            break;
        }
        total += bytes;
        chosen.insert(key);
    }
    // The output limit may cut the class short: merge only what is worth it.
    if chosen.len() < cfg.min_inputs
        && !chosen.iter().any(|k| half_dead(k))
        && !(settled && chosen.len() >= 2)
    {
        return None;
    }
    let mut runs = Vec::new();
    for id in &mine {
        let s = &state.streams[id];
        let mut run: Vec<(String, ObjectRange)> = Vec::new();
        for (key, r) in s.ranges.iter() {
            if chosen.contains(key.as_str()) {
                run.push((key.clone(), r.clone()));
                continue;
            }
            if !run.is_empty() {
                runs.push(PlannedRun {
                    stream: *id,
                    stream_epoch: s.epoch,
                    ranges: std::mem::take(&mut run),
                });
            }
        }
        if !run.is_empty() {
            runs.push(PlannedRun { stream: *id, stream_epoch: s.epoch, ranges: run });
        }
    }
    if runs.is_empty() {
        return None;
    }
    let mut inputs: Vec<String> = runs
        .iter()
        .flat_map(|r| r.ranges.iter().map(|(k, _)| k.clone()))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    inputs.sort();
    Some(Plan { inputs, runs })
}

/// Splits a run's input ranges into output ranges: consecutive inputs of one
/// leader epoch (KIP-320 needs the boundaries), at most `max` bytes each
/// (an input larger than that stays whole).
fn group(ranges: &[(String, ObjectRange)], max: u64) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, (_, r)) in ranges.iter().enumerate() {
        let epoch_changes = i > start && ranges[i - 1].1.epoch != r.epoch;
        if i > start && (epoch_changes || bytes + r.length > max) {
            groups.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += r.length;
    }
    if start < ranges.len() {
        groups.push(start..ranges.len());
    }
    groups
}

impl StreamStore {
    /// Reads the plan's inputs and writes the compacted object (create-only,
    /// under a key of this incarnation). Nothing is committed yet.
    pub async fn write_compaction(&self, plan: &Plan, cfg: &CompactionConfig) -> Result<CompactionOutput> {
        let inner = &self.inner;
        // One ranged GET per input: the span of every range we need in it.
        let mut spans: HashMap<&str, (u64, u64)> = HashMap::new();
        for run in &plan.runs {
            for (key, r) in &run.ranges {
                let e = spans.entry(key.as_str()).or_insert((u64::MAX, 0));
                e.0 = e.0.min(r.position);
                e.1 = e.1.max(r.position + r.length);
            }
        }
        let gets: Vec<_> = spans
            .into_iter()
            .map(|(key, span)| {
                let (bucket, key) = (inner.bucket.clone(), key.to_string());
                async move {
                    // Key compaction can leave an object whose ranges are all
                    // empty: nothing to GET (an empty range is not a request
                    // every S3 server accepts).
                    if span.1 <= span.0 {
                        return Ok::<_, StorageError>((key, (span.0, Bytes::new())));
                    }
                    let bytes =
                        bucket.store.get_range(&bucket.key(&key), span.0..span.1).await.map_err(|e| {
                            StorageError::ObjectRead { key: key.clone(), reason: e.to_string() }
                        })?;
                    Ok::<_, StorageError>((key, (span.0, bytes)))
                }
                .boxed()
            })
            .collect();
        let fetched: HashMap<String, (u64, Bytes)> =
            futures::stream::iter(gets).buffer_unordered(4).try_collect().await?;
        let runs = plan.runs.clone();
        let max_range = cfg.max_range_bytes;
        // Copying up to the output size is CPU work: off the request threads.
        let (object, committed) = tokio::task::spawn_blocking(move || build(&runs, &fetched, max_range))
            .await
            .map_err(|e| StorageError::Invalid(format!("compaction task failed: {e}")))??;
        let (key, size) = self.put_compacted(object).await?;
        Ok(CompactionOutput { key, size, runs: committed })
    }

    /// PUTs a compaction's output (create-only) under a new key of this
    /// incarnation; its key and size.
    pub(crate) async fn put_compacted(&self, object: Bytes) -> Result<(String, u64)> {
        let inner = &self.inner;
        let seq = inner.object_seq.fetch_add(1, Ordering::AcqRel);
        let key = format!("data/b{}-e{}-c{seq:012}.obj", inner.config.broker_id, inner.broker_epoch);
        let size = object.len() as u64;
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match inner.bucket.store.put_opts(&inner.bucket.key(&key), PutPayload::from(object), opts).await {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        Ok((key, size))
    }

    /// Makes this broker's copy of a stream's committed ranges what the
    /// metadata says up to its committed end (after a compaction, or a
    /// reload of the metadata); ranges committed since, which the metadata
    /// this broker has may not show yet, stay.
    pub fn resync_ranges(&self, id: StreamId, meta: &crate::meta::StreamMeta) {
        let Ok(stream) = self.stream(id) else { return };
        let mut st = stream.lock();
        if st.epoch != meta.epoch {
            return;
        }
        let start = st.start_offset;
        let newer: Vec<_> =
            st.ranges.iter().filter(|(_, r)| r.start_offset >= meta.end_offset).cloned().collect();
        let mut ranges: Vec<(Arc<str>, ObjectRange)> = meta
            .ranges
            .iter()
            .filter(|(_, r)| r.end_offset > start)
            .map(|(k, r)| (Arc::from(k.as_str()), r.clone()))
            .collect();
        ranges.extend(newer);
        st.ranges = ranges;
        // Key compaction rewrote what lies below `cleaned_end`: readers must
        // see the cleaned ranges, not the uploaded batches still cached.
        self.drop_cached_below(&mut st, meta.cleaned_end);
    }
}

/// The compacted object's bytes and, per planned run, the run to commit.
fn build(
    runs: &[PlannedRun],
    fetched: &HashMap<String, (u64, Bytes)>,
    max_range: u64,
) -> Result<(Bytes, Vec<CompactedRun>)> {
    let mut builder = ObjectBuilder::default();
    let mut out = Vec::with_capacity(runs.len());
    for run in runs {
        let mut ranges = Vec::new();
        for g in group(&run.ranges, max_range) {
            let part = &run.ranges[g];
            let mut data = Vec::with_capacity(part.len());
            for (key, r) in part {
                let (base, bytes) =
                    fetched.get(key).ok_or_else(|| StorageError::Invalid(format!("{key} not read")))?;
                let at = (r.position - base) as usize;
                data.push(bytes.slice(at..at + r.length as usize));
            }
            let (first, last) = (&part[0].1, &part[part.len() - 1].1);
            let max_ts = part.iter().map(|(_, r)| r.max_timestamp).max().unwrap_or(-1);
            ranges.push(builder.add_stream(
                run.stream,
                first.epoch,
                first.start_offset,
                last.end_offset,
                max_ts,
                &data,
            ));
        }
        let (first, last) = (&run.ranges[0].1, &run.ranges[run.ranges.len() - 1].1);
        out.push(CompactedRun {
            stream: run.stream,
            stream_epoch: run.stream_epoch,
            start_offset: first.start_offset,
            end_offset: last.end_offset,
            ranges,
            cleaned_to: None,
            oldest_tombstone: None,
        });
    }
    let (bytes, _) = builder.finish();
    Ok((bytes, out))
}

pub mod keyed;

#[cfg(test)]
mod tests;
