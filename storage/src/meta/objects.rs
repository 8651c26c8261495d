//! Which objects in the bucket the metadata still needs. Every committed
//! range counts against its object; when a trim (retention, DeleteRecords)
//! or a topic deletion drops an object's last range, the object becomes
//! garbage, which the controller deletes after a grace period for reads in
//! flight, then records as deleted. Pure rules, like the rest of the state.

use serde::{Deserialize, Serialize};

use crate::meta::state::{MetaState, StreamMeta};
use crate::object::ObjectRange;
use crate::StreamId;

/// An object some stream still reads from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub size: u64,
    /// Ranges of live streams that point into it.
    pub ranges: u32,
}

impl MetaState {
    /// Registers a committed object and the ranges of it that streams kept.
    pub(crate) fn add_object(&mut self, key: &str, size: u64, kept: u32) {
        if key.is_empty() {
            return;
        }
        // Keys are unique per upload; adding up keeps the count right even
        // if one came twice.
        match self.objects.get_mut(key) {
            Some(o) => o.ranges += kept,
            None if kept == 0 => {
                self.garbage.insert(key.to_string(), size);
            }
            None => {
                self.garbage.remove(key);
                self.objects.insert(key.to_string(), ObjectMeta { size, ranges: kept });
            }
        }
    }

    /// One range of `key` is no longer read.
    pub(crate) fn release_range(&mut self, key: &str) {
        let Some(o) = self.objects.get_mut(key) else { return };
        o.ranges = o.ranges.saturating_sub(1);
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
        for key in dropped {
            self.release_range(&key);
        }
    }

    /// A deleted stream's ranges are read no more.
    pub(crate) fn release_stream(&mut self, s: &StreamMeta) {
        for (key, _) in s.ranges.iter() {
            self.release_range(key);
        }
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
            }
        }
        self.objects = objects;
    }
}

/// Drops the ranges of `s` that end at or below its start offset; returns
/// their object keys.
fn drop_below(s: &mut StreamMeta) -> Vec<String> {
    let mut dropped = Vec::new();
    while s.ranges.front().is_some_and(|(_, r)| r.end_offset <= s.start_offset) {
        let (key, r) = s.ranges.pop_front().expect("non-empty");
        s.bytes = s.bytes.saturating_sub(r.length);
        dropped.push(key);
    }
    dropped
}

/// Whether a newly committed range is still wanted by its stream.
pub(crate) fn kept(s: &StreamMeta, r: &ObjectRange) -> bool {
    r.end_offset > s.start_offset
}
