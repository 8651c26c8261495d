//! Topic configs that shape each produced batch, as a librdkafka client
//! sees them: LogAppendTime stamps the broker's time, timestamp bounds
//! refuse records from too far away, a topic codec is applied, configs
//! altered at runtime apply to the next batch, and a value Floe cannot honour
//! is refused with INVALID_CONFIG instead of being stored and ignored.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use floe_testing::cluster::Cluster;
use floe_testing::kafka::producer;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn create(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
    configs: &[(&str, &str)],
) -> Result<(), RDKafkaErrorCode> {
    let mut t = NewTopic::new(name, 1, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    admin.create_topics(&[t], &opts).await.unwrap().remove(0).map(|_| ()).map_err(|(_, code)| code)
}

async fn send(p: &FutureProducer, topic: &str, timestamp: i64) -> Result<i64, KafkaError> {
    let r = FutureRecord::<str, str>::to(topic).partition(0).key("k").payload("v").timestamp(timestamp);
    p.send(r, Duration::from_secs(30)).await.map(|d| d.offset).map_err(|(e, _)| e)
}

/// The timestamp the record at `offset` is read back with.
fn read_timestamp(bootstrap: &str, topic: &str, offset: i64) -> Timestamp {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "timestamps")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset)).unwrap();
    consumer.assign(&tpl).unwrap();
    for _ in 0..300 {
        if let Some(msg) = consumer.poll(Duration::from_millis(100)) {
            let msg = msg.unwrap();
            assert_eq!(msg.offset(), offset);
            return msg.timestamp();
        }
    }
    panic!("offset {offset} of {topic} was not read within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_configs_shape_each_batch_and_unmet_ones_are_refused() {
    let c = Cluster::start("topic-configs", 1, &[]).unwrap();
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", c.bootstrap()).create().unwrap();
    let p = producer(&c.bootstrap(), &[]).unwrap();

    // LogAppendTime (with a topic codec): the broker's time replaces the
    // producer's, and the client is told it is an append time.
    create(&admin, "stamped", &[("message.timestamp.type", "LogAppendTime"), ("compression.type", "gzip")])
        .await
        .unwrap();
    let before = now_ms();
    let at = send(&p, "stamped", 1_000).await.unwrap();
    let after = now_ms();
    match read_timestamp(&c.bootstrap(), "stamped", at) {
        Timestamp::LogAppendTime(t) => {
            assert!((before..=after).contains(&t), "{t} not in {before}..={after}")
        }
        other => panic!("read back as {other:?}"),
    }

    // Altered at runtime: the next batch keeps the producer's time.
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic("stamped"))
                .set("message.timestamp.type", "CreateTime")],
            &opts,
        )
        .await
        .unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
    let at = send(&p, "stamped", 1_000).await.unwrap();
    assert_eq!(read_timestamp(&c.bootstrap(), "stamped", at), Timestamp::CreateTime(1_000));

    // Timestamp bounds: a record from 1970 is refused, a current one is not.
    create(&admin, "bounded", &[("message.timestamp.before.max.ms", "60000")]).await.unwrap();
    let refused = send(&p, "bounded", 1_000).await;
    assert!(
        matches!(refused, Err(KafkaError::MessageProduction(RDKafkaErrorCode::InvalidTimestamp))),
        "{refused:?}"
    );
    send(&p, "bounded", now_ms()).await.unwrap();

    // A value Floe cannot honour is refused; one with no meaning here is not.
    assert_eq!(
        create(&admin, "replicated", &[("min.insync.replicas", "2")]).await,
        Err(RDKafkaErrorCode::InvalidConfig)
    );
    create(&admin, "segmented", &[("segment.bytes", "1048576"), ("flush.messages", "1")]).await.unwrap();
}
