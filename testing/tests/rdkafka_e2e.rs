//! End to end with librdkafka (the `rdkafka` crate): every compression codec,
//! admin operations, offsets by time, idempotent retries.

use std::time::Duration;

use floe_testing::kafka::{consume_to_end, missing_or_changed, produce_all, producer};
use floe_testing::TestBroker;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::FutureRecord;
use rdkafka::TopicPartitionList;

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client")
}

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_round_trips_across_three_partitions() {
    let t = TestBroker::start("codecs", &[]).unwrap();
    let bootstrap = t.broker.bootstrap();
    let created = admin(&bootstrap)
        .create_topics(&[NewTopic::new("codecs", 3, TopicReplication::Fixed(1))], &opts())
        .await
        .unwrap();
    assert!(created[0].is_ok(), "{created:?}");

    let mut acked = floe_testing::kafka::Log::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let p = producer(&bootstrap, &[("compression.type", codec)]).unwrap();
        let log = produce_all(&p, "codecs", codec, 2_000, 300).await.unwrap();
        assert_eq!(log.len(), 2_000, "{codec}: every record acknowledged once");
        acked.extend(log);
    }
    let partitions: std::collections::BTreeSet<i32> = acked.keys().map(|(p, _)| *p).collect();
    assert_eq!(partitions.len(), 3, "keys spread over all partitions");

    let read = consume_to_end(&bootstrap, "codecs", 3, Duration::from_secs(60)).unwrap();
    let problems = missing_or_changed(&acked, &read);
    assert!(
        problems.is_empty(),
        "{} problems, first: {:?}\n{}",
        problems.len(),
        &problems[..problems.len().min(5)],
        t.broker.log_tail()
    );
    assert_eq!(read.len(), acked.len(), "nothing unacknowledged appears");

    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    let mut total = 0;
    for p in 0..3 {
        let (low, high) = consumer.fetch_watermarks("codecs", p, Duration::from_secs(10)).unwrap();
        assert_eq!(low, 0);
        total += high;
    }
    assert_eq!(total, 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_creates_describes_grows_and_deletes_topics() {
    let t = TestBroker::start("admin", &[]).unwrap();
    let bootstrap = t.broker.bootstrap();
    let a = admin(&bootstrap);

    let topic = NewTopic::new("orders", 2, TopicReplication::Fixed(1))
        .set("retention.ms", "3600000")
        .set("cleanup.policy", "delete");
    let r = a.create_topics(&[topic], &opts()).await.unwrap();
    assert!(r[0].is_ok(), "{r:?}");

    let again =
        a.create_topics(&[NewTopic::new("orders", 2, TopicReplication::Fixed(1))], &opts()).await.unwrap();
    assert_eq!(again[0].as_ref().unwrap_err().1, RDKafkaErrorCode::TopicAlreadyExists);

    let bad = NewTopic::new("bad-config", 1, TopicReplication::Fixed(1)).set("retention.ms", "soon");
    let r = a.create_topics(&[bad], &opts()).await.unwrap();
    assert_eq!(r[0].as_ref().unwrap_err().1, RDKafkaErrorCode::InvalidConfig);
    let bad = NewTopic::new("bad/name", 1, TopicReplication::Fixed(1));
    let r = a.create_topics(&[bad], &opts()).await.unwrap();
    assert_eq!(r[0].as_ref().unwrap_err().1, RDKafkaErrorCode::InvalidTopic);

    let described = a.describe_configs(&[ResourceSpecifier::Topic("orders")], &opts()).await.unwrap();
    let resource = described[0].as_ref().unwrap();
    let retention = resource.get("retention.ms").expect("retention.ms is described");
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert!(!retention.is_default);
    let max = resource.get("max.message.bytes").unwrap();
    assert!(max.is_default);
    let broker = a.describe_configs(&[ResourceSpecifier::Broker(0)], &opts()).await.unwrap();
    assert!(broker[0].as_ref().unwrap().get("num.partitions").is_some());

    // AlterConfigs replaces the topic's whole set: retention.ms is set,
    // cleanup.policy (set at creation, not named here) goes back to its default.
    let alter = a
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic("orders")).set("retention.ms", "120000")],
            &opts(),
        )
        .await
        .unwrap();
    assert!(alter[0].is_ok(), "{alter:?}");
    let described = a.describe_configs(&[ResourceSpecifier::Topic("orders")], &opts()).await.unwrap();
    let resource = described[0].as_ref().unwrap();
    assert_eq!(resource.get("retention.ms").and_then(|e| e.value.as_deref()), Some("120000"));
    assert!(resource.get("cleanup.policy").unwrap().is_default);
    // A bad value is refused (the rdkafka crate does not surface the
    // per-resource error; the wire test checks the code): nothing changes.
    a.alter_configs(
        &[AlterConfig::new(ResourceSpecifier::Topic("orders")).set("retention.ms", "soon")],
        &opts(),
    )
    .await
    .unwrap();
    let described = a.describe_configs(&[ResourceSpecifier::Topic("orders")], &opts()).await.unwrap();
    let resource = described[0].as_ref().unwrap();
    assert_eq!(resource.get("retention.ms").and_then(|e| e.value.as_deref()), Some("120000"));

    let grown = a.create_partitions(&[NewPartitions::new("orders", 5)], &opts()).await.unwrap();
    assert!(grown[0].is_ok(), "{grown:?}");
    let shrink = a.create_partitions(&[NewPartitions::new("orders", 3)], &opts()).await.unwrap();
    assert_eq!(shrink[0].as_ref().unwrap_err().1, RDKafkaErrorCode::InvalidPartitions);

    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    let md = consumer.fetch_metadata(Some("orders"), Duration::from_secs(10)).unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 5);

    // Records produced to a new partition are readable.
    let p = producer(&bootstrap, &[]).unwrap();
    let d = p
        .send(FutureRecord::to("orders").partition(4).key("k").payload("v"), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!((d.partition, d.offset), (4, 0));

    let deleted = a.delete_topics(&["orders"], &opts()).await.unwrap();
    assert!(deleted[0].is_ok(), "{deleted:?}");
    let md = consumer.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    assert!(md.topics().iter().all(|t| t.name() != "orders"), "deleted topic is gone");
    let gone = a.delete_topics(&["orders"], &opts()).await.unwrap();
    assert_eq!(gone[0].as_ref().unwrap_err().1, RDKafkaErrorCode::UnknownTopicOrPartition);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_by_time_earliest_and_latest() {
    let t = TestBroker::start("times", &["--upload-interval-ms", "100"]).unwrap();
    let bootstrap = t.broker.bootstrap();
    let p = producer(&bootstrap, &[("linger.ms", "0")]).unwrap();
    let base = 1_700_000_000_000i64;
    for i in 0..50i64 {
        p.send(
            FutureRecord::to("times").partition(0).key("k").payload("v").timestamp(base + i * 1000),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }
    // Let the first 50 reach the object store, then add more to the log cache:
    // the lookup must work in both.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for i in 50..60i64 {
        p.send(
            FutureRecord::to("times").partition(0).key("k").payload("v").timestamp(base + i * 1000),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    for (ts, want) in [(base + 10_000, 10), (base + 55_000, 55), (base, 0), (base + 999_999, -1)] {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("times", 0, rdkafka::Offset::Offset(ts)).unwrap();
        let r = consumer.offsets_for_times(tpl, Duration::from_secs(10)).unwrap();
        let got = r.elements()[0].offset();
        let want = if want < 0 { rdkafka::Offset::End } else { rdkafka::Offset::Offset(want) };
        assert_eq!(got, want, "timestamp {ts}");
    }
    assert_eq!(consumer.fetch_watermarks("times", 0, Duration::from_secs(10)).unwrap(), (0, 60));
}
