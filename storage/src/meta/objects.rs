//! Which objects in the bucket the metadata still needs. Every committed
//! range counts against its object; when a trim (retention, DeleteRecords)
//! or a topic deletion drops an object's last range, the object becomes
//! garbage, which the controller deletes after a grace period for reads in
//! flight, then records as deleted. Pure rules, like the rest of the state.

use serde::{Deserialize, Serialize};

use crate::meta::record::CompactedRun;
use crate::meta::state::{MetaState, StreamMeta};
use crate::object::ObjectRange;
use crate::StreamId;

/// An object some stream still reads from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub size: u64,
    /// Ranges of live streams that point into it.
    pub ranges: u32,
    /// Their bytes: what compaction would carry over (the rest is dead).
    #[serde(default)]
    pub live_bytes: u64,
}

impl MetaState {
    /// Registers a committed object and the ranges of it that streams kept
    /// (how many, and their bytes).
    pub(crate) fn add_object(&mut self, key: &str, size: u64, kept: u32, kept_bytes: u64) {
        if key.is_empty() {
            return;
        }
        // Keys are unique per upload; adding up keeps the count right even
        // if one came twice.
        match self.objects.get_mut(key) {
            Some(o) => {
                o.ranges += kept;
                o.live_bytes += kept_bytes;
            }
            None if kept == 0 => {
                self.garbage.insert(key.to_string(), size);
            }
            None => {
                self.garbage.remove(key);
                self.objects
                    .insert(key.to_string(), ObjectMeta { size, ranges: kept, live_bytes: kept_bytes });
            }
        }
    }

    /// One range of `key`, `length` bytes, is no longer read.
    pub(crate) fn release_range(&mut self, key: &str, length: u64) {
        let Some(o) = self.objects.get_mut(key) else { return };
        o.ranges = o.ranges.saturating_sub(1);
        o.live_bytes = o.live_bytes.saturating_sub(length);
        if o.ranges == 0 {
            let size = o.size;
            self.objects.remove(key);
            self.garbage.insert(key.to_string(), size);
        }
    }

    /// Moves `stream`'s start offset to `start` (never back) and drops the
    /// ranges wholly below it.
    pub(crate) fn trim_stream(&mut self, stream: StreamId, start: i64) {
        let Some(s) = self.streams.get_mut(&stream) else { return };
        s.start_offset = s.start_offset.max(start);
        let dropped = drop_below(s);
        for (key, length) in dropped {
            self.release_range(&key, length);
        }
    }

    /// A deleted stream's ranges are read no more.
    pub(crate) fn release_stream(&mut self, s: &StreamMeta) {
        for (key, r) in s.ranges.iter() {
            self.release_range(key, r.length);
        }
    }

    /// Whether `run` can replace ranges of its stream now: the stream is
    /// `broker_id`'s at the run's epoch, and its ranges from the run's start
    /// to its end are exactly there (index of the first, count).
    pub fn compactable(&self, broker_id: i32, run: &CompactedRun) -> Option<(usize, usize)> {
        let s = self.streams.get(&run.stream)?;
        if s.owner != Some(broker_id) || s.epoch != run.stream_epoch || s.moving_to.is_some() {
            return None;
        }
        let first = s.ranges.iter().position(|(_, r)| r.start_offset == run.start_offset)?;
        let mut n = 0;
        for (_, r) in s.ranges.iter().skip(first) {
            n += 1;
            if r.end_offset == run.end_offset {
                break;
            }
            if r.end_offset > run.end_offset {
                return None;
            }
        }
        let last = &s.ranges[first + n - 1].1;
        let covered = run.ranges.first().map(|r| r.start_offset) == Some(run.start_offset)
            && run.ranges.last().map(|r| r.end_offset) == Some(run.end_offset)
            && run.ranges.windows(2).all(|w| w[0].end_offset == w[1].start_offset)
            && run.ranges.iter().all(|r| r.stream == run.stream);
        (last.end_offset == run.end_offset && covered).then_some((first, n))
    }

    /// Applies a compaction: each run that still fits replaces its ranges.
    pub(crate) fn apply_compaction(&mut self, key: &str, size: u64, broker_id: i32, runs: &[CompactedRun]) {
        let (mut kept, mut kept_bytes) = (0u32, 0u64);
        for run in runs {
            let Some((first, n)) = self.compactable(broker_id, run) else { continue };
            let s = self.streams.get_mut(&run.stream).expect("checked");
            let old: Vec<(String, ObjectRange)> = (0..n).map(|_| s.ranges.remove(first)).collect();
            for (i, r) in run.ranges.iter().enumerate() {
                s.ranges.insert(first + i, (key.to_string(), r.clone()));
            }
            if let Some(c) = run.cleaned_to {
                s.cleaned_end = s.cleaned_end.max(c.min(run.end_offset));
                s.oldest_tombstone = run.oldest_tombstone;
            }
            let new_bytes: u64 = run.ranges.iter().map(|r| r.length).sum();
            let old_bytes: u64 = old.iter().map(|(_, r)| r.length).sum();
            s.bytes = s.bytes.saturating_sub(old_bytes) + new_bytes;
            for (k, r) in &old {
                self.release_range(k, r.length);
            }
            kept += run.ranges.len() as u32;
            kept_bytes += new_bytes;
        }
        self.add_object(key, size, kept, kept_bytes);
    }

    /// Rebuilds the registry of a state written before it existed. Objects of
    /// topics deleted back then are unknown here; the bucket sweep finds them.
    pub(crate) fn rebuild_objects(&mut self) {
        if !self.objects.is_empty() || !self.garbage.is_empty() {
            return;
        }
        let mut objects = imbl::OrdMap::new();
        for s in self.streams.values() {
            for (key, r) in s.ranges.iter() {
                let o: &mut ObjectMeta = objects.entry(key.clone()).or_default();
                o.ranges += 1;
                o.size += r.length;
                o.live_bytes += r.length;
            }
        }
        self.objects = objects;
    }
}

/// Drops the ranges of `s` that end at or below its start offset; returns
/// their object keys and lengths.
fn drop_below(s: &mut StreamMeta) -> Vec<(String, u64)> {
    let mut dropped = Vec::new();
    while s.ranges.front().is_some_and(|(_, r)| r.end_offset <= s.start_offset) {
        let (key, r) = s.ranges.pop_front().expect("non-empty");
        s.bytes = s.bytes.saturating_sub(r.length);
        dropped.push((key, r.length));
    }
    dropped
}

/// Whether a newly committed range is still wanted by its stream.
pub(crate) fn kept(s: &StreamMeta, r: &ObjectRange) -> bool {
    r.end_offset > s.start_offset
}
