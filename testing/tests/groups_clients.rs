//! Consumer groups with kafka-python, the Java client and kafkajs, each
//! driven as separate processes (testing/clients/*/group_member*): partitions
//! shared without overlap, a leave moves partitions, a SIGKILLed member's
//! replacement resumes at the committed offsets, and a broker SIGKILL during
//! commits loses no acknowledged commit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use floe_testing::clients::{ClientMember as Member, ClientView as View};
use floe_testing::group::committed_offsets;
use floe_testing::kafka::producer;
use floe_testing::{BrokerProcess, ObjectStore};
use rdkafka::producer::FutureRecord;

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool, detail: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}: {}", detail());
}

fn balanced(members: &[&Member], partitions: i32) -> bool {
    let views: Vec<View> = members.iter().map(|m| m.view()).collect();
    let mut all: Vec<i32> = views.iter().flat_map(|v| v.assignment.clone()).collect();
    all.sort_unstable();
    all == (0..partitions).collect::<Vec<_>>() && views.iter().all(|v| !v.assignment.is_empty())
}

async fn produce(bootstrap: &str, topic: &str, per_partition: usize) {
    let p = producer(bootstrap, &[("linger.ms", "2")]).unwrap();
    let mut futures = Vec::new();
    for part in 0..6 {
        for i in 0..per_partition {
            let key = format!("{i}");
            let f = p.send_result(FutureRecord::to(topic).partition(part).key(&key).payload("v"));
            futures.push(f.map_err(|(e, _)| e).unwrap());
        }
    }
    for f in futures {
        f.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

async fn group_lifecycle(client: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let store = ObjectStore::fresh(&format!("group-{client}"), scratch.path());
    let mut broker = BrokerProcess::start(
        &scratch.path().join("data"),
        &store,
        &["--num-partitions", "6", "--group-initial-rebalance-delay-ms", "500"],
    )
    .unwrap();
    let b = broker.bootstrap();
    let (topic, group) = (format!("t-{client}"), format!("g-{client}"));
    produce(&b, &topic, 50).await;

    // Three members share six partitions without overlap.
    let mut members: Vec<Member> =
        (0..3).map(|i| Member::start(client, &b, &topic, &group, &format!("m{i}"))).collect();
    let log = |m: &[Member]| format!("{:?}", m.iter().map(Member::view).collect::<Vec<_>>());
    wait_until(
        "three balanced members",
        Duration::from_secs(90),
        || balanced(&members.iter().collect::<Vec<_>>(), 6),
        || log(&members),
    );
    for m in &members {
        assert_eq!(m.view().assignment.len(), 2, "{}", log(&members));
    }
    // Everything is consumed and committed.
    wait_until(
        "all 300 records committed",
        Duration::from_secs(60),
        || {
            let mut c = BTreeMap::new();
            for m in &members {
                c.extend(m.view().committed);
            }
            c.len() == 6 && c.values().all(|o| *o == 50)
        },
        || log(&members),
    );

    // A member leaves cleanly: the other two take its partitions.
    let left = members.remove(0).terminate();
    assert!(left.closed, "{left:?}");
    wait_until(
        "two members cover six partitions",
        Duration::from_secs(60),
        || balanced(&members.iter().collect::<Vec<_>>(), 6),
        || log(&members),
    );

    // Kill one, stop the other; a replacement starts exactly at the commits.
    let _ = members.remove(0).kill();
    let _ = members.remove(0).terminate();
    produce(&b, &topic, 5).await;
    let replacement = Member::start(client, &b, &topic, &group, "r");
    wait_until(
        "the replacement reads every partition",
        Duration::from_secs(90),
        || replacement.view().first.len() == 6,
        || format!("{:?}", replacement.view()),
    );
    let first = replacement.view().first;
    assert!(first.values().all(|o| *o == 50), "resumes at the committed offset 50 everywhere: {first:?}");

    // The broker is SIGKILLed while the member commits; no acknowledged commit is lost.
    let producing = tokio::spawn({
        let b = b.clone();
        let topic = topic.clone();
        async move {
            let p = producer(&b, &[("linger.ms", "2"), ("message.timeout.ms", "3000")]).unwrap();
            for i in 0..3000 {
                let _ = p
                    .send(
                        FutureRecord::to(&topic).partition(i % 6).key("k").payload("v"),
                        Duration::from_secs(3),
                    )
                    .await;
            }
        }
    });
    wait_until(
        "commits under way",
        Duration::from_secs(60),
        || replacement.view().committed.values().sum::<i64>() > 6 * 55 + 60,
        || format!("{:?}", replacement.view()),
    );
    broker.kill();
    std::thread::sleep(Duration::from_millis(200));
    let acked = replacement.view().committed;
    broker.restart().unwrap();
    let after = committed_offsets(&broker.bootstrap(), &group, &topic, 6);
    for (p, o) in &acked {
        assert!(after.get(p).copied().unwrap_or(-1) >= *o, "partition {p}: acked {o}, broker has {after:?}");
    }
    let _ = replacement.terminate();
    producing.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_group_lifecycle() {
    group_lifecycle("python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_group_lifecycle() {
    group_lifecycle("java").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafkajs_group_lifecycle() {
    group_lifecycle("node").await;
}

/// Cooperative-sticky: members keep their partitions across a rebalance and
/// the group still ends balanced after joins and a leave.
async fn cooperative(client: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let store = ObjectStore::fresh(&format!("coop-{client}"), scratch.path());
    let broker = BrokerProcess::start(
        &scratch.path().join("data"),
        &store,
        &["--num-partitions", "6", "--group-initial-rebalance-delay-ms", "300"],
    )
    .unwrap();
    let b = broker.bootstrap();
    let (topic, group) = (format!("coop-{client}"), format!("coop-g-{client}"));
    produce(&b, &topic, 5).await;
    let coop = ["--assignor", "cooperative-sticky"];
    let mut members: Vec<Member> =
        (0..2).map(|i| Member::start_with(client, &b, &topic, &group, &format!("c{i}"), &coop)).collect();
    let log = |m: &[Member]| format!("{:?}", m.iter().map(Member::view).collect::<Vec<_>>());
    wait_until(
        "two balanced members",
        Duration::from_secs(90),
        || balanced(&members.iter().collect::<Vec<_>>(), 6),
        || log(&members),
    );
    let before: Vec<Vec<i32>> = members.iter().map(|m| m.view().assignment).collect();
    members.push(Member::start_with(client, &b, &topic, &group, "c2", &coop));
    wait_until(
        "three balanced members",
        Duration::from_secs(90),
        || balanced(&members.iter().collect::<Vec<_>>(), 6),
        || log(&members),
    );
    for (i, old) in before.iter().enumerate() {
        let now = members[i].view().assignment;
        assert!(now.iter().all(|p| old.contains(p)), "sticky: member {i} had {old:?}, now {now:?}");
    }
    let _ = members.remove(0).terminate();
    wait_until(
        "two members after a leave",
        Duration::from_secs(90),
        || balanced(&members.iter().collect::<Vec<_>>(), 6),
        || log(&members),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_cooperative_sticky() {
    cooperative("python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_cooperative_sticky() {
    cooperative("java").await;
}
