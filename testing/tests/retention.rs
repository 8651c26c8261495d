//! Retention as a consumer from the beginning sees it, on SeaweedFS with
//! librdkafka: old records go by time and by size, DeleteRecords moves the
//! start to an exact offset, configs altered at runtime take effect, and
//! the bucket shrinks to the live data.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use floe_testing::cluster::Cluster;
use floe_testing::kafka::{consume_to_end, producer, record_value};
use floe_testing::raw::{call, connect, topic};
use kafka_protocol::messages::*;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(90);
const VALUE: usize = 1000;
/// Retention runs every 200 ms and deletes what nothing reads after 300 ms.
const FAST: &[&str] = &[
    "--upload-interval-ms",
    "100",
    "--log-retention-check-interval-ms",
    "200",
    "--object-delete-delay-ms",
    "300",
];

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client")
}

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

async fn create(bootstrap: &str, name: &str, configs: &[(&str, &str)]) {
    let mut t = NewTopic::new(name, 1, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let r = admin(bootstrap).create_topics(&[t], &opts()).await.unwrap();
    assert!(r[0].is_ok(), "{r:?}");
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Produces keys `prefix-0..n` to partition 0, with `timestamp` if given;
/// returns the offsets they got.
async fn produce(p: &FutureProducer, name: &str, prefix: &str, n: usize, timestamp: Option<i64>) -> Vec<i64> {
    let mut futures = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("{prefix}-{i}");
        let value = record_value(&key, VALUE);
        let mut r = FutureRecord::to(name).partition(0).key(key.as_bytes()).payload(&value);
        if let Some(ts) = timestamp {
            r = r.timestamp(ts);
        }
        // Bounded: the queue drains as acknowledgements arrive.
        let mut tries = 0;
        let f = loop {
            match p.send_result(r) {
                Ok(f) => break f,
                Err((e, back)) => {
                    tries += 1;
                    assert!(tries < 1000, "could not queue {key}: {e}");
                    r = back;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        futures.push(f);
    }
    let mut offsets = Vec::with_capacity(n);
    for f in futures {
        offsets.push(f.await.expect("delivered").expect("acknowledged").offset);
    }
    offsets
}

fn watermarks(bootstrap: &str, name: &str) -> (i64, i64) {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    c.fetch_watermarks(name, 0, Duration::from_secs(10)).unwrap()
}

/// Waits (bounded) until the low watermark of `name`/0 satisfies `ok`.
async fn wait_low(c: &Cluster, name: &str, what: &str, ok: impl Fn(i64) -> bool) -> (i64, i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let w = watermarks(&c.bootstrap(), name);
        if ok(w.0) {
            return w;
        }
        assert!(Instant::now() < deadline, "{what}: watermarks still {w:?}\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Bytes of the data objects in the bucket.
async fn bucket_bytes(c: &Cluster) -> u64 {
    c.store.data_objects().await.unwrap().iter().map(|o| o.size).sum()
}

/// What a consumer from the beginning reads: (offset, key) in order.
fn read_all(c: &Cluster, name: &str) -> Vec<(i64, String)> {
    let log = consume_to_end(&c.bootstrap(), name, 1, WAIT).unwrap();
    log.iter().map(|((_, o), seen)| (*o, String::from_utf8_lossy(&seen.key).into_owned())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_retention_drops_old_records_and_altered_configs_take_effect() {
    let c = Cluster::start("retention-time", 1, FAST).unwrap();
    let name = "aged";
    create(&c.bootstrap(), name, &[("retention.ms", "600000")]).await;
    let p = producer(&c.bootstrap(), &[]).unwrap();
    // An hour old: past the ten minutes the topic keeps.
    let old = produce(&p, name, "old", 500, Some(now_ms() - 3_600_000)).await;
    assert_eq!(old, (0..500).collect::<Vec<_>>());
    wait_low(&c, name, "the hour-old records go", |low| low == 500).await;

    let fresh = produce(&p, name, "new", 300, None).await;
    assert_eq!(fresh, (500..800).collect::<Vec<_>>());
    let read = read_all(&c, name);
    let expected: Vec<(i64, String)> = (0..300).map(|i| (500 + i, format!("new-{i}"))).collect();
    assert_eq!(read, expected, "a reader from the beginning starts after the expired records");

    // A reader that asks for offset 0 and may not reset is told it is gone.
    let strict: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", c.bootstrap())
        .set("group.id", "strict")
        .set("auto.offset.reset", "error")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(name, 0, Offset::Offset(0)).unwrap();
    strict.assign(&tpl).unwrap();
    let deadline = Instant::now() + WAIT;
    let err = loop {
        match strict.poll(Duration::from_millis(200)) {
            Some(Err(e)) => break e.to_string(),
            Some(Ok(m)) => panic!("offset 0 was served after retention: {:?}", m.offset()),
            None => assert!(Instant::now() < deadline, "no error for an offset below the start"),
        }
    };
    assert!(err.to_lowercase().contains("out of range") || err.contains("reset"), "{err}");

    // The expired objects leave the bucket: what remains is the live data.
    let live = 300 * VALUE as u64;
    let deadline = Instant::now() + WAIT;
    loop {
        // At least the live records (once uploaded), at most 1.2 times that.
        let bytes = bucket_bytes(&c).await;
        if bytes >= live && bytes <= live * 12 / 10 {
            break;
        }
        assert!(Instant::now() < deadline, "the bucket holds {bytes} bytes for {live} live\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Shorter retention, set at runtime, applies to what was fresh.
    let altered = admin(&c.bootstrap())
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic(name)).set("retention.ms", "1000")],
            &opts(),
        )
        .await
        .unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
    let (low, high) = wait_low(&c, name, "the altered retention applies", |low| low == 800).await;
    assert_eq!(high, 800, "offsets are kept: the log is empty, not reset");
    let p = producer(&c.bootstrap(), &[]).unwrap();
    assert_eq!(produce(&p, name, "later", 1, None).await, vec![800]);
    assert_eq!(low, 800);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_retention_keeps_at_least_the_limit_and_drops_the_oldest() {
    let c = Cluster::start("retention-size", 1, FAST).unwrap();
    let name = "sized";
    let limit = 100 * VALUE as u64;
    create(&c.bootstrap(), name, &[("retention.ms", "-1")]).await;
    let p = producer(&c.bootstrap(), &[]).unwrap();
    // Ten rounds, each committed before the next: ranges of about 50 KB.
    let mut committed = 0;
    for round in 0..10 {
        produce(&p, name, &format!("r{round}"), 50, None).await;
        let deadline = Instant::now() + WAIT;
        loop {
            let s = c.status().unwrap();
            let now = s.brokers[&0].committed_bytes;
            if now >= committed + 50 * VALUE as u64 {
                committed = now;
                break;
            }
            assert!(Instant::now() < deadline, "round {round} was not committed: {s:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Now the limit: set at runtime, it applies on the next retention run.
    let limit_text = limit.to_string();
    let altered = admin(&c.bootstrap())
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic(name))
                .set("retention.ms", "-1")
                .set("retention.bytes", &limit_text)],
            &opts(),
        )
        .await
        .unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
    // 500 KB written, 100 KB kept: the oldest ranges go.
    let (_, high) = wait_low(&c, name, "the oldest records go", |low| low >= 300).await;
    assert_eq!(high, 500);
    let deadline = Instant::now() + WAIT;
    let kept = loop {
        let kept = c.status().unwrap().brokers[&0].committed_bytes;
        // Never below the limit; at most one range (plus framing) above it.
        assert!(kept >= limit, "kept {kept} bytes, the limit is {limit}");
        if kept <= limit + 60 * VALUE as u64 {
            break kept;
        }
        assert!(Instant::now() < deadline, "still {kept} bytes for a {limit}-byte limit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let read = read_all(&c, name);
    let (low, _) = watermarks(&c.bootstrap(), name);
    assert!((300..450).contains(&low), "start {low} for {kept} bytes kept");
    assert_eq!(read.first().map(|r| r.0), Some(low), "a reader starts at the log start");
    assert_eq!(read.len() as i64, high - low, "and reads every record after it once");
    for (o, key) in &read {
        assert_eq!(key, &format!("r{}-{}", o / 50, o % 50));
    }
}

/// DeleteRecords at the wire for one partition: (low watermark, error).
fn delete_records_raw(addr: &str, name: &str, offset: i64, version: i16) -> (i64, i16) {
    let req = DeleteRecordsRequest::default().with_timeout_ms(10_000).with_topics(vec![
        delete_records_request::DeleteRecordsTopic::default().with_name(topic(name)).with_partitions(vec![
            delete_records_request::DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(offset),
        ]),
    ]);
    let resp: DeleteRecordsResponse = call(&mut connect(addr), ApiKey::DeleteRecords, version, &req).unwrap();
    let p = &resp.topics[0].partitions[0];
    (p.low_watermark, p.error_code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_start_to_an_exact_offset() {
    let c = Cluster::start("delete-records", 1, &["--upload-interval-ms", "100"]).unwrap();
    let name = "trimmed";
    create(&c.bootstrap(), name, &[]).await;
    let p = producer(&c.bootstrap(), &[]).unwrap();
    produce(&p, name, "k", 200, None).await;

    // Through librdkafka's admin client; the records need not be uploaded yet.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(name, 0, Offset::Offset(120)).unwrap();
    let done = admin(&c.bootstrap()).delete_records(&tpl, &opts()).await.unwrap();
    let e = done.elements();
    assert_eq!((e[0].offset(), e[0].error().is_ok()), (Offset::Offset(120), true), "{done:?}");
    assert_eq!(watermarks(&c.bootstrap(), name), (120, 200));
    let read = read_all(&c, name);
    assert_eq!(read.first(), Some(&(120, "k-120".to_string())));
    assert_eq!(read.len(), 80);

    // Each wire version: forward moves, a no-op below the start, past the end refused.
    let addr = c.bootstrap();
    assert_eq!(delete_records_raw(&addr, name, 130, 0), (130, 0));
    assert_eq!(delete_records_raw(&addr, name, 125, 1), (130, 0), "never moves back");
    assert_eq!(delete_records_raw(&addr, name, 150, 2), (150, 0));
    let (_, err) = delete_records_raw(&addr, name, 201, 2);
    assert_eq!(err, kafka_protocol::error::ResponseError::OffsetOutOfRange.code());
    assert_eq!(delete_records_raw(&addr, name, -1, 2), (200, 0), "-1 is the high watermark");
    let (_, err) = delete_records_raw(&addr, "no-such-topic", 0, 2);
    assert_eq!(err, kafka_protocol::error::ResponseError::UnknownTopicOrPartition.code());
    assert_eq!(watermarks(&c.bootstrap(), name), (200, 200));
    // The partition goes on from where it was.
    assert_eq!(produce(&p, name, "after", 1, None).await, vec![200]);
    assert_eq!(read_all(&c, name), vec![(200, "after-0".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_topic_leaves_no_object_behind() {
    let c = Cluster::start("delete-frees", 1, FAST).unwrap();
    create(&c.bootstrap(), "doomed", &[]).await;
    let p = producer(&c.bootstrap(), &[]).unwrap();
    produce(&p, "doomed", "d", 300, None).await;
    let deadline = Instant::now() + WAIT;
    while bucket_bytes(&c).await < 300 * VALUE as u64 {
        assert!(Instant::now() < deadline, "the records were never uploaded\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deleted = admin(&c.bootstrap()).delete_topics(&["doomed"], &opts()).await.unwrap();
    assert!(deleted[0].is_ok(), "{deleted:?}");
    let deadline = Instant::now() + WAIT;
    loop {
        let bytes = bucket_bytes(&c).await;
        if bytes == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{bytes} bytes remain after the topic was deleted\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_no_commit_can_reach_are_swept_and_others_kept() {
    let c = Cluster::start("orphans", 1, FAST).unwrap();
    let p = producer(&c.bootstrap(), &[]).unwrap();
    create(&c.bootstrap(), "kept", &[]).await;
    produce(&p, "kept", "k", 50, None).await;
    let bucket = floe_storage::Bucket::open(&c.store.url, Duration::from_secs(10)).unwrap();
    // What a broker killed between its PUT and its commit leaves: an upload
    // of an incarnation that has ended (epoch 0 never registers), and a peer's
    // recovery of it. An object of a shape Floe does not write is not ours.
    let orphans = ["data/b0-e0-000000000001.obj", "data/r0-b0-e0-00000000000000ff.obj"];
    let foreign = "data/README.txt";
    for key in orphans.iter().chain([&foreign]) {
        bucket
            .store
            .put_opts(&bucket.key(key), bytes::Bytes::from_static(b"junk").into(), Default::default())
            .await
            .unwrap();
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let listed = c.store.data_objects().await.unwrap();
        let keys: Vec<String> = listed.iter().map(|o| o.location.filename().unwrap().to_string()).collect();
        if !keys.iter().any(|k| orphans.iter().any(|o| o.ends_with(k.as_str()))) {
            assert!(keys.iter().any(|k| k == "README.txt"), "a foreign object stays: {keys:?}");
            break;
        }
        assert!(Instant::now() < deadline, "orphans remain: {keys:?}\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The committed data was not touched.
    assert_eq!(read_all(&c, "kept").len(), 50);
}
