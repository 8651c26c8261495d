//! Compaction on SeaweedFS with librdkafka: many small uploads become a few
//! objects and ranges (the default policy merges eight small objects), the bucket holds about the live data, and every
//! record reads back the same, before and after a crash and restart.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use floe_testing::cluster::Cluster;
use floe_testing::kafka::{consume_to_end, producer, record_value, Log, Seen};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureRecord;

const WAIT: Duration = Duration::from_secs(90);
const PARTITIONS: i32 = 4;

async fn bucket_objects(c: &Cluster) -> (usize, u64) {
    let objects = c.store.data_objects().await.unwrap();
    (objects.len(), objects.iter().map(|o| o.size).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_uploads_are_merged_and_read_back_the_same() {
    let mut c = Cluster::start(
        "compaction",
        1,
        &["--upload-interval-ms", "50", "--compaction-interval-ms", "300", "--object-delete-delay-ms", "300"],
    )
    .unwrap();
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", c.bootstrap()).create().unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let t = NewTopic::new("merged", PARTITIONS, TopicReplication::Fixed(1));
    assert!(admin.create_topics(&[t], &opts).await.unwrap()[0].is_ok());

    // Thirty rounds, each committed before the next: thirty or more objects.
    let p = producer(&c.bootstrap(), &[]).unwrap();
    let mut acked = Log::new();
    let mut committed = 0;
    for round in 0..30 {
        for i in 0..40 {
            let key = format!("r{round}-{i}");
            let value = record_value(&key, 500);
            let d = p
                .send(FutureRecord::to("merged").key(key.as_bytes()).payload(&value), Duration::from_secs(30))
                .await
                .unwrap_or_else(|(e, _)| panic!("{key}: {e}"));
            acked.insert((d.partition, d.offset), Seen { key: key.into_bytes(), value });
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let now = c.status().unwrap().brokers[&0].committed_bytes;
            if now >= committed + 40 * 500 {
                committed = now;
                break;
            }
            assert!(Instant::now() < deadline, "round {round} was not committed\n{}", c.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Merged: small objects merge once eight of one time window wait, so
    // fewer than eight per window stay (of thirty and more; the run may
    // straddle one window boundary), with at most one range each per
    // partition, and the replaced ones are deleted.
    // The bucket then holds about the live data: the same objects (one more
    // if a round's output is not committed yet) and their bytes. Status and
    // listing are two reads a compaction round can fall between, so both
    // are read again until they agree.
    let deadline = Instant::now() + WAIT;
    loop {
        let s = c.status().unwrap();
        let (objects, bytes) = bucket_objects(&c).await;
        let live = s.brokers[&0].committed_bytes;
        let compacted = s.objects < 16 && s.garbage == 0 && s.ranges < 16 * PARTITIONS as u64;
        let bucket_ok = objects as u64 <= s.objects + 1 && bytes <= live * 12 / 10 && bytes >= live;
        if compacted && bucket_ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted: {s:?}; the bucket holds {objects} objects, {bytes} bytes for {live} live\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let check = |read: &Log| {
        let missing: Vec<_> = acked
            .keys()
            .filter(|k| read.get(k).map(|s| &s.value) != acked.get(k).map(|s| &s.value))
            .collect();
        assert!(
            missing.is_empty(),
            "{} records missing or changed, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        assert_eq!(read.len(), acked.len(), "nothing extra");
    };
    check(&consume_to_end(&c.bootstrap(), "merged", PARTITIONS, WAIT).unwrap());

    // The compacted metadata is what a restarted broker loads.
    c.broker(0).kill();
    c.broker(0).restart().unwrap();
    check(&consume_to_end(&c.bootstrap(), "merged", PARTITIONS, WAIT).unwrap());
    let per_partition: BTreeMap<i32, usize> = acked.keys().fold(BTreeMap::new(), |mut m, (p, _)| {
        *m.entry(*p).or_default() += 1;
        m
    });
    assert_eq!(per_partition.len(), PARTITIONS as usize, "every partition was written");
}
