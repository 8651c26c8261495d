//! Compacted topics as a consumer from the beginning sees them, on SeaweedFS
//! with librdkafka: after cleaning, each key's latest value is there once at
//! the offset it was acknowledged at, older values are gone, deleted keys
//! go once their tombstones are older than `delete.retention.ms`, records
//! without a key are refused, and a restarted broker serves the same log and
//! loads its group offsets from a compacted `__consumer_offsets`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use floe_testing::cluster::Cluster;
use floe_testing::kafka::{producer, record_value};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(120);
const PARTITIONS: i32 = 2;
const KEYS: usize = 40;
const VERSIONS: usize = 12;
const DELETED: usize = 10;

/// What a reader saw at one offset: key and value (None: a tombstone).
type Read = BTreeMap<(i32, i64), (Vec<u8>, Option<Vec<u8>>)>;
/// Each key's last write: where it went and its value.
type Latest = BTreeMap<String, ((i32, i64), Option<Vec<u8>>)>;

/// Reads every partition from the beginning until librdkafka reports its
/// end (a compacted log may end in offsets whose records are gone, so
/// neither the last record seen nor the application's position need reach
/// the high watermark; the fetch position does).
fn read_all(bootstrap: &str, topic: &str) -> anyhow::Result<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("compacted-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut read = Read::new();
    let mut ended = std::collections::BTreeSet::new();
    while ended.len() < PARTITIONS as usize {
        anyhow::ensure!(Instant::now() < deadline, "only partitions {ended:?} reached their end");
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(msg)) => {
                let seen = (msg.key().unwrap_or_default().to_vec(), msg.payload().map(<[u8]>::to_vec));
                anyhow::ensure!(
                    read.insert((msg.partition(), msg.offset()), seen).is_none(),
                    "delivered twice"
                );
            }
        }
    }
    Ok(read)
}

/// Sends one record with `key` (and `value`: None is a tombstone); its
/// partition and offset.
async fn send(p: &FutureProducer, key: &str, value: Option<&[u8]>) -> (i32, i64) {
    let mut r = FutureRecord::<[u8], [u8]>::to("keyed").key(key.as_bytes());
    if let Some(v) = value {
        r = r.payload(v);
    }
    let d = p.send(r, Duration::from_secs(30)).await.unwrap_or_else(|(e, _)| panic!("{key}: {e}"));
    (d.partition, d.offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_keeps_the_latest_value_of_each_key() {
    let mut c = Cluster::start(
        "key-compaction",
        1,
        &["--upload-interval-ms", "50", "--compaction-interval-ms", "200", "--object-delete-delay-ms", "300"],
    )
    .unwrap();
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", c.bootstrap()).create().unwrap();
    let t = NewTopic::new("keyed", PARTITIONS, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("min.cleanable.dirty.ratio", "0.01")
        .set("delete.retention.ms", "3000");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    assert!(admin.create_topics(&[t], &opts).await.unwrap()[0].is_ok());

    // Versions of every key, compressed as many producers send them, each
    // round committed (a range) before the next; then tombstones.
    let p = producer(&c.bootstrap(), &[("compression.type", "zstd"), ("linger.ms", "5")]).unwrap();
    let mut latest = Latest::new();
    for version in 0..VERSIONS {
        // Enqueued together (so batches hold several records), then awaited.
        let mut pending = Vec::new();
        for k in 0..KEYS {
            let key = format!("key-{k}");
            let value = record_value(&format!("{key}-v{version}"), 300);
            let r = FutureRecord::<[u8], [u8]>::to("keyed").key(key.as_bytes()).payload(&value);
            let delivery = p.send_result(r).map_err(|(e, _)| e).unwrap();
            pending.push((key, value, delivery));
        }
        for (key, value, delivery) in pending {
            let d = delivery.await.unwrap().unwrap_or_else(|(e, _)| panic!("{key}: {e}"));
            latest.insert(key, ((d.partition, d.offset), Some(value)));
        }
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    for k in 0..DELETED {
        let key = format!("key-{k}");
        let at = send(&p, &key, None).await;
        latest.insert(key, (at, None));
    }

    // A record without a key is refused, as Kafka refuses it.
    let keyless = p
        .send(
            FutureRecord::<[u8], [u8]>::to("keyed").partition(0).payload(b"no key"),
            Duration::from_secs(30),
        )
        .await;
    assert!(
        matches!(keyless, Err((KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord), _))),
        "{keyless:?}"
    );

    // Cleaned: each live key once, at its acknowledged offset, with its
    // latest value; the deleted keys gone with their tombstones.
    let expected: Read = latest
        .iter()
        .filter(|(_, (_, v))| v.is_some())
        .map(|(k, (at, v))| (*at, (k.clone().into_bytes(), v.clone())))
        .collect();
    let deadline = Instant::now() + WAIT;
    let mut last = Read::new();
    while last != expected {
        assert!(
            Instant::now() < deadline,
            "not compacted: read {} records for {} live keys\n{}",
            last.len(),
            expected.len(),
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        last = read_all(&c.bootstrap(), "keyed").unwrap();
    }

    // Group offsets committed many times over: after a restart the broker
    // reads their compacted history, and the group's offset is the last one.
    let group: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", c.bootstrap())
        .set("group.id", "committer")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    const COMMITS: i64 = 400;
    for i in 1..=COMMITS {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("keyed", 0, Offset::Offset(i)).unwrap();
        group.commit(&tpl, CommitMode::Sync).unwrap();
    }
    drop(group);
    // Wait until the offsets partition's history has been cleaned to its
    // end (only this group commits to it: one record per commit).
    let deadline = Instant::now() + WAIT;
    let cleaned = format!("cleaned_to={COMMITS} ");
    while !c.broker(0).log().lines().any(|l| l.contains("key-compacted") && l.contains(&cleaned)) {
        assert!(Instant::now() < deadline, "the group's commits were never cleaned\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.broker(0).kill();
    c.broker(0).restart().unwrap();
    assert_eq!(read_all(&c.bootstrap(), "keyed").unwrap(), expected, "the same log after a restart");
    let group: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", c.bootstrap())
        .set("group.id", "committer")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("keyed", 0);
    let committed = group.committed_offsets(tpl, Duration::from_secs(30)).unwrap();
    assert_eq!(committed.find_partition("keyed", 0).unwrap().offset(), Offset::Offset(COMMITS));
    let logs = c.broker(0).log();
    let loaded: usize = logs
        .lines()
        .filter(|l| l.contains("committed offsets loaded"))
        .filter_map(|l| l.split("records=").nth(1)?.split_whitespace().next()?.parse::<usize>().ok())
        .sum();
    assert!(loaded < COMMITS as usize / 2, "{loaded} offset records read at start-up for {COMMITS} commits");
}
