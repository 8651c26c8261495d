//! floe-bench: run a benchmark scenario against any Kafka-compatible address,
//! print a table and write the figures as JSON.
//!
//!     floe-bench limits --dir /var/lib/floe
//!     floe-bench produce --bootstrap 127.0.0.1:9092 --producers 2 --record-size 1024 --rate 0 --duration-secs 10
//!     floe-bench compare --targets floe,tansu --out bench-results --json bench-results/compare.json
//!     floe-bench --json cluster-local.json cluster --s3 local --out bench-results
//!     floe-bench --json long-run.json --svg long-run.svg long-run --minutes 20

#![allow(clippy::print_stdout)] // a command-line tool: stdout is its report

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use floe_testing::bench::catch_up::{self, CatchUpOptions};
use floe_testing::bench::chart::{self, Series};
use floe_testing::bench::cluster::{self, ClusterOptions};
use floe_testing::bench::compare::{self, CompareOptions, S3Latency};
use floe_testing::bench::long_run::{self, LongRunOptions};
use floe_testing::bench::target::{Kind, TargetSpec};
use floe_testing::bench::{end_to_end, history, limits, produce, table, upload_cost, Latency};
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
    /// Write a history, (optionally) restart the broker so it is only in
    /// object storage, then read it while a live load of --rate records/s
    /// runs; read MB/s and the live load's p99 before and during the read.
    CatchUp {
        #[arg(long, default_value_t = 256)]
        history_mb: u64,
        /// Run through `sh -c` between writing and reading, to make the
        /// broker's caches cold (e.g. "systemctl restart floe"). Without it
        /// the read may be served from memory, and the report says so.
        #[arg(long)]
        restart_cmd: Option<String>,
        #[command(flatten)]
        load: ProduceArgs,
    },
    /// Object-store requests per second and per GB, and the monthly request
    /// bill, for several partition counts (starts its own broker per count,
    /// behind a counting proxy in front of UPSTREAM; AWS_* credentials from
    /// the environment).
    UploadCost {
        #[command(flatten)]
        s3: S3Args,
        #[arg(long, value_enum, default_value = "floe")]
        target: Kind,
        #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
        partition_counts: Vec<i32>,
        #[command(flatten)]
        load: ProduceArgs,
    },
    /// One Floe broker with many partitions, frequent uploads and a light
    /// load under a time retention, for many minutes: samples its RSS, CPU,
    /// metadata size and bucket, and compares the last sample with the first
    /// after warm-up (they should stay flat). Objects go to S3 (AWS_* from
    /// the environment) or to --local-dir.
    LongRun(LongRunArgs),
    /// What a long history costs after compaction: the GETs of a cold
    /// catch-up read of one partition's history, and the time to load the
    /// metadata of many partitions with many uploads each (starts its own
    /// brokers behind a counting proxy in front of UPSTREAM).
    History {
        #[arg(long, default_value = "127.0.0.1:8333")]
        upstream: std::net::SocketAddr,
        #[arg(long, env = "FLOE_TEST_BUCKET", default_value = "floe-test")]
        bucket: String,
        /// The catch-up read's history, in MB of record values.
        #[arg(long, default_value_t = 1024)]
        history_mb: u64,
        /// How fast the history is written (slowly: many small uploads).
        #[arg(long, default_value_t = 20.0)]
        history_mb_per_s: f64,
        /// The catch-up broker's upload interval.
        #[arg(long, default_value_t = 50)]
        upload_interval_ms: u64,
        /// Partitions of the metadata history (0: skip that part; --history-mb 0 skips the other).
        #[arg(long, default_value_t = 10_000)]
        partitions: i32,
        /// Uploads in the metadata history (one range per partition each).
        #[arg(long, default_value_t = 30)]
        rounds: u32,
        #[arg(long, default_value_t = 1000)]
        compaction_interval_ms: u64,
    },
    /// The limits, then every scenario against each target at each S3
    /// latency, in one run: a table of ratios, JSON (--json), and pictures
    /// in --out.
    Compare(CompareArgs),
    /// A cluster of floe processes on the S3 server behind the latency
    /// proxy: partition moves under load, failover after SIGKILL, a new
    /// broker, a drain, and produce throughput with 1, 2 and 3 brokers; each
    /// against its goal (AWS_* from the environment).
    Cluster(ClusterArgs),
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
struct S3Args {
    /// The S3 server the brokers use (behind the counting/latency proxy).
    #[arg(long, default_value = "127.0.0.1:8333")]
    upstream: std::net::SocketAddr,
    #[arg(long, env = "FLOE_TEST_BUCKET", default_value = "floe-test")]
    bucket: String,
    /// The peer's binary (`bash testing/scripts/tansu.sh install` puts it in .floe-test/bin).
    #[arg(long, env = "FLOE_BENCH_TANSU")]
    tansu_bin: Option<PathBuf>,
}

