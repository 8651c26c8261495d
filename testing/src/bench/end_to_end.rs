//! The `end-to-end` scenario: produce at a target rate and tail-consume the
//! same topic; latency is from the producer's send to the consumer's receipt
//! (both on this machine's clock).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::produce::{self, ProduceOptions, ProduceReport};
use super::{histogram, now_micros, Latency};

#[derive(Debug, Clone, Serialize)]
pub struct EndToEndReport {
    pub scenario: &'static str,
    pub produce: ProduceReport,
    pub consumed: u64,
    pub duplicates: u64,
    pub end_to_end: Latency,
}

/// Runs the scenario on a fresh topic; returns the report and the
/// end-to-end latency histogram (µs).
pub async fn run(o: &ProduceOptions) -> anyhow::Result<(EndToEndReport, Histogram<u64>)> {
    let o = ProduceOptions { stamp: true, ..o.clone() };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &o.bootstrap)
        .set("group.id", format!("floe-bench-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set("fetch.min.bytes", "1")
        .create()?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let (topic, partitions) = (o.topic.clone(), o.partitions);
    let tail = std::thread::spawn(move || -> anyhow::Result<(u64, u64, Histogram<u64>)> {
        let mut hist = histogram();
        let mut seen = std::collections::HashSet::new();
        let (mut consumed, mut duplicates) = (0u64, 0u64);
        let mut assigned = false;
        let mut idle_since = Instant::now();
        loop {
            if !assigned {
                // The topic exists once the producer side created it.
                if let Ok(md) = consumer.fetch_metadata(Some(&topic), Duration::from_secs(1)) {
                    if md.topics().first().is_some_and(|t| t.partitions().len() as i32 == partitions) {
                        let mut tpl = TopicPartitionList::new();
                        for p in 0..partitions {
                            tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
                        }
                        consumer.assign(&tpl)?;
                        assigned = true;
                    }
                }
            }
            match consumer.poll(Duration::from_millis(20)) {
                Some(Ok(m)) => {
                    idle_since = Instant::now();
                    if !seen.insert((m.partition(), m.offset())) {
                        duplicates += 1;
                        continue;
                    }
                    consumed += 1;
                    if let Some(stamp) = m.payload().and_then(|p| p.get(..8)) {
                        let sent = u64::from_be_bytes(stamp.try_into().expect("8 bytes"));
                        hist.record(now_micros().saturating_sub(sent).max(1))?;
                    }
                }
                Some(Err(e)) => anyhow::bail!("consumer: {e}"),
                None if s.load(Ordering::Acquire) && idle_since.elapsed() > Duration::from_secs(2) => break,
                None => {}
            }
        }
        Ok((consumed, duplicates, hist))
    });
    let (produced, _) = produce::run(&o).await?;
    stop.store(true, Ordering::Release);
    let (consumed, duplicates, hist) =
        tokio::task::spawn_blocking(move || tail.join().map_err(|_| anyhow::anyhow!("tail thread panicked")))
            .await???;
    let report = EndToEndReport {
        scenario: "end-to-end",
        produce: produced,
        consumed,
        duplicates,
        end_to_end: Latency::from_micros(&hist),
    };
    Ok((report, hist))
}
