//! A quick produce probe (the full benchmark tool is `floe-bench`, its own
//! issue): sends N records of S bytes with acks=all through librdkafka at a
//! bounded in-flight window and prints throughput and ack-latency percentiles.
//!
//!     cargo run --release -p floe-testing --example produce_probe -- 127.0.0.1:9092 200000 1024 [window]

#![allow(clippy::print_stdout)] // a command-line tool: stdout is its output

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let bootstrap = args.get(1).map_or("127.0.0.1:9092", String::as_str).to_string();
    let count: usize = args.get(2).map_or(Ok(100_000), |s| s.parse())?;
    let size: usize = args.get(3).map_or(Ok(1024), |s| s.parse())?;
    let topic = format!("probe-{}", std::process::id());
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("batch.size", "262144")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let payload = vec![b'x'; size];
    // Records in flight: large for throughput, small (e.g. 1) to see the
    // broker's ack latency without client-side queueing.
    let window: usize = args.get(4).map_or(Ok(20_000), |s| s.parse())?;
    let mut pending = std::collections::VecDeque::with_capacity(window);
    let mut latencies = Vec::with_capacity(count);
    let started = Instant::now();
    for i in 0..count {
        let key = i.to_string();
        let sent = Instant::now();
        let fut =
            producer.send_result(FutureRecord::to(&topic).key(&key).payload(&payload)).map_err(|(e, _)| e)?;
        pending.push_back((sent, fut));
        while pending.len() >= window {
            let (sent, fut) = pending.pop_front().expect("non-empty");
            fut.await?.map_err(|(e, _)| e)?;
            latencies.push(sent.elapsed());
        }
    }
    for (sent, fut) in pending {
        fut.await?.map_err(|(e, _)| e)?;
        latencies.push(sent.elapsed());
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{count} records x {size} B in {secs:.2}s: {:.0} rec/s, {:.1} MB/s; ack latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        count as f64 / secs,
        (count * size) as f64 / secs / 1e6,
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*latencies.last().expect("records"))
    );
    Ok(())
}