impl S3Args {
    fn spec(&self, kind: Kind) -> TargetSpec {
        TargetSpec { kind, tansu_bin: self.tansu_bin.clone(), bucket: self.bucket.clone() }
    }
}

#[derive(clap::Args)]
struct CompareArgs {
    #[command(flatten)]
    s3: S3Args,
    #[arg(long, value_enum, value_delimiter = ',', default_value = "floe,tansu")]
    targets: Vec<Kind>,
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "produce,end-to-end,catch-up,upload-cost"
    )]
    scenarios: Vec<compare::Scenario>,
    /// The "real" latency added to each S3 request: median and p99, in ms
    /// (S3 standard is about 30 and 100). "local" adds nothing.
    #[arg(long, default_value_t = 30)]
    real_median_ms: u64,
    #[arg(long, default_value_t = 100)]
    real_p99_ms: u64,
    /// Which latencies to run at.
    #[arg(long, value_delimiter = ',', default_value = "local,real")]
    s3_latencies: Vec<String>,
    /// The producers' settings for every scenario.
    #[command(flatten)]
    load: LoadArgs,
    #[arg(long, default_value_t = 5_000)]
    e2e_rate: u64,
    #[arg(long, default_value_t = 5_000)]
    live_rate: u64,
    #[arg(long, default_value_t = 256)]
    history_mb: u64,
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    cost_partitions: Vec<i32>,
    #[arg(long, default_value_t = 5_000)]
    cost_rate: u64,
    /// Where the limits are measured; the brokers' WALs are under the
    /// system temporary directory, so that is the default.
    #[arg(long)]
    limits_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 2000)]
    limits_small_writes: usize,
    #[arg(long, default_value_t = 256)]
    limits_large_mib: usize,
    /// Directory for the pictures (one per scenario and latency) and table.txt.
    #[arg(long)]
    out: Option<PathBuf>,
}

