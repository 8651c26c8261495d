//! The `produce` scenario: N librdkafka producers, fixed record size, a
//! target rate (or as fast as acks come back), acks and compression as asked;
//! ack latency is measured per record from send to delivery report.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;

use hdrhistogram::Histogram;

use super::{histogram, Latency};

#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub bootstrap: String,
    pub topic: String,
    pub producers: usize,
    pub record_size: usize,
    pub partitions: i32,
    pub acks: String,
    pub compression: String,
    /// Records per second over all producers; 0 = as fast as possible
    /// (bounded by `max_in_flight` per producer).
    pub rate: u64,
    pub duration: Duration,
    pub max_in_flight: usize,
    /// Write the send time (µs since the Unix epoch, big-endian) into each
    /// record's first 8 bytes, for end-to-end latency.
    pub stamp: bool,
    /// Stop after this many records per producer (0 = no limit).
    pub limit_records: u64,
    /// Stop early when this is set (for a background load another phase ends).
    pub stop: Option<Arc<AtomicBool>>,
    /// The broker's process id on this machine, for CPU seconds per GB.
    pub broker_pid: Option<u32>,
    /// Extra librdkafka producer properties (`-X key=value`), applied last.
    pub client_config: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProduceReport {
    pub scenario: &'static str,
    pub producers: usize,
    pub record_size: usize,
    pub partitions: i32,
    pub acks: String,
    pub compression: String,
    pub target_rate: u64,
    pub seconds: f64,
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub records_per_s: f64,
    pub mb_per_s: f64,
    pub ack_latency: Latency,
    /// Broker CPU (user + system) spent during the run, when its pid is known.
    pub broker_cpu_seconds: Option<f64>,
    /// Broker CPU seconds per GB acknowledged.
    pub cpu_seconds_per_gb: Option<f64>,
    /// Records acknowledged in each second of the run.
    pub timeline: Vec<u64>,
}

/// Runs the scenario; returns the report and the ack-latency histogram (µs).
pub async fn run(o: &ProduceOptions) -> anyhow::Result<(ProduceReport, Histogram<u64>)> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &o.bootstrap).create()?;
    let topic = NewTopic::new(&o.topic, o.partitions, TopicReplication::Fixed(1));
    let _ = admin.create_topics(&[topic], &AdminOptions::new()).await?;

    let sent = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(histogram()));
    let cpu_before = o.broker_pid.map(super::cpu::process_seconds).transpose()?;
    let started = Instant::now();
    let deadline = started + o.duration;
    let per_producer_rate = o.rate as f64 / o.producers.max(1) as f64;
    let mut tasks = Vec::new();
    for n in 0..o.producers.max(1) {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &o.bootstrap)
            .set("acks", &o.acks)
            .set("compression.type", &o.compression)
            .set("linger.ms", "1")
            .set("queue.buffering.max.messages", "1000000");
        for (k, v) in &o.client_config {
            config.set(k, v);
        }
        let producer: FutureProducer = config.create()?;
        let (o, sent, acked, failed, hist) =
            (o.clone(), sent.clone(), acked.clone(), failed.clone(), hist.clone());
        tasks.push(tokio::spawn(async move {
            let mut payload = vec![b'x'; o.record_size.max(if o.stamp { 8 } else { 0 })];
            let limiter = Arc::new(tokio::sync::Semaphore::new(o.max_in_flight.max(1)));
            let mut i = 0u64;
            let stopped = || o.stop.as_ref().is_some_and(|s| s.load(Ordering::Acquire));
            while Instant::now() < deadline && !stopped() && (o.limit_records == 0 || i < o.limit_records) {
                if per_producer_rate > 0.0 {
                    let due = started + Duration::from_secs_f64(i as f64 / per_producer_rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let permit = limiter.clone().acquire_owned().await.expect("semaphore open");
                let key = format!("{n}-{i}");
                if o.stamp {
                    payload[..8].copy_from_slice(&super::now_micros().to_be_bytes());
                }
                let t = Instant::now();
                let delivery =
                    match producer.send_result(FutureRecord::to(&o.topic).key(&key).payload(&payload)) {
                        Ok(d) => d,
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                sent.fetch_add(1, Ordering::Relaxed);
                let (acked, failed, hist) = (acked.clone(), failed.clone(), hist.clone());
                tokio::spawn(async move {
                    match delivery.await {
                        Ok(Ok(_)) => {
                            let us = t.elapsed().as_micros().max(1) as u64;
                            let _ = hist.lock().expect("histogram").record(us);
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    drop(permit);
                });
                i += 1;
            }
            // Wait (bounded) for every outstanding delivery report.
            let _ = tokio::time::timeout(
                Duration::from_secs(30),
                limiter.acquire_many(o.max_in_flight.max(1) as u32),
            )
            .await;
        }));
    }
    let timeline = Arc::new(Mutex::new(Vec::new()));
    let progress = {
        let (acked, timeline) = (acked.clone(), timeline.clone());
        tokio::spawn(async move {
            let mut last = 0;
            let mut tick =
                tokio::time::interval_at((started + Duration::from_secs(1)).into(), Duration::from_secs(1));
            loop {
                tick.tick().await;
                let now = acked.load(Ordering::Relaxed);
                eprintln!(
                    "[produce] {:>6.1}s acked {now} (+{}/s)",
                    started.elapsed().as_secs_f64(),
                    now - last
                );
                timeline.lock().expect("timeline").push(now - last);
                last = now;
            }
        })
    };
    for t in tasks {
        t.await?;
    }
    progress.abort();
    let mut timeline = timeline.lock().expect("timeline").clone();
    let counted: u64 = timeline.iter().sum();
    timeline.push(acked.load(Ordering::Relaxed) - counted);
    let seconds = started.elapsed().as_secs_f64();
    let (sent, acked, failed) =
        (sent.load(Ordering::Relaxed), acked.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let hist = hist.lock().expect("histogram").clone();
    let ack_latency = Latency::from_micros(&hist);
    let broker_cpu_seconds = match (o.broker_pid, cpu_before) {
        (Some(pid), Some(before)) => Some(super::cpu::process_seconds(pid)? - before),
        _ => None,
    };
    let gb = acked as f64 * o.record_size as f64 / 1e9;
    let report = ProduceReport {
        scenario: "produce",
        producers: o.producers,
        record_size: o.record_size,
        partitions: o.partitions,
        acks: o.acks.clone(),
        compression: o.compression.clone(),
        target_rate: o.rate,
        seconds,
        sent,
        acked,
        failed,
        records_per_s: acked as f64 / seconds,
        mb_per_s: (acked as f64 * o.record_size as f64) / seconds / 1e6,
        ack_latency,
        broker_cpu_seconds,
        cpu_seconds_per_gb: broker_cpu_seconds.filter(|_| gb > 0.0).map(|c| c / gb),
        timeline,
    };
    Ok((report, hist))
}
