//! librdkafka (the `rdkafka` crate) helpers: producers that record what was
//! acknowledged, and consumers that read a topic back without a group.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::TopicPartitionList;

/// A record as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// (partition, offset) -> record.
pub type Log = BTreeMap<(i32, i64), Seen>;

pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> anyhow::Result<FutureProducer> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    Ok(c.create()?)
}

/// Produces `count` records keyed `prefix-i` and waits for every ack.
pub async fn produce_all(
    producer: &FutureProducer,
    topic: &str,
    prefix: &str,
    count: usize,
    value_size: usize,
) -> anyhow::Result<Log> {
    let mut pending = Vec::with_capacity(count);
    for i in 0..count {
        let key = format!("{prefix}-{i}");
        let value = record_value(&key, value_size);
        let fut = producer.send_result(FutureRecord::to(topic).key(key.as_bytes()).payload(&value));
        let fut = match fut {
            Ok(f) => f,
            Err((e, _)) => bail!("enqueue {key}: {e}"),
        };
        pending.push((key, value, fut));
    }
    let mut acked = Log::new();
    for (key, value, fut) in pending {
        match fut.await.context("delivery future dropped")? {
            Ok(d) => {
                acked.insert((d.partition, d.offset), Seen { key: key.into_bytes(), value });
            }
            Err((e, _)) => bail!("record {key} was not acknowledged: {e}"),
        }
    }
    Ok(acked)
}

/// A value derived from the key, so a changed or misplaced record is detected.
pub fn record_value(key: &str, size: usize) -> Vec<u8> {
    let seed = key.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let mut v = format!("{key}:").into_bytes();
    let mut x = seed;
    while v.len() < size.max(v.len()) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(b'a' + (x % 26) as u8);
    }
    v
}

/// Reads every partition of `topic` from the beginning up to the high
/// watermark each had when the read started: stops on state, not on counts,
/// so records that were durable but never acknowledged are read too.
pub fn consume_to_end(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> anyhow::Result<Log> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let deadline = Instant::now() + timeout;
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        let end = loop {
            match consumer.fetch_watermarks(topic, p, Duration::from_secs(5)) {
                Ok((_, high)) => break high,
                Err(e) if Instant::now() > deadline => bail!("watermarks of {topic}/{p}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        ends.insert(p, end);
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut log = Log::new();
    let mut next: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    while next.iter().any(|(p, at)| *at < ends[p]) {
        if Instant::now() > deadline {
            bail!("reading {topic} to its end timed out: at {next:?}, ends {ends:?}");
        }
        if let Some(msg) = consumer.poll(Duration::from_millis(200)) {
            let msg = msg?;
            let seen = Seen {
                key: msg.key().unwrap_or_default().to_vec(),
                value: msg.payload().unwrap_or_default().to_vec(),
            };
            if log.insert((msg.partition(), msg.offset()), seen).is_some() {
                bail!("offset {}:{} delivered twice", msg.partition(), msg.offset());
            }
            next.insert(msg.partition(), msg.offset() + 1);
        }
    }
    Ok(log)
}

/// Keys read more than once (with idempotence on, a duplicate is a bug).
pub fn duplicate_keys(read: &Log) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    read.values()
        .filter(|r| !seen.insert(r.key.clone()))
        .map(|r| String::from_utf8_lossy(&r.key).into_owned())
        .collect()
}

/// Every acknowledged record must be read back at its offset, unchanged.
/// Returns a description of each difference (empty: none).
pub fn missing_or_changed(acked: &Log, read: &Log) -> Vec<String> {
    let mut problems = Vec::new();
    for (pos, rec) in acked {
        match read.get(pos) {
            None => problems
                .push(format!("acked record at {pos:?} ({}) is missing", String::from_utf8_lossy(&rec.key))),
            Some(r) if r != rec => problems.push(format!("record at {pos:?} changed")),
            Some(_) => {}
        }
    }
    problems
}