impl CompareArgs {
    fn options(self) -> anyhow::Result<CompareOptions> {
        let latencies = self
            .s3_latencies
            .iter()
            .map(|l| match l.as_str() {
                "local" => Ok(S3Latency { label: "local".into(), median_ms: 0, p99_ms: 0 }),
                "real" => Ok(S3Latency {
                    label: "real".into(),
                    median_ms: self.real_median_ms,
                    p99_ms: self.real_p99_ms,
                }),
                other => anyhow::bail!("unknown S3 latency {other:?}: local or real"),
            })
            .collect::<anyhow::Result<_>>()?;
        let load = self.load.options(String::new(), "bench".into(), 0, None);
        Ok(CompareOptions {
            targets: self.targets.iter().map(|k| self.s3.spec(*k)).collect(),
            latencies,
            scenarios: self.scenarios,
            upstream: self.s3.upstream,
            load,
            e2e_rate: self.e2e_rate,
            live_rate: self.live_rate,
            history_bytes: self.history_mb << 20,
            cost_partitions: self.cost_partitions,
            cost_rate: self.cost_rate,
            limits_dir: self.limits_dir.unwrap_or_else(std::env::temp_dir),
            limits_small_writes: self.limits_small_writes,
            limits_large_mib: self.limits_large_mib,
            out: self.out,
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum S3Mode {
    /// The proxy adds nothing to the local S3 server's latency.
    Local,
    /// The proxy adds --real-median-ms / --real-p99-ms per request.
    Real,
}

#[derive(clap::Args)]
struct ClusterArgs {
    /// The S3 server the brokers use (behind the latency proxy).
    #[arg(long, default_value = "127.0.0.1:8333")]
    upstream: std::net::SocketAddr,
    #[arg(long, env = "FLOE_TEST_BUCKET", default_value = "floe-test")]
    bucket: String,
    #[arg(long, value_enum, default_value = "local")]
    s3: S3Mode,
    #[arg(long, default_value_t = 30)]
    real_median_ms: u64,
    #[arg(long, default_value_t = 100)]
    real_p99_ms: u64,
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "moves,failover,new-broker,drain,throughput"
    )]
    parts: Vec<cluster::Part>,
    /// The moved partition's history, in MB; one run per size.
    #[arg(long, value_delimiter = ',', default_value = "1,1024")]
    history_mb: Vec<u64>,
    /// Moves per history size, back and forth between the two brokers.
    #[arg(long, default_value_t = 20)]
    moves: usize,
    /// The steady idempotent load (records/s) under moves, failovers, the
    /// new broker and the drain.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Failovers, each on a fresh three-broker cluster.
    #[arg(long, default_value_t = 3)]
    failovers: usize,
    #[arg(long, default_value_t = 1000)]
    drain_partitions: i32,
    /// Broker counts for the max-rate produce runs.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    throughput_brokers: Vec<i32>,
    #[arg(long, default_value_t = 6)]
    throughput_partitions: i32,
    #[arg(long, default_value_t = 2)]
    throughput_producers: usize,
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// How long each throughput run lasts.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// A librdkafka producer property for every load (repeatable).
    #[arg(short = 'X', value_parser = key_value)]
    client_config: Vec<(String, String)>,
    /// A flag for every broker, e.g. `--broker-arg=--upload-interval-ms=200` (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    broker_arg: Vec<String>,
    /// Directory for the pictures and cluster-table-<s3>.txt.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep every broker's log in this directory (run with FLOE_LOG=debug
    /// for the most detail).
    #[arg(long)]
    keep_logs: Option<PathBuf>,
}

impl ClusterArgs {
    fn options(self) -> ClusterOptions {
        let s3 = match self.s3 {
            S3Mode::Local => S3Latency { label: "local".into(), median_ms: 0, p99_ms: 0 },
            S3Mode::Real => {
                S3Latency { label: "real".into(), median_ms: self.real_median_ms, p99_ms: self.real_p99_ms }
            }
        };
        let load = LoadArgs {
            producers: self.throughput_producers,
            record_size: self.record_size,
            partitions: self.throughput_partitions,
            acks: "all".into(),
            compression: "none".into(),
            duration_secs: self.duration_secs,
            max_in_flight: 10_000,
            client_config: self.client_config,
        }
        .options(String::new(), "cluster".into(), 0, None);
        ClusterOptions {
            s3,
            upstream: self.upstream,
            bucket: self.bucket,
            parts: self.parts,
            history_mb: self.history_mb,
            moves: self.moves,
            rate: self.rate,
            failovers: self.failovers,
            drain_partitions: self.drain_partitions,
            throughput_brokers: self.throughput_brokers,
            load,
            broker_args: self.broker_arg,
            keep_logs: self.keep_logs,
        }
    }
}

#[derive(clap::Args)]
struct LongRunArgs {
    /// The bucket for the broker's objects (a fresh prefix in it).
    #[arg(long, env = "FLOE_TEST_BUCKET", default_value = "floe-test")]
    bucket: String,
    /// Keep the objects in a fresh directory under DIR instead of S3.
    #[arg(long)]
    local_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 1000)]
    partitions: i32,
    /// Records per second, over all partitions.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// How long the load runs.
    #[arg(long, default_value_t = 20.0)]
    minutes: f64,
    #[arg(long, default_value_t = 30.0)]
    sample_seconds: f64,
    /// The topic's retention.ms: what bounds the live data.
    #[arg(long, default_value_t = 300_000)]
    retention_ms: u64,
    #[arg(long, default_value_t = 100)]
    upload_interval_ms: u64,
    #[arg(long, default_value_t = 10_000)]
    log_retention_check_interval_ms: u64,
    #[arg(long, default_value_t = 10_000)]
    object_delete_delay_ms: u64,
    /// The broker's compaction interval (its default when absent; 0 turns
    /// compaction off, to see the behaviour without it).
    #[arg(long)]
    compaction_interval_ms: Option<u64>,
    /// A further broker flag, e.g. `--broker-arg=--upload-bytes=1048576` (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    broker_arg: Vec<String>,
    /// A librdkafka producer property (repeatable).
    #[arg(short = 'X', value_parser = key_value)]
    client_config: Vec<(String, String)>,
    /// Copy the broker's log here when the run ends.
    #[arg(long)]
    keep_log: Option<PathBuf>,
}

