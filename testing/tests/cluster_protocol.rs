//! What clients are told when a partition moves, at the wire: Metadata from
//! every broker names the new leader at a higher epoch (never -1), the old
//! owner answers NOT_LEADER_OR_FOLLOWER with the new leader (KIP-951), and
//! OffsetsForLeaderEpoch (KIP-320) says where the old epoch ended. And
//! what consumers fetch counts: a broker read hard gives a partition away.

use std::time::Duration;

use floe_protocol::batch::build_batch;
use floe_testing::cluster::Cluster;
use floe_testing::raw::{call, connect, topic};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn metadata(addr: &str, name: &str) -> MetadataResponse {
    let mut s = connect(addr);
    let req = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(topic(name))),
    ]));
    call(&mut s, ApiKey::Metadata, 12, &req).unwrap()
}

/// (leader, epoch) of partition `p`.
fn leader(md: &MetadataResponse, p: i32) -> (i32, i32) {
    let part = md.topics[0].partitions.iter().find(|x| x.partition_index == p).unwrap();
    (part.leader_id.0, part.leader_epoch)
}

fn produce(
    addr: &str,
    name: &str,
    p: i32,
    version: i16,
    records: usize,
) -> produce_response::PartitionProduceResponse {
    let values: Vec<Vec<u8>> = (0..records).map(|i| format!("v{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let batch = build_batch(0, 0, &refs);
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
        produce_request::TopicProduceData::default().with_name(topic(name)).with_partition_data(vec![
            produce_request::PartitionProduceData::default().with_index(p).with_records(Some(batch)),
        ]),
    ]);
    let mut s = connect(addr);
    let resp: ProduceResponse = call(&mut s, ApiKey::Produce, version, &req).unwrap();
    resp.responses[0].partition_responses[0].clone()
}

#[test]
fn a_moved_partition_names_its_new_leader_and_where_the_old_epoch_ended() {
    let c =
        Cluster::start("moved-wire", 2, &["--num-partitions", "2", "--upload-interval-ms", "200"]).unwrap();
    let addrs: Vec<String> = c.brokers.values().map(|b| b.bootstrap()).collect();
    // Auto-create, then let both partitions find their owners.
    metadata(&addrs[0], "wire");
    c.wait_for("partitions spread", Duration::from_secs(60), |s| {
        s.moving == 0 && s.live_partitions().values().all(|n| *n >= 1)
    })
    .unwrap();
    let (old_leader, old_epoch) = leader(&metadata(&addrs[0], "wire"), 0);
    assert!(old_leader >= 0, "never leader -1");
    let old_addr = &c.brokers[&old_leader].bootstrap();
    let r = produce(old_addr, "wire", 0, 11, 5);
    assert_eq!(r.error_code, 0, "{r:?}");
    let r = produce(old_addr, "wire", 0, 11, 3);
    assert_eq!((r.error_code, r.base_offset), (0, 5));

    let new_leader = 1 - old_leader;
    c.cli(&["move", "wire", "0", &new_leader.to_string()]).unwrap();
    c.wait_for("the move completes", Duration::from_secs(60), |s| s.moving == 0).unwrap();
    for addr in &addrs {
        let (l, e) = leader(&metadata(addr, "wire"), 0);
        assert_eq!(l, new_leader, "every broker names the new leader");
        assert!(e > old_epoch, "the leader epoch grows on a move: {e} after {old_epoch}");
    }
    let (_, new_epoch) = leader(&metadata(&addrs[0], "wire"), 0);

    // The old owner: NOT_LEADER_OR_FOLLOWER, with the new leader from v10 on.
    let r = produce(old_addr, "wire", 0, 11, 1);
    assert_eq!(r.error_code, ResponseError::NotLeaderOrFollower.code());
    assert_eq!((r.current_leader.leader_id.0, r.current_leader.leader_epoch), (new_leader, new_epoch));
    let r = produce(old_addr, "wire", 0, 9, 1);
    assert_eq!(r.error_code, ResponseError::NotLeaderOrFollower.code());
    let fetch =
        FetchRequest::default().with_max_wait_ms(0).with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(topic("wire"))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1 << 20)])]);
    let resp: FetchResponse = call(&mut connect(old_addr), ApiKey::Fetch, 12, &fetch).unwrap();
    let pd = &resp.responses[0].partitions[0];
    assert_eq!(pd.error_code, ResponseError::NotLeaderOrFollower.code());
    assert_eq!(pd.current_leader.leader_id.0, new_leader);

    // The new owner continues the offsets and says where the old epoch ended.
    let new_addr = &c.brokers[&new_leader].bootstrap();
    let r = produce(new_addr, "wire", 0, 11, 2);
    assert_eq!((r.error_code, r.base_offset), (0, 8), "offsets continue after the move");
    for version in 2..=4 {
        let ask = |epoch: i32, current: i32| {
            let req = OffsetForLeaderEpochRequest::default().with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(topic("wire"))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(current)
                            .with_leader_epoch(epoch),
                    ]),
            ]);
            let resp: OffsetForLeaderEpochResponse =
                call(&mut connect(new_addr), ApiKey::OffsetForLeaderEpoch, version, &req).unwrap();
            resp.topics[0].partitions[0].clone()
        };
        let r = ask(old_epoch, new_epoch);
        assert_eq!(
            (r.error_code, r.leader_epoch, r.end_offset),
            (0, old_epoch, 8),
            "v{version}: old epoch ends at the move"
        );
        let r = ask(new_epoch, new_epoch);
        assert_eq!(
            (r.error_code, r.leader_epoch, r.end_offset),
            (0, new_epoch, 10),
            "v{version}: current epoch ends at the end"
        );
        let r = ask(old_epoch, old_epoch);
        assert_eq!(
            r.error_code,
            ResponseError::FencedLeaderEpoch.code(),
            "v{version}: a stale current epoch is fenced"
        );
        let stale: OffsetForLeaderEpochResponse = call(
            &mut connect(old_addr),
            ApiKey::OffsetForLeaderEpoch,
            version,
            &OffsetForLeaderEpochRequest::default().with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(topic("wire"))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_leader_epoch(old_epoch),
                    ]),
            ]),
        )
        .unwrap();
        assert_eq!(stale.topics[0].partitions[0].error_code, ResponseError::NotLeaderOrFollower.code());
    }
}

