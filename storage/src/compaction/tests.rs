use super::*;
use crate::meta::{Assignment, BrokerAddress, MetaRecord, TopicMeta};

fn range(stream: StreamId, epoch: u32, start: i64, end: i64, length: u64) -> ObjectRange {
    ObjectRange {
        stream,
        epoch,
        start_offset: start,
        end_offset: end,
        position: 0,
        length,
        max_timestamp: end,
    }
}

/// Broker 0 owns streams 0 and 1, broker 1 owns stream 2; each upload `u{i}`
/// holds one range of every stream of its writer.
fn state(uploads: usize, length: u64) -> MetaState {
    let mut s = MetaState::default();
    let reg = |id| MetaRecord::BrokerRegistered {
        broker_id: id,
        broker_epoch: 1,
        address: BrokerAddress::default(),
        streams: vec![],
    };
    let topic =
        TopicMeta { name: "t".into(), id: [0; 16], streams: vec![0, 1, 2], configs: Default::default() };
    let assign = |stream, owner| Assignment { stream, owner, epoch: 1, producers: None };
    s.apply_all(&[
        reg(0),
        reg(1),
        MetaRecord::TopicCreated { topic },
        MetaRecord::StreamsAssigned { assignments: vec![assign(0, 0), assign(1, 0), assign(2, 1)] },
    ])
    .unwrap();
    for i in 0..uploads as i64 {
        let commit = |broker: i32, streams: &[StreamId]| MetaRecord::ObjectCommitted {
            key: format!("data/b{broker}-e1-{i:012}.obj"),
            size: length * streams.len() as u64,
            broker_id: broker,
            broker_epoch: 1,
            ranges: streams
                .iter()
                .enumerate()
                .map(|(n, st)| ObjectRange {
                    position: n as u64 * length,
                    ..range(*st, 1, i * 10, i * 10 + 10, length)
                })
                .collect(),
            producers: vec![],
        };
        s.apply_all(&[commit(0, &[0, 1]), commit(1, &[2])]).unwrap();
    }
    s
}

#[test]
fn nothing_is_planned_until_enough_small_objects_wait() {
    let cfg = CompactionConfig::default();
    assert_eq!(plan(&state(7, 1000), 0, &cfg), None, "seven uploads: wait for the eighth");
    let settled = CompactionConfig { settle_after_ms: 1000, ..cfg.clone() };
    let newest =
        state(7, 1000).streams.values().flat_map(|s| s.ranges.iter()).map(|(_, r)| r.max_timestamp).max();
    let newest = newest.unwrap();
    assert_eq!(plan_at(&state(7, 1000), 0, &settled, newest + 1000), None, "still growing");
    let p = plan_at(&state(7, 1000), 0, &settled, newest + 1001).expect("settled: merged as they are");
    assert_eq!(p.inputs.len(), 7);
    let p = plan(&state(8, 1000), 0, &cfg).expect("eight small uploads");
    assert_eq!(p.inputs.len(), 8);
    assert!(p.inputs.iter().all(|k| k.starts_with("data/b0-")), "only objects holding broker 0's streams");
    let streams: Vec<StreamId> = p.runs.iter().map(|r| r.stream).collect();
    assert_eq!(streams, vec![0, 1], "broker 1's stream is not ours to compact");
    assert!(p.runs.iter().all(|r| r.ranges.len() == 8 && r.stream_epoch == 1));
    // With 1000-byte classes, objects of 2000 live bytes are class 1: they
    // merge among themselves, never with class 0.
    let tiers = CompactionConfig { small_object_bytes: 1000, ..cfg.clone() };
    let p = plan(&state(8, 1000), 0, &tiers).expect("eight of class 1");
    assert_eq!(p.inputs.len(), 8);
    let fin = CompactionConfig { max_output_bytes: 2000, ..cfg };
    assert_eq!(plan(&state(20, 1000), 0, &fin), None, "objects as large as an output are final");
    // Class 1 is [1000, 4000): eight of them need at least 8000 bytes of output.
    let tight =
        CompactionConfig { small_object_bytes: 1000, max_output_bytes: 7999, ..CompactionConfig::default() };
    assert_eq!(plan(&state(20, 1000), 0, &tight), None, "a class that cannot fill one output is final");
    // Eight would fit at the class's floor, but these hold 2000 bytes each:
    // four fit, and four are not worth a rewrite.
    let cut =
        CompactionConfig { small_object_bytes: 1000, max_output_bytes: 9000, ..CompactionConfig::default() };
    assert_eq!(plan(&state(20, 1000), 0, &cut), None);
}

