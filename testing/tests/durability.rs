//! Durability as a user sees it: a SIGKILL mid-produce loses no acknowledged
//! record, and a broker with an empty disk on the same bucket serves
//! everything that was committed.

use std::time::Duration;

use floe_testing::kafka::{
    consume_to_end, missing_or_changed, produce_all, producer, record_value, Log, Seen,
};
use floe_testing::{BrokerProcess, ObjectStore};
use rdkafka::producer::FutureRecord;

/// Produces until the broker dies under it; returns what was acknowledged.
async fn produce_until_killed(
    bootstrap: &str,
    topic: &str,
    total: usize,
    kill_after_acks: usize,
    kill: impl FnOnce(),
) -> Log {
    let p = producer(bootstrap, &[("message.timeout.ms", "5000"), ("compression.type", "lz4")]).unwrap();
    let mut acked = Log::new();
    let mut in_flight = std::collections::VecDeque::new();
    let mut kill = Some(kill);
    for i in 0..total {
        if kill.is_none() {
            break; // the broker is dead: stop adding records, settle those in flight
        }
        let key = format!("crash-{i}");
        let value = record_value(&key, 200);
        match p.send_result(FutureRecord::to(topic).key(key.as_bytes()).payload(&value)) {
            Ok(f) => in_flight.push_back((key, value, f)),
            Err(_) => break,
        }
        // Keep a window in flight so the kill lands mid-write.
        while in_flight.len() > 500 {
            let (key, value, f) = in_flight.pop_front().unwrap();
            if let Ok(Ok(d)) = f.await {
                acked.insert((d.partition, d.offset), Seen { key: key.into_bytes(), value });
            }
            if acked.len() >= kill_after_acks {
                if let Some(k) = kill.take() {
                    k();
                }
            }
        }
    }
    for (key, value, f) in in_flight {
        if let Ok(Ok(d)) = f.await {
            acked.insert((d.partition, d.offset), Seen { key: key.into_bytes(), value });
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_produce_loses_no_acknowledged_record() {
    let scratch = tempfile::tempdir().unwrap();
    let store = ObjectStore::fresh("crash", scratch.path());
    let data = scratch.path().join("data");
    let mut broker = BrokerProcess::start(&data, &store, &["--num-partitions", "3"]).unwrap();
    let bootstrap = broker.bootstrap();

    let mut killed = false;
    let acked = produce_until_killed(&bootstrap, "crash", 30_000, 10_000, || {
        broker.kill();
        killed = true;
    })
    .await;
    assert!(killed, "the producer finished before the kill point");
    assert!(acked.len() >= 10_000, "acked {}", acked.len());

    broker.restart().unwrap();
    let read = consume_to_end(&broker.bootstrap(), "crash", 3, Duration::from_secs(60)).unwrap();
    let problems = missing_or_changed(&acked, &read);
    assert!(
        problems.is_empty(),
        "{} of {} acked records missing or changed: {:?}\n{}",
        problems.len(),
        acked.len(),
        &problems[..problems.len().min(5)],
        broker.log_tail()
    );

    // The restarted broker uploaded what it replayed before serving, so a
    // second SIGKILL followed by the loss of the disk loses nothing either.
    broker.kill();
    std::fs::remove_dir_all(&data).unwrap();
    broker.restart().unwrap();
    let read = consume_to_end(&broker.bootstrap(), "crash", 3, Duration::from_secs(60)).unwrap();
    let problems = missing_or_changed(&acked, &read);
    assert!(
        problems.is_empty(),
        "after disk loss: {} of {} acked records missing: {:?}",
        problems.len(),
        acked.len(),
        &problems[..problems.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_broker_with_an_empty_disk_serves_everything_committed() {
    let scratch = tempfile::tempdir().unwrap();
    let store = ObjectStore::fresh("disk-loss", scratch.path());
    let data = scratch.path().join("data");
    let mut broker = BrokerProcess::start(&data, &store, &["--num-partitions", "3"]).unwrap();
    let p = producer(&broker.bootstrap(), &[("compression.type", "zstd")]).unwrap();
    let acked = produce_all(&p, "survivor", "a", 5_000, 500).await.unwrap();
    drop(p);
    let status = broker.stop().unwrap();
    assert!(status.success(), "graceful stop exits 0, got {status}\n{}", broker.log_tail());

    std::fs::remove_dir_all(&data).unwrap();
    let mut fresh = BrokerProcess::start(&data, &store, &[]).unwrap();
    let read = consume_to_end(&fresh.bootstrap(), "survivor", 3, Duration::from_secs(60)).unwrap();
    let problems = missing_or_changed(&acked, &read);
    assert!(
        problems.is_empty(),
        "{} problems: {:?}\n{}",
        problems.len(),
        &problems[..problems.len().min(5)],
        fresh.log_tail()
    );

    // It continues the offsets rather than restarting them.
    let p = producer(&fresh.bootstrap(), &[]).unwrap();
    let more = produce_all(&p, "survivor", "b", 300, 100).await.unwrap();
    for (partition, offset) in more.keys() {
        let before = acked.keys().filter(|(p, _)| p == partition).map(|(_, o)| *o).max().unwrap_or(-1);
        assert!(*offset > before, "partition {partition}: offset {offset} reused (had up to {before})");
    }
    assert!(fresh.stop().unwrap().success());
}
