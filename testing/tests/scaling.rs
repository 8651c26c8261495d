//! Scaling as a new user does it: one broker, then three, then one again,
//! under a continuous idempotent producer and a consumer group made of other
//! projects' clients (kafka-python and kafkajs) that check order and
//! completeness themselves, with a broker SIGKILLed along the way.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_testing::clients::{ClientMember, ClientView};
use floe_testing::cluster::{Cluster, Status};
use floe_testing::group::committed_offsets;
use floe_testing::kafka::consume_to_end;
use floe_testing::load::{check_once, create_topic, produce_paced, wait_for_acks};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "scaling";
const PARTITIONS: i32 = 6;
const GROUP: &str = "scalers";
/// Records a second: enough to keep every partition busy through each
/// change, few enough for kafka-python to keep up on a loaded machine.
const RATE: u32 = 2_000;

/// What a member's error says when its own order checks failed, or when its
/// client reset a position (see --check-order in testing/clients/*).
const ORDER_ERRORS: [&str; 7] =
    ["out of order", "gap in partition", "went back", "lost (was", "out of range", "outofrange", "nooffset"];

fn panic_with_logs(c: &Cluster) -> impl FnOnce(anyhow::Error) -> Status + '_ {
    move |e| panic!("{e}\n{}", c.logs())
}

