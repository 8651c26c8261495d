use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::error::StorageError;
use crate::object::ObjectRange;
use crate::object_store_url::Bucket;
use crate::StreamId;

fn bucket(dir: &std::path::Path) -> Bucket {
    Bucket::open(&format!("file://{}", dir.display()), Duration::from_secs(5)).unwrap()
}

/// A lease that never runs out, for tests of the log alone.
struct Forever;
impl WriteLease for Forever {
    fn valid_until(&self) -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }
}

fn topic(name: &str, streams: Vec<StreamId>) -> MetaRecord {
    MetaRecord::TopicCreated {
        topic: TopicMeta { name: name.into(), id: [1; 16], streams, configs: BTreeMap::new() },
    }
}

fn register(id: i32, epoch: u64) -> MetaRecord {
    MetaRecord::BrokerRegistered {
        broker_id: id,
        broker_epoch: epoch,
        address: BrokerAddress::default(),
        streams: vec![],
    }
}

fn range(stream: StreamId, epoch: u32, start: i64, end: i64) -> ObjectRange {
    ObjectRange {
        stream,
        epoch,
        start_offset: start,
        end_offset: end,
        position: 0,
        length: 10,
        max_timestamp: 7,
    }
}

fn commit(broker_epoch: u64, ranges: Vec<ObjectRange>) -> MetaRecord {
    MetaRecord::ObjectCommitted {
        key: "o".into(),
        size: 1,
        broker_id: 0,
        broker_epoch,
        ranges,
        producers: vec![],
    }
}

async fn writer(dir: &std::path::Path, term: u64) -> Result<MetadataLog, StorageError> {
    MetadataLog::open(bucket(dir), 0, term, Arc::new(Forever)).await
}

#[tokio::test]
async fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = writer(dir.path(), 1).await.unwrap();
    log.append(vec![register(0, 1)]).await.unwrap();
    log.append(vec![topic("a", vec![0, 1])]).await.unwrap();
    let assign = |stream| Assignment { stream, owner: 0, epoch: 1, producers: None };
    log.append(vec![MetaRecord::StreamsAssigned { assignments: vec![assign(0), assign(1)] }]).await.unwrap();
    log.append(vec![commit(1, vec![range(1, 1, 0, 5)])]).await.unwrap();
    let loaded = load(&bucket(dir.path())).await.unwrap();
    assert_eq!(loaded, *log.state());
    assert_eq!(loaded.streams[&1].end_offset, 5);
    assert_eq!(loaded.streams[&1].owner, Some(0));
    assert_eq!(loaded.seq, 5, "the controller's election entry, then four");
}

#[tokio::test]
async fn a_deposed_controller_collides_instead_of_forking() {
    let dir = tempfile::tempdir().unwrap();
    let old = writer(dir.path(), 1).await.unwrap();
    old.append(vec![topic("a", vec![0])]).await.unwrap();
    let new = writer(dir.path(), 2).await.unwrap();
    let err = old.append(vec![topic("b", vec![1])]).await.unwrap_err();
    assert!(matches!(err, StorageError::Deposed(_)), "{err}");
    assert!(old.is_deposed());
    new.append(vec![topic("c", vec![2])]).await.unwrap();
    let loaded = load(&bucket(dir.path())).await.unwrap();
    assert!(loaded.topics.contains_key("a") && loaded.topics.contains_key("c"));
    assert!(!loaded.topics.contains_key("b"));
    assert_eq!((loaded.term, loaded.controller), (2, 0));
    // An older term cannot even start once a newer one wrote.
    assert!(matches!(writer(dir.path(), 2).await, Err(StorageError::Deposed(_))));
}