#[test]
fn output_is_bounded_and_ranges_split_at_size_and_epoch() {
    let cfg = CompactionConfig { max_output_bytes: 10_000, min_inputs: 4, ..CompactionConfig::default() };
    let p = plan(&state(20, 1000), 0, &cfg).unwrap();
    assert_eq!(p.inputs.len(), 5, "five objects of 2000 bytes fill 10000");
    let mut ranges: Vec<(String, ObjectRange)> =
        (0..6).map(|i| (format!("k{i}"), range(0, 1, i * 10, i * 10 + 10, 100))).collect();
    ranges[4].1.epoch = 2;
    ranges[5].1.epoch = 2;
    assert_eq!(group(&ranges, 250), vec![0..2, 2..4, 4..6], "250 bytes: two of 100 per range; epoch 2 apart");
    assert_eq!(group(&ranges, 10_000), vec![0..4, 4..6]);
    assert_eq!(group(&ranges[..1], 50), vec![0..1], "a range larger than the limit stays whole");
}

#[test]
fn a_half_dead_object_is_rewritten_even_alone() {
    let mut s = state(1, 1000);
    // Stream 1 is trimmed past its only range: half of u0 is dead.
    s.apply_all(&[MetaRecord::StreamsTrimmed { trims: vec![(1, 10)] }]).unwrap();
    let o = &s.objects["data/b0-e1-000000000000.obj"];
    assert_eq!((o.live_bytes, o.size), (1000, 2000));
    let mut cfg = CompactionConfig { small_object_bytes: 0, ..CompactionConfig::default() };
    cfg.min_inputs = 100;
    let p = plan(&s, 0, &cfg).expect("a half-dead object is worth rewriting");
    assert_eq!(p.runs.len(), 1);
    assert_eq!(p.runs[0].stream, 0);
}

#[test]
fn the_built_object_holds_each_run_and_commits_cover_it_exactly() {
    let data = |n: u8, len: usize| Bytes::from(vec![n; len]);
    let mut fetched = HashMap::new();
    fetched.insert("a".to_string(), (100u64, Bytes::from([data(1, 10), data(2, 20)].concat())));
    fetched.insert("b".to_string(), (0u64, data(3, 30)));
    let run = PlannedRun {
        stream: 7,
        stream_epoch: 4,
        ranges: vec![
            ("a".into(), ObjectRange { position: 110, ..range(7, 3, 0, 5, 20) }),
            ("b".into(), ObjectRange { position: 0, ..range(7, 4, 5, 9, 30) }),
        ],
    };
    let (bytes, runs) = build(&[run], &fetched, 1 << 20).unwrap();
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!((r.stream, r.stream_epoch, r.start_offset, r.end_offset), (7, 4, 0, 9));
    assert_eq!(r.ranges.len(), 2, "epochs 3 and 4 stay apart");
    let slice = |x: &ObjectRange| bytes.slice(x.position as usize..(x.position + x.length) as usize);
    assert_eq!(slice(&r.ranges[0]), data(2, 20));
    assert_eq!(slice(&r.ranges[1]), data(3, 30));
    assert_eq!(crate::object::read_index("c", &bytes).unwrap(), r.ranges);
}

#[test]
fn old_and_new_data_are_not_merged_across_time_windows() {
    // Ranges of upload i hold timestamps up to i * 10 + 10 (see `state`).
    let s = state(16, 1000);
    let cfg = CompactionConfig { time_window_ms: 80, ..CompactionConfig::default() };
    let p = plan(&s, 0, &cfg).expect("a full window");
    // Uploads 0..=6 end at 10..=70 (window 0), 7..=14 at 80..=150 (window 1):
    // window 0 has seven, too few; window 1 has eight.
    let mut inputs = p.inputs.clone();
    inputs.sort();
    let expected: Vec<String> = (7..15).map(|i| format!("data/b0-e1-{i:012}.obj")).collect();
    assert_eq!(inputs, expected);
    assert!(p.runs.iter().all(|r| r.ranges.iter().all(|(_, x)| x.max_timestamp / 80 == 1)));
}
