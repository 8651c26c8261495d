//! Consumer groups with librdkafka: partitions shared without overlap,
//! rebalances when a member leaves, resumption at committed offsets, and
//! commits that survive a SIGKILL and the loss of the local disk.

use std::time::{Duration, Instant};

use floe_testing::group::{committed_offsets, wait_balanced, GroupMember};
use floe_testing::kafka::{produce_all, producer};
use floe_testing::{BrokerProcess, ObjectStore, TestBroker};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureRecord;

async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let r = admin
        .create_topics(&[NewTopic::new(name, partitions, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .unwrap();
    assert!(r[0].is_ok(), "{r:?}");
}

async fn produce_to(bootstrap: &str, topic: &str, partitions: i32, per_partition: usize) {
    let p = producer(bootstrap, &[]).unwrap();
    for part in 0..partitions {
        for i in 0..per_partition {
            p.send(
                FutureRecord::to(topic).partition(part).key(&format!("{i}")).payload("v"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_share_six_partitions_and_rebalance_when_one_leaves() {
    let t = TestBroker::start("groups", &[]).unwrap();
    let b = t.broker.bootstrap();
    create_topic(&b, "six", 6).await;

    // One member alone: the join completes after group.initial.rebalance.delay.ms (3 s).
    let started = Instant::now();
    let solo = GroupMember::start(&b, "solo", "six", false, &[]);
    let took = wait_balanced(&[&solo], 6, Duration::from_secs(30)).expect("solo member gets all six");
    eprintln!(
        "single-member join: {:?} (includes the 3 s initial delay), from start {:?}",
        took,
        started.elapsed()
    );
    drop(solo);

    let members: Vec<GroupMember> =
        (0..3).map(|_| GroupMember::start(&b, "trio", "six", false, &[])).collect();
    let refs: Vec<&GroupMember> = members.iter().collect();
    let took = wait_balanced(&refs, 6, Duration::from_secs(60))
        .unwrap_or_else(|a| panic!("no balanced assignment: {a:?}\n{}", t.broker.log_tail()));
    eprintln!("three-member group balanced after {took:?}");
    for m in &members {
        assert_eq!(m.snapshot().assignment.len(), 2, "6 partitions over 3 members");
    }

    // One member leaves (LeaveGroup on close): the other two take its partitions.
    let mut members = members;
    let gone = members.remove(0).stop();
    assert_eq!(gone.assignment.len(), 2);
    let refs: Vec<&GroupMember> = members.iter().collect();
    let took = wait_balanced(&refs, 6, Duration::from_secs(60))
        .unwrap_or_else(|a| panic!("partitions did not move: {a:?}\n{}", t.broker.log_tail()));
    eprintln!("rebalance after a leave: {took:?}");
    for m in &members {
        assert!(m.snapshot().errors.iter().all(|e| !e.contains("Fatal")), "{:?}", m.snapshot().errors);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_resumes_exactly_at_the_committed_offset() {
    let t = TestBroker::start("resume", &["--group-initial-rebalance-delay-ms", "100"]).unwrap();
    let b = t.broker.bootstrap();
    create_topic(&b, "work", 2).await;
    produce_to(&b, "work", 2, 150).await;

    let first = GroupMember::start(&b, "workers", "work", true, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while first.snapshot().committed.len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = first.stop();
    assert!(seen.committed.len() == 2, "both partitions committed: {seen:?}");
    // What the broker holds is what the member was told it committed.
    assert_eq!(committed_offsets(&b, "workers", "work", 2), seen.committed);

    produce_to(&b, "work", 2, 10).await;
    let second = GroupMember::start(&b, "workers", "work", true, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while second.snapshot().first.len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let resumed = second.stop();
    assert_eq!(resumed.first, seen.committed, "the replacement starts exactly where the first committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_survive_a_broker_sigkill_and_the_loss_of_its_disk() {
    let scratch = tempfile::tempdir().unwrap();
    let store = ObjectStore::fresh("commit-crash", scratch.path());
    let data = scratch.path().join("data");
    let mut broker =
        BrokerProcess::start(&data, &store, &["--group-initial-rebalance-delay-ms", "100"]).unwrap();
    let b = broker.bootstrap();
    create_topic(&b, "ledger", 3).await;
    let p = producer(&b, &[]).unwrap();
    produce_all(&p, "ledger", "r", 6_000, 50).await.unwrap();
    drop(p);

    let member = GroupMember::start(&b, "auditors", "ledger", true, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while member.snapshot().committed.values().sum::<i64>() < 1_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    broker.kill();
    // Commits acknowledged before the kill; later ones fail.
    std::thread::sleep(Duration::from_millis(200));
    let acked = member.snapshot().committed;
    assert!(acked.values().sum::<i64>() >= 1_000, "{acked:?}");

    // Restart before closing the member: librdkafka's close waits for the
    // coordinator. The member may commit more after the restart; fine.
    broker.restart().unwrap();
    drop(member);
    let after = committed_offsets(&broker.bootstrap(), "auditors", "ledger", 3);
    for (p, o) in &acked {
        let got = after.get(p).copied().unwrap_or(-1);
        assert!(got >= *o, "partition {p}: acknowledged commit {o}, broker has {got}\n{}", broker.log_tail());
    }

    // Graceful stop, lose the disk, start fresh on the same bucket.
    assert!(broker.stop().unwrap().success());
    std::fs::remove_dir_all(&data).unwrap();
    broker.restart().unwrap();
    assert_eq!(committed_offsets(&broker.bootstrap(), "auditors", "ledger", 3), after);
}
