//! floe-bench: run a benchmark scenario against any Kafka-compatible address,
//! print a table and write the figures as JSON.
//!
//!     floe-bench limits --dir /var/lib/floe
//!     floe-bench produce --bootstrap 127.0.0.1:9092 --producers 2 --record-size 1024 --rate 0 --duration-secs 10

#![allow(clippy::print_stdout)] // a command-line tool: stdout is its report

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use floe_testing::bench::{chart, end_to_end, limits, produce, upload_cost, Latency};
use floe_testing::s3_proxy::{Delay, LatencyProxy};

#[derive(Parser)]
#[command(name = "floe-bench", about = "Benchmarks for Floe and other Kafka-compatible brokers")]
struct Cli {
    /// Also write the report as JSON here.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Also draw the run (latency distribution, throughput over time) as SVG here.
    #[arg(long, global = true)]
    svg: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// The machine's floor: O_DIRECT+fdatasync on DIR's disk, loopback round trip.
    Limits {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, default_value_t = 2000)]
        small_writes: usize,
        #[arg(long, default_value_t = 256)]
        large_mib: usize,
        #[arg(long, default_value_t = 10_000)]
        round_trips: usize,
    },
    /// Producers at a target rate (0 = max); ack latency per record.
    Produce(ProduceArgs),
    /// Produce at a target rate and tail-consume; end-to-end latency per record.
    EndToEnd(ProduceArgs),
    /// Object-store requests per second and per GB, and the monthly request
    /// bill, for several partition counts (starts its own Floe per count,
    /// behind a counting proxy in front of UPSTREAM; AWS_* credentials from
    /// the environment).
    UploadCost {
        #[arg(long, default_value = "127.0.0.1:8333")]
        upstream: std::net::SocketAddr,
        #[arg(long, default_value = "floe-test")]
        bucket: String,
        #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
        partition_counts: Vec<i32>,
        #[command(flatten)]
        load: ProduceArgs,
    },
    /// Serve an S3 latency proxy until Ctrl-C, printing request counts each second.
    S3Proxy {
        #[arg(long, default_value = "127.0.0.1:8334")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value = "127.0.0.1:8333")]
        upstream: std::net::SocketAddr,
        /// Median delay added per request, in ms (real S3 standard: ~30).
        #[arg(long, default_value_t = 30)]
        median_ms: u64,
        /// 99th-percentile delay per request, in ms (real S3 standard: ~100).
        #[arg(long, default_value_t = 100)]
        p99_ms: u64,
    },
}

#[derive(clap::Args)]
struct ProduceArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "floe-bench")]
    topic: String,
    #[arg(long, default_value_t = 1)]
    producers: usize,
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    #[arg(long, default_value = "all")]
    acks: String,
    #[arg(long, default_value = "none")]
    compression: String,
    /// Records per second over all producers; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
}

impl ProduceArgs {
    fn options(self) -> produce::ProduceOptions {
        produce::ProduceOptions {
            bootstrap: self.bootstrap,
            topic: self.topic,
            producers: self.producers,
            record_size: self.record_size,
            partitions: self.partitions,
            acks: self.acks,
            compression: self.compression,
            rate: self.rate,
            duration: Duration::from_secs(self.duration_secs),
            max_in_flight: self.max_in_flight,
            stamp: false,
        }
    }
}

fn print_produce(r: &produce::ProduceReport) {
    println!(
        "produce: {} producers, {} B records, {} partitions, acks={}, {}, rate {}",
        r.producers,
        r.record_size,
        r.partitions,
        r.acks,
        r.compression,
        if r.target_rate == 0 { "max".to_string() } else { format!("{}/s", r.target_rate) }
    );
    println!("  sent {} acked {} failed {} in {:.2} s", r.sent, r.acked, r.failed, r.seconds);
    println!("  {:.0} records/s, {:.1} MB/s", r.records_per_s, r.mb_per_s);
    row("ack latency", &r.ack_latency);
}

fn row(name: &str, l: &Latency) {
    println!(
        "  {name:<24} p50 {:>8.3} ms  p99 {:>8.3} ms  p99.9 {:>8.3} ms  max {:>8.3} ms  (n={})",
        l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let json = match cli.scenario {
        Scenario::S3Proxy { listen, upstream, median_ms, p99_ms } => {
            let delay =
                Delay { median: Duration::from_millis(median_ms), p99: Duration::from_millis(p99_ms) };
            let proxy = LatencyProxy::start(listen, upstream, delay).await?;
            println!(
                "s3 latency proxy on {} -> {upstream}, median {median_ms} ms, p99 {p99_ms} ms",
                proxy.addr
            );
            let started = std::time::Instant::now();
            let mut last = proxy.counts.snapshot();
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                let now = proxy.counts.snapshot();
                if now != last {
                    println!("  {:>6.0}s {now:?}", started.elapsed().as_secs_f64());
                    last = now;
                }
            }
            serde_json::to_string_pretty(&proxy.counts.snapshot())?
        }
        Scenario::Limits { dir, small_writes, large_mib, round_trips } => {
            let l = limits::measure(&dir, small_writes, large_mib, round_trips)?;
            println!("limits ({})", dir.display());
            row("4 KiB O_DIRECT+fdatasync", &l.fsync_4k);
            println!("  {:<24} {:.1} MB/s", "1 MiB durable writes", l.durable_write_mb_per_s);
            row("loopback round trip", &l.loopback_rtt);
            serde_json::to_string_pretty(&l)?
        }
        Scenario::Produce(args) => {
            let (r, hist) = produce::run(&args.options()).await?;
            print_produce(&r);
            if let Some(path) = &cli.svg {
                let title = format!(
                    "produce: {} B records, acks={}, {} producers, {} partitions",
                    r.record_size, r.acks, r.producers, r.partitions
                );
                std::fs::write(path, chart::svg(&title, &hist, &r.timeline, "acks"))?;
            }
            serde_json::to_string_pretty(&r)?
        }
        Scenario::UploadCost { upstream, bucket, partition_counts, load } => {
            let r = upload_cost::run(upstream, &bucket, &partition_counts, &load.options()).await?;
            println!("upload-cost: {} B records at {}/s", r.record_size, r.rate);
            println!(
                "  {:>10} {:>9} {:>9} {:>10} {:>9} {:>14}",
                "partitions", "MB", "PUT/s", "PUT/GB", "GET/s", "$/month (req)"
            );
            for row in &r.rows {
                println!(
                    "  {:>10} {:>9.1} {:>9.2} {:>10.1} {:>9.2} {:>14.2}",
                    row.partitions,
                    row.mb_written,
                    row.puts_per_s,
                    row.puts_per_gb,
                    row.gets_per_s,
                    row.monthly_request_bill
                );
            }
            serde_json::to_string_pretty(&r)?
        }
        Scenario::EndToEnd(args) => {
            let (r, hist) = end_to_end::run(&args.options()).await?;
            print_produce(&r.produce);
            println!("  consumed {} (duplicates {})", r.consumed, r.duplicates);
            row("end-to-end latency", &r.end_to_end);
            if let Some(path) = &cli.svg {
                let title = format!(
                    "end-to-end: {} B records, rate {}/s",
                    r.produce.record_size, r.produce.target_rate
                );
                std::fs::write(path, chart::svg(&title, &hist, &r.produce.timeline, "acks"))?;
            }
            serde_json::to_string_pretty(&r)?
        }
    };
    if let Some(path) = cli.json {
        std::fs::write(&path, json + "\n")?;
    }
    Ok(())
}