/// Fetches `p` from offset 0 once; returns the record bytes served, or 0
/// once the partition has moved away.
fn fetch_all(addr: &str, name: &str, p: i32) -> usize {
    let fetch = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(8 << 20).with_topics(vec![
        fetch_request::FetchTopic::default().with_topic(topic(name)).with_partitions(vec![
            fetch_request::FetchPartition::default().with_partition(p).with_partition_max_bytes(8 << 20),
        ]),
    ]);
    let resp: FetchResponse = call(&mut connect(addr), ApiKey::Fetch, 12, &fetch).unwrap();
    let pd = &resp.responses[0].partitions[0];
    if pd.error_code == ResponseError::NotLeaderOrFollower.code() {
        return 0;
    }
    assert_eq!(pd.error_code, 0, "{pd:?}");
    let n = pd.records.as_ref().map_or(0, |r| r.len());
    assert!(n > 0, "{pd:?}");
    n
}

/// Leaders of `0..partitions` once every broker's Metadata names the same
/// ones, two per broker.
fn settled_owners(c: &Cluster, name: &str, partitions: i32) -> Vec<i32> {
    for _ in 0..600 {
        let views: Vec<Vec<i32>> = c
            .brokers
            .values()
            .map(|b| {
                let md = metadata(&b.bootstrap(), name);
                (0..partitions).map(|p| leader(&md, p).0).collect()
            })
            .collect();
        let even = (0..2).all(|b| views[0].iter().filter(|o| **o == b).count() == 2);
        if even && views.iter().all(|v| *v == views[0]) {
            return views[0].clone();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the brokers' Metadata did not settle\n{}", c.logs());
}

#[test]
fn consumers_reading_one_broker_hard_move_a_partition_off_it() {
    let c =
        Cluster::start("bytes-out", 2, &["--num-partitions", "4", "--upload-interval-ms", "200"]).unwrap();
    metadata(&c.brokers[&0].bootstrap(), "read-hot");
    c.wait_for("partitions spread", Duration::from_secs(60), |s| {
        s.moving == 0 && s.live_partitions().values().all(|n| *n == 2)
    })
    .unwrap();
    let owners = settled_owners(&c, "read-hot", 4);
    // The same bytes in everywhere: only what consumers read differs.
    for (p, owner) in owners.iter().enumerate() {
        for _ in 0..4 {
            let r = produce(&c.brokers[owner].bootstrap(), "read-hot", p as i32, 11, 2_000);
            assert_eq!(r.error_code, 0, "{r:?}");
        }
    }
    let hot = owners[0];
    let hot_partitions: Vec<i32> = (0..4).filter(|p| owners[*p as usize] == hot).collect();
    let mut seen_out = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let now_owners = loop {
        for p in &hot_partitions {
            fetch_all(&c.brokers[&hot].bootstrap(), "read-hot", *p);
        }
        let s = c.status().unwrap();
        seen_out = seen_out.max(s.brokers[&hot].bytes_out_per_sec);
        if s.moving == 0 {
            let now = settled_owners(&c, "read-hot", 4);
            if now != owners {
                break now;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no partition left the hot broker: {s:?}\n{}",
            c.logs()
        );
    };
    eprintln!(
        "bytes-out balancer: {owners:?} -> {now_owners:?}, hot broker {hot} peaked at {seen_out} B/s out"
    );
    assert!(seen_out > 0, "status shows the hot broker's bytes out");
    // One hot partition left, one idle one came back: counts stay even.
    let moved_off = hot_partitions.iter().filter(|p| now_owners[**p as usize] != hot).count();
    let on_hot = now_owners.iter().filter(|o| **o == hot).count();
    assert_eq!((moved_off, on_hot), (1, 2), "{owners:?} -> {now_owners:?}");
}

fn offset_commit(addr: &str, group: &str, name: &str, partitions: i32, offset: i64) {
    let parts = (0..partitions)
        .map(|p| {
            offset_commit_request::OffsetCommitRequestPartition::default()
                .with_partition_index(p)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)
        })
        .collect();
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default()
            .with_name(topic(name))
            .with_partitions(parts)]);
    // Retriable while the coordinator is still loading (as clients retry).
    let loading = ResponseError::CoordinatorLoadInProgress.code();
    for _ in 0..500 {
        let resp: OffsetCommitResponse = call(&mut connect(addr), ApiKey::OffsetCommit, 8, &req).unwrap();
        let codes: Vec<i16> = resp.topics[0].partitions.iter().map(|p| p.error_code).collect();
        if codes.iter().all(|c| *c == 0) {
            return;
        }
        assert!(codes.iter().all(|c| *c == loading), "{resp:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the coordinator stayed loading");
}

/// OffsetFetch v8 for `group`: the group's error, and the committed offsets.
fn offset_fetch(addr: &str, group: &str, name: &str, partitions: i32) -> (i16, Vec<i64>) {
    offset_fetch_on(&mut connect(addr), group, name, partitions).expect("an OffsetFetch answer")
}

/// OffsetFetch v8 on an open connection; None if the connection broke.
fn offset_fetch_on(
    s: &mut std::net::TcpStream,
    group: &str,
    name: &str,
    partitions: i32,
) -> Option<(i16, Vec<i64>)> {
    let req = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_topics(Some(vec![offset_fetch_request::OffsetFetchRequestTopics::default()
                .with_name(topic(name))
                .with_partition_indexes((0..partitions).collect())])),
    ]);
    let resp: OffsetFetchResponse = call(s, ApiKey::OffsetFetch, 8, &req)?;
    let g = &resp.groups[0];
    let offsets = g.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.committed_offset)).collect();
    Some((g.error_code, offsets))
}

