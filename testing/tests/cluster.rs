//! The cluster as a user runs it: several brokers on one bucket prefix,
//! partitions spread over them, moved, drained and rebalanced under an
//! idempotent producer, with every acknowledged record read back once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use floe_testing::cluster::Cluster;
use floe_testing::fake_s3::FakeS3;
use floe_testing::kafka::{consume_to_end, producer};
use floe_testing::load::{check_once, create_topic, produce_until, wait_for_acks};
use floe_testing::{BrokerProcess, ObjectStore};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

const WAIT: Duration = Duration::from_secs(60);

/// A cluster of `brokers` with `topic` of `partitions` partitions, spread
/// evenly (each broker owns at least its share, rounded down).
async fn spread_cluster(name: &str, brokers: i32, upload_ms: &str, topic: &str, partitions: i32) -> Cluster {
    let c = Cluster::start(name, brokers, &["--upload-interval-ms", upload_ms]).unwrap();
    create_topic(&c.bootstrap(), topic, partitions).await;
    let share = (partitions / brokers) as u32;
    c.wait_for("partitions spread", WAIT, |s| {
        s.moving == 0
            && s.live_partitions().len() == brokers as usize
            && s.live_partitions().values().all(|n| *n >= share)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}
{}",
            c.logs()
        )
    });
    c
}