/// Each partition's high watermark (retried: a partition may be moving).
fn high_watermarks(bootstrap: &str) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let deadline = Instant::now() + WAIT;
    (0..PARTITIONS)
        .map(|p| loop {
            match consumer.fetch_watermarks(TOPIC, p, Duration::from_secs(5)) {
                Ok((_, high)) => break high,
                Err(e) => assert!(Instant::now() < deadline, "watermarks of {TOPIC}/{p}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        })
        .collect()
}

/// The highest offset any member had committed, per partition.
fn group_committed(views: &[ClientView]) -> BTreeMap<i32, i64> {
    let mut all = BTreeMap::new();
    for (p, o) in views.iter().flat_map(|v| &v.committed) {
        let e = all.entry(*p).or_insert(*o);
        *e = (*e).max(*o);
    }
    all
}

/// Waits until the group has committed, on every partition, what had been
/// written when this was called: the members kept up through `phase`.
async fn group_catches_up(c: &Cluster, members: &[&ClientMember], phase: &str) {
    let ends = high_watermarks(&c.bootstrap());
    let deadline = Instant::now() + WAIT;
    loop {
        let views: Vec<ClientView> = members.iter().map(|m| m.view()).collect();
        let committed = group_committed(&views);
        if (0..PARTITIONS).all(|p| committed.get(&p).is_some_and(|o| *o >= ends[p as usize])) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{phase}: the group did not reach {ends:?}, committed {committed:?}: {views:?}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether every partition (the topic's and the offsets topic's) is served
/// by the `live` brokers only, each holding at least `share`, none moving.
fn served_by(s: &Status, live: &[i32], share: u32) -> bool {
    let held = s.live_partitions();
    s.moving == 0
        && s.unassigned == 0
        && held.keys().copied().collect::<Vec<_>>() == live
        && held.values().all(|n| *n >= share)
        && s.brokers.values().filter(|b| !live.contains(&b.id)).all(|b| b.partitions == 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_three_to_one_brokers_under_load_with_a_kafka_python_and_kafkajs_group() {
    let started = Instant::now();
    let mut c = Cluster::start("scaling", 1, &["--upload-interval-ms", "200"]).unwrap();
    create_topic(&c.bootstrap(), TOPIC, PARTITIONS).await;
    c.wait_for("broker 0 serves every partition", WAIT, |s| served_by(s, &[0], 1))
        .unwrap_or_else(panic_with_logs(&c));
    // Broker 0 stays to the end, so its address is every client's bootstrap:
    // the clients find the other brokers through metadata, as users' do.
    let bootstrap = c.bootstrap();

    // The group starts at offset 0 everywhere, so that a committed offset
    // which disappears later is seen by the members as lost, not as "none yet".
    {
        let consumer: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", &bootstrap).set("group.id", GROUP).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(TOPIC, p, Offset::Offset(0)).unwrap();
        }
        consumer.commit(&tpl, CommitMode::Sync).unwrap();
    }
    // kafkajs only speaks round robin (as "RoundRobinAssigner"); the Python
    // member offers the same protocol so that the two can share a group.
    let member_args = ["--assignor", "roundrobin", "--check-order"];
    let py = ClientMember::start_with("python", &bootstrap, TOPIC, GROUP, "py", &member_args);
    let js = ClientMember::start_with("node", &bootstrap, TOPIC, GROUP, "js", &member_args);
    let members = [&py, &js];
    let deadline = Instant::now() + WAIT;
    loop {
        let (a, b) = (py.view().assignment, js.view().assignment);
        let mut all: Vec<i32> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        if !a.is_empty() && !b.is_empty() && all == (0..PARTITIONS).collect::<Vec<_>>() {
            break;
        }
        assert!(Instant::now() < deadline, "the group did not form: {:?} {:?}", py.view(), js.view());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(produce_paced(bootstrap.clone(), TOPIC, stop.clone(), acks.clone(), Some(RATE)));
    wait_for_acks(&acks, 2_000).await;
    group_catches_up(&c, &members, "one broker").await;
    eprintln!("{:?}: one broker serving load and group", started.elapsed());

    // Scale out: new brokers get their share without being asked.
    c.add_broker(1).unwrap();
    c.add_broker(2).unwrap();
    c.wait_for("each of three brokers holds a share", WAIT, |s| served_by(s, &[0, 1, 2], 2))
        .unwrap_or_else(panic_with_logs(&c));
    group_catches_up(&c, &members, "scale-out to three").await;
    eprintln!("{:?}: three brokers", started.elapsed());

    // SIGKILL a broker that is not the controller (the controller's own
    // failover has its test in cluster.rs): its partitions, and its WAL,
    // are taken over by the others.
    let controller = c.status().unwrap().controller;
    let victim = [1, 2].into_iter().find(|b| *b != controller).unwrap();
    c.broker(victim).kill();
    let killed = Instant::now();
    c.wait_for("the killed broker's partitions are served by the others", WAIT, |s| {
        s.brokers[&victim].state == "fenced" && s.brokers[&victim].partitions == 0 && s.moving == 0
    })
    .unwrap_or_else(panic_with_logs(&c));
    eprintln!("failover of broker {victim}: {} ms", killed.elapsed().as_millis());
    group_catches_up(&c, &members, "SIGKILL of a broker").await;
    // It comes back as a new incarnation and gets its share again.
    c.broker(victim).restart().unwrap();
    c.wait_for("the restarted broker holds a share again", WAIT, |s| served_by(s, &[0, 1, 2], 2))
        .unwrap_or_else(panic_with_logs(&c));
    eprintln!("{:?}: broker {victim} killed and back", started.elapsed());

    // Scale in: SIGTERM drains a clustered broker, which then exits 0.
    for id in [2, 1] {
        let status = c.broker(id).stop().unwrap();
        assert!(status.success(), "a drained broker exits 0, got {status}\n{}", c.logs());
        let s = c.status().unwrap();
        assert_eq!(s.brokers[&id].partitions, 0, "broker {id} gave everything away: {s:?}\n{}", c.logs());
        group_catches_up(&c, &members, &format!("drain of broker {id}")).await;
    }
    c.wait_for("broker 0 holds everything again", WAIT, |s| served_by(s, &[0], 1))
        .unwrap_or_else(panic_with_logs(&c));
    eprintln!("{:?}: back to one broker", started.elapsed());
    let n = acks.load(Ordering::Relaxed);
    wait_for_acks(&acks, n + 1_000).await;

    stop.store(true, Ordering::Release);
    let (acked, failed) = load.await.unwrap();
    assert_eq!(failed, 0, "records the producer gave up on\n{}", c.logs());
    let read = consume_to_end(&c.bootstrap(), TOPIC, PARTITIONS, WAIT).unwrap();
    check_once(&acked, &read, &c);

    // The group reads everything: its commits reach each partition's end.
    let ends = high_watermarks(&c.bootstrap());
    let deadline = Instant::now() + WAIT;
    loop {
        let committed = committed_offsets(&c.bootstrap(), GROUP, TOPIC, PARTITIONS);
        if (0..PARTITIONS).all(|p| committed.get(&p) == Some(&ends[p as usize])) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group did not catch up: {committed:?} vs {ends:?}\n{:?} {:?}\n{}",
            py.view(),
            js.view(),
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Both close at once (kafkajs may wait out its close timeout).
    py.signal("-TERM");
    js.signal("-TERM");
    let (py, js) = (py.terminate(), js.terminate());
    for (name, v) in [("kafka-python", &py), ("kafkajs", &js)] {
        // Commits racing a coordinator change fail (the records come again
        // after the rejoin); what must never happen is a record out of
        // order, a gap, or a reset.
        let mut survived: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &v.errors {
            *survived.entry(e.as_str()).or_default() += 1;
        }
        eprintln!("{name}: closed {}, survived errors {survived:?}", v.closed);
        let bad: Vec<&String> =
            v.errors.iter().filter(|e| ORDER_ERRORS.iter().any(|w| e.to_lowercase().contains(w))).collect();
        assert!(bad.is_empty(), "{name} member saw records out of order, a gap or a reset: {bad:?}");
        assert!(!v.committed.is_empty(), "{name} member consumed nothing: {v:?}");
    }
    eprintln!("{:?}: done", started.elapsed());
}
