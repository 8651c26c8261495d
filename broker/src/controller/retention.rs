//! Retention by time and size, as Kafka applies it: the oldest data goes
//! first, a whole piece at a time. Kafka deletes whole segments; Floe drops
//! whole committed ranges (one upload's worth of a partition), so a
//! partition keeps up to one upload interval (or, once compacted, one
//! object) more than its limit asks. A pure function of the metadata: the
//! controller turns its answer into a `StreamsTrimmed` record.

use floe_storage::meta::{MetaState, StreamMeta, TopicMeta};
use floe_storage::StreamId;

use crate::group::OFFSETS_TOPIC;

/// The broker-wide retention (log.retention.ms, log.retention.bytes); -1 is
/// no limit.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub ms: i64,
    pub bytes: i64,
}

impl Default for Defaults {
    fn default() -> Self {
        Self { ms: 7 * 24 * 3600 * 1000, bytes: -1 }
    }
}

/// Retention limits of one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limits {
    ms: i64,
    bytes: i64,
}

fn limits(topic: &TopicMeta, defaults: &Defaults) -> Option<Limits> {
    // Committed group offsets are kept: that topic is compacted in Kafka,
    // never deleted by age.
    if topic.name == OFFSETS_TOPIC {
        return None;
    }
    let policy = topic.configs.get("cleanup.policy").map_or("delete", String::as_str);
    if !policy.split(',').any(|p| p.trim() == "delete") {
        return None;
    }
    let get = |key: &str, default: i64| {
        topic.configs.get(key).and_then(|v| v.trim().parse().ok()).unwrap_or(default)
    };
    let l = Limits { ms: get("retention.ms", defaults.ms), bytes: get("retention.bytes", defaults.bytes) };
    (l.ms >= 0 || l.bytes >= 0).then_some(l)
}

/// The new start offset of one stream under `l` at `now_ms`, if it moves.
fn trim_point(s: &StreamMeta, l: Limits, now_ms: i64) -> Option<i64> {
    let mut live = s.bytes;
    let mut start = s.start_offset;
    for (_, r) in s.ranges.iter() {
        let expired = l.ms >= 0 && r.max_timestamp < now_ms.saturating_sub(l.ms);
        let oversize = l.bytes >= 0 && live.saturating_sub(r.length) >= l.bytes as u64;
        if !(expired || oversize) {
            break;
        }
        live = live.saturating_sub(r.length);
        start = start.max(r.end_offset);
    }
    (start > s.start_offset).then_some(start)
}

/// The time window compaction keeps data within (see
/// `CompactionConfig::time_window_ms`): a quarter of the shortest time
/// retention, between ten seconds and an hour, so that a compacted range
/// outlives its retention by at most a quarter of it.
pub fn compaction_window_ms(state: &MetaState, defaults: &Defaults) -> i64 {
    let shortest =
        state.topics.values().filter_map(|t| limits(t, defaults)).filter(|l| l.ms >= 0).map(|l| l.ms).min();
    shortest.map_or(3_600_000, |ms| ms / 4).clamp(10_000, 3_600_000)
}