/// Leader of each partition, as a client's metadata says.
fn leaders(bootstrap: &str, topic: &str) -> Vec<i32> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let t = &md.topics()[0];
    let mut parts: Vec<(i32, i32)> = t.partitions().iter().map(|p| (p.id(), p.leader())).collect();
    parts.sort();
    parts.into_iter().map(|(_, l)| l).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_move_drain_and_rebalance_under_idempotent_load() {
    let mut c = Cluster::start("cluster-moves", 3, &["--upload-interval-ms", "200"]).unwrap();
    let topic = "moving";
    create_topic(&c.bootstrap(), topic, 6).await;
    let s = c.wait_for("new partitions spread over every broker", WAIT, |s| {
        s.moving == 0 && s.unassigned == 0 && s.live_partitions().values().filter(|n| **n >= 2).count() >= 3
    });
    let s = s.unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert!(s.live_partitions().values().all(|n| *n >= 2), "{s:?}");
    let before = leaders(&c.bootstrap(), topic);
    assert!(before.iter().all(|l| (0..3).contains(l)), "every partition has a live leader: {before:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(produce_until(c.bootstrap(), topic, stop.clone(), acks.clone()));
    wait_for_acks(&acks, 2_000).await;

    // An operator's move: partition 0 to the next broker.
    let to = (before[0] + 1) % 3;
    c.cli(&["move", topic, "0", &to.to_string()]).unwrap();
    c.wait_for("the move completes", WAIT, |s| s.moving == 0).unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let after = leaders(&c.bootstrap(), topic);
    assert_eq!(after[0], to, "partition 0 is led by broker {to} now: {after:?}");
    let n = acks.load(Ordering::Relaxed);
    wait_for_acks(&acks, n + 2_000).await;

    // SIGTERM drains a clustered broker before it exits.
    let status = c.broker(2).stop().unwrap();
    assert!(status.success(), "a drained broker exits 0, got {status}\n{}", c.logs());
    let s = c.status().unwrap();
    assert_eq!(s.brokers[&2].partitions, 0, "broker 2 gave everything away: {s:?}");
    let n = acks.load(Ordering::Relaxed);
    wait_for_acks(&acks, n + 2_000).await;

    // A new broker gets its share without being asked.
    c.add_broker(3).unwrap();
    c.wait_for("broker 3 gets its share", WAIT, |s| s.moving == 0 && s.live_partitions().get(&3) == Some(&2))
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let n = acks.load(Ordering::Relaxed);
    wait_for_acks(&acks, n + 2_000).await;

    stop.store(true, Ordering::Release);
    let (acked, failed) = load.await.unwrap();
    assert_eq!(failed, 0, "records the producer gave up on (only retriable errors are allowed)");
    let read = consume_to_end(&c.bootstrap(), topic, 6, WAIT).unwrap();
    check_once(&acked, &read, &c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_a_live_brokers_id_exits_and_the_live_one_keeps_serving() {
    let c = Cluster::start("dup-id", 1, &[]).unwrap();
    let intruder = BrokerProcess::start(&c.scratch.path().join("intruder"), &c.store, &["--broker-id", "0"]);
    let err = intruder.err().expect("a second broker 0 must not start").to_string();
    assert!(err.contains("in use by a live broker"), "{err}");
    let p = producer(&c.bootstrap(), &[]).unwrap();
    let acked = floe_testing::kafka::produce_all(&p, "still-here", "r", 200, 50).await.unwrap();
    assert_eq!(acked.len(), 200);
    let s = c.status().unwrap();
    assert_eq!(s.brokers[&0].epoch, 1, "the live broker was not fenced: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_atomic_conditional_writes_is_refused() {
    let fake = FakeS3::start().await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let store = ObjectStore { url: "s3://unsafe/floe".into() };
    let endpoint = fake.endpoint();
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let err = BrokerProcess::start_with_env(&scratch.path().join("data"), &store, &[], &env)
        .err()
        .expect("floe must refuse a store whose conditional writes are not atomic")
        .to_string();
    assert!(err.contains("conditional writes are not atomic"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_paused_past_its_lease_acknowledges_nothing_and_loses_nothing() {
    let topic = "paused";
    let mut c = spread_cluster("paused", 2, "200", topic, 4).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(produce_until(c.bootstrap(), topic, stop.clone(), acks.clone()));
    wait_for_acks(&acks, 2_000).await;

    let pid = c.broker(1).pid().unwrap().to_string();
    std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    c.wait_for("the paused broker is fenced", WAIT, |s| s.brokers[&1].state == "fenced")
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    // It learns it was fenced and stops without acknowledging anything more.
    let exited = c.broker(1).wait_exit(WAIT).unwrap();
    assert!(!exited.success(), "a fenced broker exits with an error");
    assert!(c.broker(1).log_tail().contains("fenced"), "{}", c.broker(1).log_tail());
    // Its WAL comes back with it; its partitions are served again.
    c.broker(1).restart().unwrap();
    let n = acks.load(Ordering::Relaxed);
    wait_for_acks(&acks, n + 2_000).await;
    stop.store(true, Ordering::Release);
    let (acked, failed) = load.await.unwrap();
    assert_eq!(failed, 0);
    let read = consume_to_end(&c.bootstrap(), topic, 4, WAIT).unwrap();
    check_once(&acked, &read, &c);
}

/// Runs the load through `f`, then checks that every acknowledged record is
/// read back once.
async fn under_load(
    c: &mut Cluster,
    topic: &'static str,
    partitions: i32,
    f: impl AsyncFnOnce(&mut Cluster, &AtomicUsize),
) {
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(produce_until(c.bootstrap(), topic, stop.clone(), acks.clone()));
    wait_for_acks(&acks, 2_000).await;
    f(c, &acks).await;
    let n = acks.load(Ordering::Relaxed);
    wait_for_acks(&acks, n + 2_000).await;
    stop.store(true, Ordering::Release);
    let (acked, failed) = load.await.unwrap();
    assert_eq!(failed, 0, "records the producer gave up on\n{}", c.logs());
    let read = consume_to_end(&c.bootstrap(), topic, partitions, WAIT).unwrap();
    check_once(&acked, &read, c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_brokers_wal_is_recovered_by_a_peer_and_its_partitions_served_elsewhere() {
    let topic = "killed";
    let mut c = spread_cluster("killed", 3, "1000", topic, 6).await;
    under_load(&mut c, topic, 6, async |c, acks| {
        // Not the controller: that case has its own test.
        let controller = c.status().unwrap().controller;
        let victim = (0..3).find(|b| *b != controller).unwrap();
        c.broker(victim).kill();
        let started = std::time::Instant::now();
        c.wait_for("the dead broker's partitions are served by the others", WAIT, |s| {
            s.brokers[&victim].state == "fenced" && s.brokers[&victim].partitions == 0 && s.moving == 0
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
        eprintln!(
            "failover: {} ms from SIGKILL to the partitions served elsewhere",
            started.elapsed().as_millis()
        );
        let n = acks.load(Ordering::Relaxed);
        wait_for_acks(acks, n + 1_000).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_killed_in_the_middle_of_a_move_loses_nothing() {
    let topic = "ctl";
    let mut c = spread_cluster("controller-killed", 3, "200", topic, 6).await;
    under_load(&mut c, topic, 6, async |c, _| {
        let controller = c.status().unwrap().controller;
        let owners = leaders(&c.bootstrap(), topic);
        // Move a partition the controller does not own, then kill the controller.
        let p = owners.iter().position(|o| *o != controller).unwrap();
        let to = (0..3).find(|b| *b != owners[p] && *b != controller).unwrap();
        c.cli(&["move", topic, &p.to_string(), &to.to_string()]).unwrap();
        c.broker(controller).kill();
        c.wait_for("a new controller finishes the move and recovers the old one", WAIT, |s| {
            s.controller != controller
                && s.moving == 0
                && s.brokers[&controller].state == "fenced"
                && s.brokers[&controller].partitions == 0
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_brokers_killed_and_restarted_at_once_keep_every_record_and_spread_out() {
    let topic = "restart";
    let mut c = spread_cluster("all-restart", 3, "1000", topic, 6).await;
    under_load(&mut c, topic, 6, async |c, _| {
        for id in 0..3 {
            c.broker(id).kill();
        }
        for id in 0..3 {
            c.broker(id).restart().unwrap();
        }
        let s = c
            .wait_for("every broker serves its share again", WAIT, |s| {
                s.moving == 0
                    && s.live_partitions().len() == 3
                    && s.live_partitions().values().all(|n| *n >= 2)
            })
            .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
        assert!(s.brokers.values().all(|b| b.epoch == 2), "each broker re-registered once: {s:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_partitions_swap_between_two_brokers_at_once() {
    let topic = "swap";
    let mut c = spread_cluster("swap", 2, "200", topic, 40).await;
    under_load(&mut c, topic, 40, async |c, _| {
        let before = leaders(&c.bootstrap(), topic);
        for (p, owner) in before.iter().enumerate() {
            c.cli(&["move", topic, &p.to_string(), &(1 - owner).to_string()]).unwrap();
        }
        c.wait_for("every partition changed hands", WAIT, |s| s.moving == 0)
            .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
        let after = leaders(&c.bootstrap(), topic);
        let swapped = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        // The balancer may even out a few again afterwards; most must have moved.
        assert!(swapped >= 30, "{swapped} of 40 partitions swapped: {before:?} -> {after:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_follows_its_partitions_and_coordinator_across_moves() {
    use floe_testing::clients::ClientMember;
    use floe_testing::group::{committed_offsets, GroupMember};
    let topic = "grouped";
    let mut c = spread_cluster("group-moves", 3, "200", topic, 6).await;
    // Start the group at offset 0 everywhere, and forbid resets: a consumer
    // that got OFFSET_OUT_OF_RANGE because of a move would report an error
    // instead of silently skipping or replaying.
    let group = "movers";
    {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", c.bootstrap())
            .set("group.id", group)
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..6 {
            tpl.add_partition_offset(topic, p, rdkafka::Offset::Offset(0)).unwrap();
        }
        consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync).unwrap();
    }
    let rd = GroupMember::start(&c.bootstrap(), group, topic, true, &[("auto.offset.reset", "error")]);
    let java = ClientMember::start_with(
        "java",
        &c.bootstrap(),
        topic,
        group,
        "java",
        &["--auto-offset-reset", "none"],
    );
    // The moves must find a formed group: both members holding partitions.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (a, b) = (rd.snapshot().assignment, java.view().assignment);
        let mut all: Vec<i32> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        if !a.is_empty() && !b.is_empty() && all == (0..6).collect::<Vec<_>>() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the group did not form: {a:?} {b:?}\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    under_load(&mut c, topic, 6, async |c, _| {
        // Every offsets partition changes hands, so the coordinator moves too.
        let offsets_owners = leaders(&c.bootstrap(), "__consumer_offsets");
        for (p, owner) in offsets_owners.iter().enumerate() {
            c.cli(&["move", "__consumer_offsets", &p.to_string(), &((owner + 1) % 3).to_string()]).unwrap();
        }
        let owners = leaders(&c.bootstrap(), topic);
        for (p, owner) in owners.iter().enumerate().take(3) {
            c.cli(&["move", topic, &p.to_string(), &((owner + 1) % 3).to_string()]).unwrap();
        }
        c.wait_for("the moves complete", WAIT, |s| s.moving == 0)
            .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    })
    .await;
    // The group reads everything: its commits reach each partition's end.
    let ends: Vec<i64> = {
        let consumer: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", c.bootstrap()).create().unwrap();
        (0..6).map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap().1).collect()
    };
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let committed = committed_offsets(&c.bootstrap(), group, topic, 6);
        if (0..6).all(|p| committed.get(&p) == Some(&ends[p as usize])) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the group did not catch up: {committed:?} vs {ends:?}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rd = rd.stop();
    let java = java.terminate();
    // A commit racing the coordinator's move may fail (ILLEGAL_GENERATION and
    // the like, as with any coordinator change) and the next one succeeds;
    // what must never happen is a reset of a position.
    let reset = |e: &String| {
        ["reset", "outofrange", "out of range", "nooffset"].iter().any(|w| e.to_lowercase().contains(w))
    };
    assert!(!rd.errors.iter().any(reset), "librdkafka member reset a position: {:?}", rd.errors);
    assert!(!java.errors.iter().any(reset), "Java member reset a position: {:?}", java.errors);
    assert!(!rd.committed.is_empty() && !java.committed.is_empty(), "both members consumed: {rd:?} {java:?}");
}