impl LongRunArgs {
    fn options(self) -> anyhow::Result<LongRunOptions> {
        anyhow::ensure!(
            self.minutes > 0.0 && self.sample_seconds > 0.0,
            "--minutes and --sample-seconds must be positive"
        );
        // Unique per run, so a run never reads an earlier one's metadata.
        let run = format!(
            "long-run-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs()
        );
        let object_store = match &self.local_dir {
            Some(dir) => format!("file://{}", std::path::absolute(dir)?.join(&run).display()),
            None => format!("s3://{}/{run}", self.bucket),
        };
        Ok(LongRunOptions {
            object_store,
            partitions: self.partitions,
            rate: self.rate,
            record_size: self.record_size,
            duration: Duration::from_secs_f64(self.minutes * 60.0),
            sample_every: Duration::from_secs_f64(self.sample_seconds),
            retention_ms: self.retention_ms,
            upload_interval_ms: self.upload_interval_ms,
            retention_check_interval_ms: self.log_retention_check_interval_ms,
            object_delete_delay_ms: self.object_delete_delay_ms,
            compaction_interval_ms: self.compaction_interval_ms,
            broker_args: self.broker_arg,
            client_config: self.client_config,
            keep_log: self.keep_log,
        })
    }
}

#[derive(clap::Args)]
struct ProduceArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "floe-bench")]
    topic: String,
    /// Records per second over all producers; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// The broker's pid on this machine, to report its CPU seconds per GB.
    #[arg(long)]
    broker_pid: Option<u32>,
    #[command(flatten)]
    load: LoadArgs,
}