#[tokio::test]
async fn stale_epochs_foreign_owners_and_gaps_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = writer(dir.path(), 1).await.unwrap();
    log.append(vec![register(0, 2), register(1, 1), topic("t", vec![0])]).await.unwrap();
    log.append(vec![MetaRecord::StreamsAssigned {
        assignments: vec![Assignment { stream: 0, owner: 0, epoch: 3, producers: None }],
    }])
    .await
    .unwrap();
    let seq = log.state().seq;
    assert!(matches!(
        log.append(vec![commit(1, vec![range(0, 3, 0, 1)])]).await,
        Err(StorageError::Fenced(_))
    ));
    assert!(matches!(
        log.append(vec![commit(2, vec![range(0, 2, 0, 1)])]).await,
        Err(StorageError::Fenced(_))
    ));
    assert!(matches!(
        log.append(vec![commit(2, vec![range(0, 3, 3, 4)])]).await,
        Err(StorageError::Invalid(_))
    ));
    let not_newer = MetaRecord::StreamsAssigned {
        assignments: vec![Assignment { stream: 0, owner: 1, epoch: 3, producers: None }],
    };
    assert!(matches!(log.append(vec![not_newer]).await, Err(StorageError::Fenced(_))));
    assert_eq!(log.state().seq, seq, "refused appends write nothing");
    log.append(vec![commit(2, vec![range(0, 3, 0, 1)])]).await.unwrap();
    log.append(vec![MetaRecord::BrokerFenced { broker_id: 0, broker_epoch: 2 }]).await.unwrap();
    assert!(
        matches!(log.append(vec![commit(2, vec![range(0, 3, 1, 2)])]).await, Err(StorageError::Fenced(_))),
        "a fenced incarnation commits nothing"
    );
}

#[tokio::test]
async fn format_one_entries_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let b = bucket(dir.path());
    let old = r#"[{"type":"broker_registered","broker_id":0,"broker_epoch":3,"streams":[]},
                  {"type":"topic_created","topic":{"name":"t","id":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1],"streams":[0],"configs":{}}},
                  {"type":"object_committed","key":"k","size":5,"broker_id":0,"broker_epoch":3,
                   "ranges":[{"stream":0,"epoch":1,"start_offset":0,"end_offset":4,"position":0,"length":5,"max_timestamp":1}]}]"#;
    use object_store::ObjectStoreExt;
    b.store.put(&b.key("meta/log/00000000000000000001.json"), old.as_bytes().to_vec().into()).await.unwrap();
    let state = load(&b).await.unwrap();
    assert_eq!(state.brokers[&0].epoch, 3);
    assert_eq!(state.streams[&0].end_offset, 4);
    // A new controller continues it.
    let log = writer(dir.path(), 1).await.unwrap();
    assert_eq!(log.state().seq, 2);
}

