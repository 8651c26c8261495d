//! A continuous idempotent load against a cluster, and the check that
//! every acknowledged record is read back once (shared by the cluster tests).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureRecord;

use crate::cluster::Cluster;
use crate::kafka::{duplicate_keys, missing_or_changed, producer, record_value, Log, Seen};

/// Creates `name` with `partitions` partitions (panics if that fails).
pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = admin.create_topics(&[topic], &AdminOptions::new()).await.unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
}

/// Every acknowledged record is read back, unchanged, and no key twice.
pub fn check_once(acked: &Log, read: &Log, c: &Cluster) {
    let problems = missing_or_changed(acked, read);
    assert!(
        problems.is_empty(),
        "{} of {} acked records lost: {:?}\n{}",
        problems.len(),
        acked.len(),
        &problems[..problems.len().min(5)],
        c.logs()
    );
    let dups = duplicate_keys(read);
    assert!(
        dups.is_empty(),
        "{} duplicates with idempotence on: {:?}",
        dups.len(),
        &dups[..dups.len().min(5)]
    );
}

/// Per partition, the longest time between two acknowledgements the
/// producer saw: the write-unavailability window a move or a failover
/// caused (an upper bound: acks are collected in send order).
#[derive(Debug, Default)]
struct Windows(std::collections::BTreeMap<i32, (std::time::Instant, Duration)>);

impl Windows {
    fn ack(&mut self, partition: i32) {
        let now = std::time::Instant::now();
        let e = self.0.entry(partition).or_insert((now, Duration::ZERO));
        e.1 = e.1.max(now - e.0);
        e.0 = now;
    }

    fn report(&self) -> String {
        self.0.iter().map(|(p, (_, gap))| format!("p{p}={}ms", gap.as_millis())).collect::<Vec<_>>().join(" ")
    }
}

/// An idempotent producer that sends until told to stop; what it got acked,
/// and how many records failed for good.
pub async fn produce_until(
    bootstrap: String,
    topic: &'static str,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicUsize>,
) -> (Log, usize) {
    produce_paced(bootstrap, topic, stop, acks, None).await
}

/// Like [`produce_until`], at most `per_sec` records a second when set (so
/// that slow consumers keep up and the topic stays small enough to read back).
pub async fn produce_paced(
    bootstrap: String,
    topic: &'static str,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicUsize>,
    per_sec: Option<u32>,
) -> (Log, usize) {
    let p = producer(&bootstrap, &[("message.timeout.ms", "120000"), ("linger.ms", "2")]).unwrap();
    let mut windows = Windows::default();
    let mut acked = Log::new();
    let mut failed = 0;
    let mut in_flight = std::collections::VecDeque::new();
    let mut i = 0u64;
    let started = tokio::time::Instant::now();
    while !stop.load(Ordering::Acquire) {
        if let Some(rate) = per_sec {
            tokio::time::sleep_until(started + Duration::from_secs_f64(i as f64 / f64::from(rate))).await;
        }
        let key = format!("k-{i}");
        i += 1;
        let value = record_value(&key, 100);
        match p.send_result(FutureRecord::to(topic).key(key.as_bytes()).payload(&value)) {
            Ok(f) => in_flight.push_back((key, value, f)),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
        while in_flight.len() > 200 {
            let (key, value, f) = in_flight.pop_front().unwrap();
            match f.await {
                Ok(Ok(d)) => {
                    windows.ack(d.partition);
                    acked.insert((d.partition, d.offset), Seen { key: key.into_bytes(), value });
                    acks.fetch_add(1, Ordering::Relaxed);
                }
                _ => failed += 1,
            }
        }
    }
    eprintln!(
        "{topic}: longest gap between acks per partition (unavailability window): {}",
        windows.report()
    );
    for (key, value, f) in in_flight {
        match f.await {
            Ok(Ok(d)) => {
                acked.insert((d.partition, d.offset), Seen { key: key.into_bytes(), value });
            }
            _ => failed += 1,
        }
    }
    (acked, failed)
}

/// Waits (60 s at most) until the producer has had `at_least` records acknowledged.
pub async fn wait_for_acks(acks: &AtomicUsize, at_least: usize) {
    // Bounded: the producer fails the test by timing out its own records.
    for _ in 0..600 {
        if acks.load(Ordering::Relaxed) >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the producer got fewer than {at_least} acks in 60 s");
}
