//! The `catch-up` scenario: a reader catches up on a partition history that
//! is only in object storage (the broker was restarted after writing it, so
//! its caches are cold) while a producer keeps writing to another topic. It
//! reports the read rate and how much the producer's ack p99 worsened
//! compared with the same load before the read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::produce::{self, ProduceOptions, ProduceReport};

#[derive(Debug, Clone)]
pub struct CatchUpOptions {
    /// Where and how to produce: the history and the live load use its
    /// bootstrap, record size and compression.
    pub load: ProduceOptions,
    /// Size of the history to read, in bytes of record values.
    pub history_bytes: u64,
    /// Partitions of the history topic.
    pub history_partitions: i32,
    /// How long the live load runs alone first, for the baseline p99.
    pub baseline: Duration,
    /// Stop writing the history after this long, even if it is smaller than
    /// `history_bytes` (a slow peer); the report has the size written.
    pub write_timeout: Duration,
    /// Give up reading after this long.
    pub read_timeout: Duration,
}

/// The history that was written, and where each partition ends.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    pub topic: String,
    pub records: u64,
    pub bytes: u64,
    pub write_seconds: f64,
    /// End offsets the broker reported once the history was acknowledged.
    pub end_offsets: Vec<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CatchUpReport {
    pub scenario: &'static str,
    pub history: History,
    /// Whether the broker was restarted between writing and reading, so the
    /// history was only in object storage.
    pub cold: bool,
    pub read_records: u64,
    pub read_seconds: f64,
    pub read_mb_per_s: f64,
    /// From the reader's start to its first record: the cold first fetch.
    pub first_record_ms: f64,
    /// History records read in each second of the read.
    pub read_timeline: Vec<u64>,
    /// The live load alone, before the read.
    pub baseline: ProduceReport,
    /// The same live load while the read ran.
    pub during_read: ProduceReport,
    /// during_read p99 / baseline p99.
    pub p99_worsening: f64,
}

/// Phase one: write `history_bytes` to a fresh topic as fast as it goes.
pub async fn write_history(o: &CatchUpOptions) -> anyhow::Result<History> {
    let topic = format!("{}-history", o.load.topic);
    let per_record = o.load.record_size.max(1) as u64;
    let records = o.history_bytes.div_ceil(per_record);
    let w = ProduceOptions {
        topic: topic.clone(),
        partitions: o.history_partitions,
        producers: 1,
        rate: 0,
        limit_records: records,
        // The record limit ends the write; the duration only bounds it.
        duration: o.write_timeout,
        stamp: false,
        stop: None,
        broker_pid: None,
        ..o.load.clone()
    };
    let (r, _) = produce::run(&w).await?;
    anyhow::ensure!(r.failed == 0, "{} history records failed", r.failed);
    let end_offsets = end_offsets(&o.load.bootstrap, &topic, o.history_partitions)?;
    Ok(History {
        topic,
        records: r.acked,
        bytes: r.acked * per_record,
        write_seconds: r.seconds,
        end_offsets,
    })
}

fn end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<Vec<i64>> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    (0..partitions).map(|p| Ok(c.fetch_watermarks(topic, p, Duration::from_secs(10))?.1)).collect()
}

/// Phase two (after the caller made the broker's caches cold): the live
/// load alone, then the live load while a reader consumes the history.
/// Returns the report and the live load's ack latency histograms (µs),
/// before and during the read.
pub async fn read_while_producing(
    o: &CatchUpOptions,
    history: History,
    cold: bool,
) -> anyhow::Result<(CatchUpReport, Histogram<u64>, Histogram<u64>)> {
    let live = ProduceOptions { topic: format!("{}-live", o.load.topic), ..o.load.clone() };
    let (baseline, before) = produce::run(&ProduceOptions { duration: o.baseline, ..live.clone() }).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let during = {
        let live = ProduceOptions { duration: o.read_timeout, stop: Some(stop.clone()), ..live };
        tokio::spawn(async move { produce::run(&live).await })
    };
    // Let the live load reach its rate before the read starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (bootstrap, h, timeout) = (o.load.bootstrap.clone(), history.clone(), o.read_timeout);
    let partitions = o.history_partitions;
    let read = tokio::task::spawn_blocking(move || read_history(&bootstrap, &h, partitions, timeout)).await;
    stop.store(true, Ordering::Release);
    let (during_read, during_hist) = during.await??;
    let read = read??;
    anyhow::ensure!(
        read.records == history.records,
        "read {} of {} history records in {:.1} s",
        read.records,
        history.records,
        read.seconds
    );
    let p99_worsening = during_read.ack_latency.p99_ms / baseline.ack_latency.p99_ms.max(0.001);
    let report = CatchUpReport {
        scenario: "catch-up",
        history,
        cold,
        read_records: read.records,
        read_seconds: read.seconds,
        read_mb_per_s: read.bytes as f64 / read.seconds.max(1e-6) / 1e6,
        first_record_ms: read.first_record_ms,
        read_timeline: read.per_second,
        baseline,
        during_read,
        p99_worsening,
    };
    Ok((report, before, during_hist))
}

struct Read {
    records: u64,
    bytes: u64,
    seconds: f64,
    first_record_ms: f64,
    per_second: Vec<u64>,
}

/// Reads every partition of the history from its start until every
/// history record has been read (or `timeout`).
fn read_history(bootstrap: &str, h: &History, partitions: i32, timeout: Duration) -> anyhow::Result<Read> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("floe-bench-catch-up-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(&h.topic, p, Offset::Beginning)?;
    }
    // Connected before the clock starts: the first record's latency is the
    // broker's cold read, not the client's bootstrap.
    c.fetch_metadata(Some(&h.topic), Duration::from_secs(10))?;
    let started = Instant::now();
    c.assign(&tpl)?;
    // Counted, not bounded by the end offsets: the topic is fresh and only
    // the history was written to it, and a broker's reported end offset may
    // lag what it acknowledged (tansu 0.6.0's does).
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut first = None;
    let mut per_second: Vec<u64> = Vec::new();
    let mut last_progress = Instant::now();
    while records < h.records && started.elapsed() < timeout {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let at = started.elapsed();
                first.get_or_insert(at);
                let second = at.as_secs() as usize;
                if per_second.len() <= second {
                    per_second.resize(second + 1, 0);
                }
                per_second[second] += 1;
                records += 1;
                bytes += m.payload_len() as u64;
                if last_progress.elapsed() > Duration::from_secs(1) {
                    last_progress = Instant::now();
                    eprintln!(
                        "[catch-up] {:>6.1}s read {records}/{} records",
                        started.elapsed().as_secs_f64(),
                        h.records
                    );
                }
            }
            Some(Err(e)) => anyhow::bail!("catch-up reader: {e}"),
            None => {}
        }
    }
    Ok(Read {
        records,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        first_record_ms: first.unwrap_or_default().as_secs_f64() * 1000.0,
        per_second,
    })
}