#[tokio::test]
async fn the_lease_is_taken_over_only_after_it_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let d = Duration::from_millis(300);
    let a = ControllerLease::new(bucket(dir.path()), 1, "a:1".into(), "dir-a".into(), d);
    let b = ControllerLease::new(bucket(dir.path()), 2, "b:1".into(), "dir-b".into(), d);
    assert_eq!(a.try_acquire().await.unwrap(), Some(1));
    assert!(a.is_held());
    assert_eq!(b.try_acquire().await.unwrap(), None);
    // While a renews, b never gets it.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(a.renew().await.unwrap());
        assert_eq!(b.try_acquire().await.unwrap(), None);
    }
    // a stops renewing (paused); b takes over once the lease has surely run out.
    let deadline = Instant::now() + Duration::from_secs(5);
    let term = loop {
        if let Some(t) = b.try_acquire().await.unwrap() {
            break t;
        }
        assert!(Instant::now() < deadline, "b never took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(term, 2);
    assert!(!a.renew().await.unwrap(), "the old holder learns it is deposed");
    // A restart of b on its own directory takes it back at once.
    let b2 = ControllerLease::new(bucket(dir.path()), 2, "b:2".into(), "dir-b".into(), d);
    assert_eq!(b2.try_acquire().await.unwrap(), Some(3));
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = Duration::from_secs(60);
    let a = ControllerLease::new(bucket(dir.path()), 1, "a:1".into(), "dir-a".into(), d);
    let b = ControllerLease::new(bucket(dir.path()), 2, "b:1".into(), "dir-b".into(), d);
    assert_eq!(a.try_acquire().await.unwrap(), Some(1));
    assert_eq!(b.try_acquire().await.unwrap(), None, "held for a minute");
    a.release().await;
    assert_eq!(b.try_acquire().await.unwrap(), Some(2), "no minute to wait once released");
    assert!(!a.renew().await.unwrap());
}

#[tokio::test]
async fn local_directories_pass_the_atomicity_check() {
    let dir = tempfile::tempdir().unwrap();
    crate::cas::check_atomic(&bucket(dir.path())).await.unwrap();
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn record() -> impl Strategy<Value = MetaRecord> {
        prop_oneof![
            (0..3i32, 1..4u64).prop_map(|(b, e)| register(b, e)),
            (0..3i32, 1..4u64).prop_map(|(b, e)| MetaRecord::BrokerFenced { broker_id: b, broker_epoch: e }),
            (0..3u64, 0..4u64).prop_map(|(n, s)| topic(&format!("t{n}"), vec![s, s + 1])),
            (0..3u64).prop_map(|n| MetaRecord::TopicDeleted { name: format!("t{n}") }),
            (0..5u64, 0..3i32, 1..5u32).prop_map(|(s, o, e)| MetaRecord::StreamsAssigned {
                assignments: vec![Assignment { stream: s, owner: o, epoch: e, producers: None }]
            }),
            (0..5u64, 1..4u64, 1..5u32, 0..3i64, 1..3i64)
                .prop_map(|(s, be, e, start, len)| commit(be, vec![range(s, e, start, start + len)])),
            (0..5u64, 0..6i64).prop_map(|(s, at)| MetaRecord::StreamsTrimmed { trims: vec![(s, at)] }),
            (0..4u8).prop_map(|k| MetaRecord::ObjectsDeleted { keys: vec![format!("o{k}")] }),
        ]
    }

    /// A record as proposed, or a commit shaped to continue the current
    /// state (so that applying commits, not only refusing them, is explored).
    #[derive(Debug, Clone)]
    enum Op {
        Propose(MetaRecord),
        CommitNext {
            streams: Vec<StreamId>,
            len: i64,
            key: u8,
        },
        /// Merge `skip..skip+n` of a stream's ranges into one (stale on purpose
        /// when the epoch is off).
        CompactNext {
            stream: StreamId,
            skip: usize,
            n: usize,
            stale_epoch: bool,
            key: u16,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => record().prop_map(Op::Propose),
            1 => (proptest::collection::vec(0..5u64, 1..3), 1..4i64, 0..4u8)
                .prop_map(|(streams, len, key)| Op::CommitNext { streams, len, key }),
            1 => (0..5u64, 0..2usize, 1..4usize, proptest::bool::weighted(0.2), any::<u16>()).prop_map(
                |(stream, skip, n, stale_epoch, key)| Op::CompactNext { stream, skip, n, stale_epoch, key }
            ),
        ]
    }

    fn realize(state: &MetaState, op: &Op) -> MetaRecord {
        match op {
            Op::Propose(r) => r.clone(),
            Op::CommitNext { streams, len, key } => {
                let mut streams = streams.clone();
                streams.sort_unstable();
                streams.dedup();
                let ranges = streams
                    .iter()
                    .map(|id| {
                        let s = state.streams.get(id).cloned().unwrap_or_default();
                        range(*id, s.epoch, s.end_offset, s.end_offset + len)
                    })
                    .collect();
                let epoch = state.brokers.get(&0).map_or(1, |b| b.epoch);
                MetaRecord::ObjectCommitted {
                    key: format!("o{key}"),
                    size: 100,
                    broker_id: 0,
                    broker_epoch: epoch,
                    ranges,
                    producers: vec![],
                }
            }
            Op::CompactNext { stream, skip, n, stale_epoch, key } => {
                // Among the streams that hold ranges, so that most runs fit.
                let with_ranges: Vec<StreamId> =
                    state.streams.iter().filter(|(_, s)| !s.ranges.is_empty()).map(|(id, _)| *id).collect();
                let stream =
                    &with_ranges.get(*stream as usize % with_ranges.len().max(1)).copied().unwrap_or(*stream);
                let s = state.streams.get(stream).cloned().unwrap_or_default();
                let picked: Vec<ObjectRange> =
                    s.ranges.iter().skip(*skip).take(*n).map(|(_, r)| r.clone()).collect();
                let (start, end) = match (picked.first(), picked.last()) {
                    (Some(a), Some(b)) => (a.start_offset, b.end_offset),
                    _ => (0, 1),
                };
                let mut merged = range(*stream, s.epoch, start, end);
                merged.length = picked.iter().map(|r| r.length).sum::<u64>().max(1);
                MetaRecord::ObjectCompacted {
                    key: format!("c{key}"),
                    size: 200,
                    broker_id: 0,
                    broker_epoch: state.brokers.get(&0).map_or(1, |b| b.epoch),
                    runs: vec![CompactedRun {
                        stream: *stream,
                        stream_epoch: s.epoch + u32::from(*stale_epoch),
                        start_offset: start,
                        end_offset: end,
                        ranges: vec![merged],
                        cleaned_to: None,
                        oldest_tombstone: None,
                    }],
                }
            }
        }
    }

    proptest! {
        /// Whatever is proposed, validated records keep every invariant:
        /// ranges contiguous and ending at the stream's end, owners live when
        /// assigned, every topic's streams present.
        #[test]
        fn validated_records_keep_the_state_consistent(ops in proptest::collection::vec(op(), 1..80)) {
            let mut state = MetaState::default();
            for op in &ops {
                let r = &realize(&state, op);
                let before = state.clone();
                if state.validate(r).is_ok() {
                    state.apply(r);
                } else {
                    prop_assert_eq!(&state, &before);
                }
                for t in state.topics.values() {
                    for s in &t.streams {
                        prop_assert!(state.streams.contains_key(s));
                    }
                }
                let mut refs: BTreeMap<String, u32> = BTreeMap::new();
                let mut live: BTreeMap<String, u64> = BTreeMap::new();
                for s in state.streams.values() {
                    let mut at = s.ranges.front().map_or(s.end_offset, |(_, r)| r.start_offset);
                    prop_assert!(s.start_offset <= s.end_offset);
                    for (key, r) in s.ranges.iter() {
                        prop_assert_eq!(r.start_offset, at);
                        prop_assert!(r.end_offset > s.start_offset, "a trimmed range stays");
                        at = r.end_offset;
                        *refs.entry(key.clone()).or_default() += 1;
                        *live.entry(key.clone()).or_default() += r.length;
                    }
                    prop_assert_eq!(at, s.end_offset);
                    prop_assert_eq!(s.bytes, s.ranges.iter().map(|(_, r)| r.length).sum::<u64>());
                }
                // The registry counts exactly the ranges that point into each
                // object; an object is either needed or garbage, never both.
                let registered: BTreeMap<String, u32> =
                    state.objects.iter().map(|(k, o)| (k.clone(), o.ranges)).collect();
                prop_assert_eq!(&refs, &registered);
                let registered: BTreeMap<String, u64> =
                    state.objects.iter().map(|(k, o)| (k.clone(), o.live_bytes)).collect();
                prop_assert_eq!(&live, &registered);
                prop_assert!(state.objects.keys().all(|k| !state.garbage.contains_key(k)));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_entries_and_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let log = writer(dir.path(), 1).await.unwrap();
    let before = log.state().seq;
    let creations = (0..20u64).map(|i| log.append(vec![topic(&format!("t{i}"), vec![i])]));
    // Two proposals for one name in the same batch: one wins, one is refused.
    let twice = [log.append(vec![topic("same", vec![100])]), log.append(vec![topic("same", vec![101])])];
    let (created, twice) =
        tokio::join!(futures::future::join_all(creations), futures::future::join_all(twice));
    assert!(created.iter().all(|r| r.is_ok()));
    let refused = twice.iter().filter(|r| matches!(r, Err(StorageError::TopicExists(_)))).count();
    assert_eq!((refused, twice.len() - refused), (1, 1), "{twice:?}");
    let state = log.state();
    assert_eq!(state.topics.len(), 21);
    // The first proposal's PUT is in flight while the others queue.
    assert!(state.seq - before < 22, "22 proposals took {} entries", state.seq - before);
    assert_eq!(load(&bucket(dir.path())).await.unwrap(), *state);
}

#[test]
fn a_compaction_replaces_exact_runs_of_the_owner_and_skips_stale_ones() {
    let mut state = MetaState::default();
    let assign = |stream| Assignment { stream, owner: 0, epoch: 1, producers: None };
    let commit = |key: &str, ranges: Vec<ObjectRange>| MetaRecord::ObjectCommitted {
        key: key.into(),
        size: 100,
        broker_id: 0,
        broker_epoch: 1,
        ranges,
        producers: vec![],
    };
    state
        .apply_all(&[
            register(0, 1),
            topic("t", vec![0, 1]),
            MetaRecord::StreamsAssigned { assignments: vec![assign(0), assign(1)] },
            commit("u1", vec![range(0, 1, 0, 5), range(1, 1, 0, 2)]),
            commit("u2", vec![range(0, 1, 5, 9), range(1, 1, 2, 4)]),
            commit("u3", vec![range(0, 1, 9, 12)]),
        ])
        .unwrap();
    let run = |stream, stream_epoch, start, end| CompactedRun {
        stream,
        stream_epoch,
        start_offset: start,
        end_offset: end,
        ranges: vec![ObjectRange { length: 20, ..range(stream, 1, start, end) }],
        cleaned_to: None,
        oldest_tombstone: None,
    };
    // Stream 0's first two ranges, stream 1 at a stale epoch, and a run that
    // does not end at a range boundary: only the first applies.
    let compacted = MetaRecord::ObjectCompacted {
        key: "c1".into(),
        size: 60,
        broker_id: 0,
        broker_epoch: 1,
        runs: vec![run(0, 1, 0, 9), run(1, 0, 0, 4), run(1, 1, 0, 3)],
    };
    state.apply_all(&[compacted]).unwrap();
    let s0: Vec<(&str, i64, i64)> =
        state.streams[&0].ranges.iter().map(|(k, r)| (k.as_str(), r.start_offset, r.end_offset)).collect();
    assert_eq!(s0, vec![("c1", 0, 9), ("u3", 9, 12)]);
    assert_eq!(state.streams[&1].ranges.len(), 2, "stale and misaligned runs change nothing");
    assert_eq!((state.objects["c1"].ranges, state.objects["c1"].live_bytes), (1, 20));
    assert_eq!((state.objects["u1"].ranges, state.objects["u2"].ranges), (1, 1), "stream 1 still reads them");
    // Stream 1's ranges go too: u1 and u2 are garbage now.
    let again = MetaRecord::ObjectCompacted {
        key: "c2".into(),
        size: 20,
        broker_id: 0,
        broker_epoch: 1,
        runs: vec![run(1, 1, 0, 4)],
    };
    state.apply_all(&[again]).unwrap();
    assert!(state.garbage.contains_key("u1") && state.garbage.contains_key("u2"));
    assert!(state.objects.contains_key("u3"));
    // A fenced incarnation's compaction is refused whole.
    let zombie = MetaRecord::ObjectCompacted {
        key: "c3".into(),
        size: 1,
        broker_id: 0,
        broker_epoch: 0,
        runs: vec![],
    };
    assert!(matches!(state.validate(&zombie), Err(StorageError::Fenced(_))));
}