/// Every stream whose oldest data is past its topic's retention, with its
/// new start offset.
pub fn due_trims(state: &MetaState, now_ms: i64, defaults: &Defaults) -> Vec<(StreamId, i64)> {
    let mut trims = Vec::new();
    for topic in state.topics.values() {
        let Some(l) = limits(topic, defaults) else { continue };
        for id in &topic.streams {
            if let Some(at) = state.streams.get(id).and_then(|s| trim_point(s, l, now_ms)) {
                trims.push((*id, at));
            }
        }
    }
    trims
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_storage::object::ObjectRange;
    use std::collections::BTreeMap;

    fn stream(ranges: &[(i64, i64, u64, i64)]) -> StreamMeta {
        let mut s = StreamMeta::default();
        for &(start, end, length, ts) in ranges {
            let r = ObjectRange {
                stream: 0,
                epoch: 1,
                start_offset: start,
                end_offset: end,
                position: 0,
                length,
                max_timestamp: ts,
            };
            s.ranges.push_back((format!("o{start}"), r));
            s.bytes += length;
            s.end_offset = end;
        }
        s
    }

    fn state(configs: &[(&str, &str)], name: &str, s: StreamMeta) -> MetaState {
        let mut state = MetaState::default();
        let configs: BTreeMap<String, String> =
            configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        state
            .topics
            .insert(name.into(), TopicMeta { name: name.into(), id: [0; 16], streams: vec![7], configs });
        state.streams.insert(7, s);
        state
    }

    const DEFAULTS: Defaults = Defaults { ms: 1000, bytes: -1 };

    #[test]
    fn time_retention_drops_the_expired_prefix_only() {
        // Ranges newest-timestamp 100, 5000, 200 (a late producer clock), 9000.
        let s = stream(&[(0, 10, 1, 100), (10, 20, 1, 5000), (20, 30, 1, 200), (30, 40, 1, 9000)]);
        let st = state(&[], "t", s);
        assert_eq!(due_trims(&st, 5500, &DEFAULTS), vec![(7, 10)], "stops at the first range still in time");
        assert_eq!(due_trims(&st, 9500, &DEFAULTS), vec![(7, 30)]);
        assert_eq!(due_trims(&st, 20_000, &DEFAULTS), vec![(7, 40)], "everything committed may go");
        let keep = state(&[("retention.ms", "-1")], "t", stream(&[(0, 10, 1, 100)]));
        assert!(due_trims(&keep, 20_000, &DEFAULTS).is_empty(), "-1 keeps forever");
    }

    #[test]
    fn size_retention_keeps_at_least_the_limit() {
        let s = stream(&[(0, 10, 100, 0), (10, 20, 100, 0), (20, 30, 100, 0)]);
        let cfg = [("retention.bytes", "150"), ("retention.ms", "-1")];
        // Dropping the first leaves 200 >= 150; dropping the second would leave 100 < 150.
        assert_eq!(due_trims(&state(&cfg, "t", s.clone()), 0, &DEFAULTS), vec![(7, 10)]);
        let cfg = [("retention.bytes", "100"), ("retention.ms", "-1")];
        assert_eq!(due_trims(&state(&cfg, "t", s), 0, &DEFAULTS), vec![(7, 20)]);
    }

    #[test]
    fn compaction_windows_follow_the_shortest_time_retention() {
        let one = state(&[("retention.ms", "400000")], "t", StreamMeta::default());
        assert_eq!(compaction_window_ms(&one, &DEFAULTS), 100_000);
        let short = state(&[("retention.ms", "1000")], "t", StreamMeta::default());
        assert_eq!(compaction_window_ms(&short, &DEFAULTS), 10_000, "at least ten seconds");
        let forever = state(&[("retention.ms", "-1")], "t", StreamMeta::default());
        assert_eq!(compaction_window_ms(&forever, &DEFAULTS), 3_600_000, "at most an hour");
    }

    #[test]
    fn compacted_topics_and_group_offsets_are_not_deleted_by_age() {
        let old = stream(&[(0, 10, 1, 0)]);
        assert!(due_trims(&state(&[("cleanup.policy", "compact")], "t", old.clone()), 1 << 40, &DEFAULTS)
            .is_empty());
        assert!(due_trims(&state(&[], OFFSETS_TOPIC, old.clone()), 1 << 40, &DEFAULTS).is_empty());
        let both = state(&[("cleanup.policy", "compact,delete")], "t", old);
        assert_eq!(due_trims(&both, 1 << 40, &DEFAULTS), vec![(7, 10)]);
    }

    #[test]
    fn a_start_moved_by_delete_records_is_not_moved_back() {
        let mut s = stream(&[(10, 20, 1, 0), (20, 30, 1, 5000)]);
        s.start_offset = 15;
        assert_eq!(due_trims(&state(&[], "t", s.clone()), 4500, &DEFAULTS), vec![(7, 20)]);
        s.start_offset = 25;
        assert!(due_trims(&state(&[], "t", s), 4500, &DEFAULTS).is_empty());
    }
}