#[test]
fn a_moving_group_coordinator_never_answers_no_offset() {
    let c = Cluster::start("coordinator-load", 2, &["--num-partitions", "100"]).unwrap();
    let addrs: Vec<String> = c.brokers.values().map(|b| b.bootstrap()).collect();
    metadata(&addrs[0], "tracked");
    let req = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("loaded"));
    // The first lookup creates the offsets topic; its partitions need owners.
    let find = || -> FindCoordinatorResponse {
        call(&mut connect(&addrs[0]), ApiKey::FindCoordinator, 3, &req).unwrap()
    };
    let mut found = find();
    for _ in 0..300 {
        if found.error_code == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        found = find();
    }
    assert_eq!(found.error_code, 0, "{found:?}");
    let (coordinator, other) = (found.node_id.0, 1 - found.node_id.0);
    // 20,000 commit records: loading them takes the new coordinator a while.
    for round in 1..=200 {
        offset_commit(&c.brokers[&coordinator].bootstrap(), "loaded", "tracked", 100, round);
    }
    let (err, _) = offset_fetch(&c.brokers[&other].bootstrap(), "loaded", "tracked", 100);
    assert_eq!(err, ResponseError::NotCoordinator.code(), "only the coordinator answers");

    // Poll the other broker while every offsets partition moves to it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (addr, stop) = (c.brokers[&other].bootstrap(), stop.clone());
        std::thread::spawn(move || {
            let mut answers = std::collections::BTreeMap::<String, usize>::new();
            // One connection, as a client keeps it: a new one per request
            // would use up the loopback's ephemeral ports within a minute.
            let mut conn = connect(&addr);
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let Some((err, offsets)) = offset_fetch_on(&mut conn, "loaded", "tracked", 100) else {
                    conn = connect(&addr);
                    continue;
                };
                let what = match err {
                    0 if offsets.iter().all(|o| *o == 200) => "committed".to_string(),
                    0 => format!("wrong offsets {:?}", &offsets[..3]),
                    e => format!("error {e}"),
                };
                *answers.entry(what).or_default() += 1;
            }
            answers
        })
    };
    for (p, (owner, _)) in (0..16).map(|p| (p, leader(&metadata(&addrs[0], "__consumer_offsets"), p))) {
        if owner == coordinator {
            c.cli(&["move", "__consumer_offsets", &p.to_string(), &other.to_string()]).unwrap();
        }
    }
    c.wait_for("the offsets partitions moved", Duration::from_secs(60), |s| s.moving == 0).unwrap();
    // Until the new coordinator has answered with the commits.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while offset_fetch(&c.brokers[&other].bootstrap(), "loaded", "tracked", 100) != (0, vec![200; 100]) {
        assert!(std::time::Instant::now() < deadline, "the new coordinator never answered\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let answers = poller.join().unwrap();
    let allowed = [
        "committed".to_string(),
        format!("error {}", ResponseError::NotCoordinator.code()),
        format!("error {}", ResponseError::CoordinatorLoadInProgress.code()),
    ];
    assert!(answers.keys().all(|k| allowed.contains(k)), "answers during the move: {answers:?}");
    assert!(answers.contains_key("committed"), "{answers:?}");
}