/// How the producers send, shared by the single scenarios and `compare`.
#[derive(clap::Args)]
struct LoadArgs {
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
    /// How long each timed run lasts.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
    /// A librdkafka producer property, as in kcat (repeatable), e.g.
    /// `-X linger.ms=5 -X socket.nagle.disable=true`.
    #[arg(short = 'X', value_parser = key_value)]
    client_config: Vec<(String, String)>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

impl ProduceArgs {
    fn options(self) -> produce::ProduceOptions {
        self.load.options(self.bootstrap, self.topic, self.rate, self.broker_pid)
    }
}

impl LoadArgs {
    fn options(
        self,
        bootstrap: String,
        topic: String,
        rate: u64,
        broker_pid: Option<u32>,
    ) -> produce::ProduceOptions {
        produce::ProduceOptions {
            bootstrap,
            topic,
            producers: self.producers,
            record_size: self.record_size,
            partitions: self.partitions,
            acks: self.acks,
            compression: self.compression,
            rate,
            duration: Duration::from_secs(self.duration_secs),
            max_in_flight: self.max_in_flight,
            stamp: false,
            limit_records: 0,
            stop: None,
            broker_pid,
            client_config: self.client_config,
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
    if let (Some(cpu), Some(per_gb)) = (r.broker_cpu_seconds, r.cpu_seconds_per_gb) {
        println!("  broker CPU {cpu:.2} s, {per_gb:.2} s per GB");
    }
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
                let series = [Series { name: "floe-bench", latency_us: &hist, per_second: &r.timeline }];
                std::fs::write(path, chart::svg(&title, &series, "acks"))?;
            }
            serde_json::to_string_pretty(&r)?
        }
        Scenario::UploadCost { s3, target, partition_counts, load } => {
            let proxy = LatencyProxy::start("127.0.0.1:0".parse()?, s3.upstream, Delay::NONE).await?;
            let run_id = format!("upload-cost-{}", std::process::id());
            let (r, runs) =
                upload_cost::run(&s3.spec(target), &proxy, &partition_counts, &load.options(), &run_id)
                    .await?;
            if let Some(path) = &cli.svg {
                let names: Vec<String> =
                    runs.iter().map(|c| format!("{} partitions", c.partitions)).collect();
                let series: Vec<Series<'_>> = runs
                    .iter()
                    .zip(&names)
                    .map(|(c, name)| Series { name, latency_us: &c.latency_us, per_second: &c.per_second })
                    .collect();
                let title =
                    format!("upload-cost: {}, {} B records at {}/s", target.name(), r.record_size, r.rate);
                std::fs::write(path, chart::svg(&title, &series, "acks"))?;
            }
            println!("upload-cost: {}, {} B records at {}/s", target.name(), r.record_size, r.rate);
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
        Scenario::CatchUp { history_mb, restart_cmd, load } => {
            anyhow::ensure!(load.rate > 0, "catch-up needs --rate > 0: the live load's records per second");
            let c = CatchUpOptions {
                history_bytes: history_mb << 20,
                history_partitions: load.load.partitions,
                baseline: Duration::from_secs(load.load.duration_secs),
                write_timeout: Duration::from_secs(600),
                read_timeout: Duration::from_secs(600),
                load: load.options(),
            };
            let history = catch_up::write_history(&c).await?;
            eprintln!("[catch-up] wrote {} records in {:.1} s", history.records, history.write_seconds);
            let cold = match &restart_cmd {
                Some(cmd) => {
                    let status = std::process::Command::new("sh").arg("-c").arg(cmd).status()?;
                    anyhow::ensure!(status.success(), "--restart-cmd exited with {status}");
                    true
                }
                None => {
                    eprintln!("[catch-up] no --restart-cmd: the history may still be in the broker's memory");
                    false
                }
            };
            let (r, before, during) = catch_up::read_while_producing(&c, history, cold).await?;
            if let Some(path) = &cli.svg {
                let title = format!(
                    "catch-up: live acks before and during the read, {} B records",
                    r.history.bytes / r.history.records.max(1)
                );
                let series = [
                    Series { name: "during read", latency_us: &during, per_second: &r.read_timeline },
                    Series { name: "before", latency_us: &before, per_second: &[] },
                ];
                std::fs::write(path, chart::svg(&title, &series, "history records read"))?;
            }
            println!(
                "catch-up: {:.0} MB history ({} caches), live load {}/s",
                r.history.bytes as f64 / 1e6,
                if r.cold { "cold" } else { "possibly warm" },
                r.baseline.target_rate
            );
            println!(
                "  read {} records in {:.2} s: {:.1} MB/s, first record after {:.1} ms",
                r.read_records, r.read_seconds, r.read_mb_per_s, r.first_record_ms
            );
            row("live acks before read", &r.baseline.ack_latency);
            row("live acks during read", &r.during_read.ack_latency);
            println!("  p99 worsened {:.2}x", r.p99_worsening);
            serde_json::to_string_pretty(&r)?
        }
        Scenario::LongRun(args) => {
            let r = long_run::run(&args.options()?).await?;
            println!("{}", long_run::render(&r));
            if let Some(path) = &cli.svg {
                let title = format!(
                    "long-run: {} partitions, {}/s, retention {} s, uploads every {} ms",
                    r.partitions,
                    r.rate,
                    r.retention_ms / 1000,
                    r.upload_interval_ms
                );
                std::fs::write(path, chart::over_time(&title, &long_run::panels(&r)))?;
            }
            serde_json::to_string_pretty(&r)?
        }
        Scenario::History {
            upstream,
            bucket,
            history_mb,
            history_mb_per_s,
            upload_interval_ms,
            partitions,
            rounds,
            compaction_interval_ms,
        } => {
            let run_id = format!(
                "history-{}-{}",
                std::process::id(),
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs()
            );
            let o = history::HistoryOptions {
                upstream,
                bucket,
                run_id,
                history_mb,
                history_mb_per_s,
                upload_interval_ms,
                partitions,
                rounds,
                compaction_interval_ms,
            };
            let r = history::run(&o).await?;
            println!("{}", history::render(&r));
            serde_json::to_string_pretty(&r)?
        }
        Scenario::Compare(args) => {
            let o = args.options()?;
            let r = compare::run(&o).await?;
            let text = table::render(&r);
            println!("{text}");
            if let Some(dir) = &o.out {
                std::fs::write(dir.join("table.txt"), &text)?;
            }
            serde_json::to_string_pretty(&r)?
        }
        Scenario::Cluster(args) => {
            let out = args.out.clone();
            let o = args.options();
            let (r, pictures) = cluster::run(&o).await?;
            let text = cluster::render(&r);
            println!("{text}");
            if let Some(dir) = &out {
                std::fs::create_dir_all(dir)?;
                std::fs::write(dir.join(format!("cluster-table-{}.txt", o.s3.label)), &text)?;
                for p in &pictures {
                    std::fs::write(dir.join(&p.file), &p.svg)?;
                }
            }
            if let (Some(path), Some(p)) = (&cli.svg, pictures.first()) {
                std::fs::write(path, &p.svg)?;
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
                let series =
                    [Series { name: "floe-bench", latency_us: &hist, per_second: &r.produce.timeline }];
                std::fs::write(path, chart::svg(&title, &series, "acks"))?;
            }
            serde_json::to_string_pretty(&r)?
        }
    };
    if let Some(path) = cli.json {
        std::fs::write(&path, json + "\n")?;
    }
    Ok(())
}
