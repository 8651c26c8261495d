//! The `cluster` scenario: what running several brokers costs a client.
//! Each part starts its own cluster of `floe` processes on a fresh prefix of
//! the S3 bucket, reached through the latency proxy, and drives it with the
//! `floe cluster` commands an operator would use:
//!
//! - **moves**: two brokers, one partition with a history of N MB, a steady
//!   idempotent load on it (acks=all), and `floe cluster move` back and
//!   forth. Per move: the time from the command to the first record
//!   acknowledged by the new leader, the longest stretch without an ack,
//!   and the longest send-to-ack latency of a record caught in the move;
//! - **failover**: three brokers, SIGKILL of a loaded partition's owner (not
//!   the controller): the time to the first ack served by another broker;
//! - **new broker**: the time from a new broker's start to the first ack of
//!   a partition the balancer gave it;
//! - **drain**: a thousand partitions over two brokers, `floe cluster drain
//!   1`: the time until broker 1 owns nothing;
//! - **throughput**: the max produce rate with 1, 2 and 3 brokers.
//!
//! Which broker acknowledged a record is told by its offset: a new owner
//! opens the stream at the committed end E that its log names ("serving
//! stream ... end_offset=E"), and the old owner acknowledged only offsets
//! below E. The brokers' logs also say when each step happened (the
//! release, the fencing, the WAL recovery), which splits every window into
//! its steps.

mod logs;
mod parts;
mod probe;

pub use logs::render;
use logs::*;
use parts::*;
use probe::*;

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use serde::Serialize;

use super::chart::{self, Series};
use super::compare::S3Latency;
use super::produce::{self, ProduceOptions};
use super::{histogram, now_micros, Latency};
use crate::cluster::Cluster;
use crate::s3_proxy::{Delay, LatencyProxy};
use crate::ObjectStore;

/// Goals shown beside the figures (not asserted anywhere).
pub const MOVE_P99_LOCAL_MS: f64 = 300.0;
pub const MOVE_P99_REAL_MS: f64 = 1_000.0;
pub const FAILOVER_MS: f64 = 10_000.0;
pub const NEW_BROKER_MS: f64 = 5_000.0;
pub const DRAIN_MS: f64 = 10_000.0;

/// How long one step (a move, a failover, a drain) may take before the run
/// counts it as timed out.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Steady load after each event, before the next one (and the span after
/// the first new ack in which caught records still count).
const SETTLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    Moves,
    Failover,
    NewBroker,
    Drain,
    Throughput,
}

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub s3: S3Latency,
    /// The S3 server, behind a latency proxy for every broker and command.
    pub upstream: SocketAddr,
    pub bucket: String,
    pub parts: Vec<Part>,
    /// History sizes for the moves, in MB (MiB).
    pub history_mb: Vec<u64>,
    /// Moves per history size.
    pub moves: usize,
    /// The steady idempotent load (records/s) during moves, failovers, the
    /// new broker and the drain.
    pub rate: u64,
    pub failovers: usize,
    pub drain_partitions: i32,
    pub throughput_brokers: Vec<i32>,
    /// Record size, -X client properties and compression for every load;
    /// producers, partitions, acks and duration for the throughput runs.
    pub load: ProduceOptions,
    /// Extra flags for every broker (e.g. `--upload-interval-ms=200`).
    pub broker_args: Vec<String>,
    /// Keep every broker's log here (`<part>-broker-<id>.log`), for finding
    /// out where the time went (with FLOE_LOG=debug for the most detail).
    pub keep_logs: Option<PathBuf>,
}

/// Percentiles of a few samples, in ms (nearest rank: with 20 samples the
/// p99 is the largest).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub n: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Stats {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let rank = |q: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
        };
        Self { n: v.len(), p50_ms: rank(0.5), p99_ms: rank(0.99), max_ms: v.last().copied().unwrap_or(0.0) }
    }
}

/// One `floe cluster move`, in ms from the moment the command was started.
#[derive(Debug, Clone, Serialize)]
pub struct MoveSample {
    pub from: i32,
    pub to: i32,
    /// Command to the first record acknowledged by the new leader.
    pub window_ms: f64,
    /// The command's own run time (process start, lease lookup, the call).
    pub cli_ms: f64,
    /// When the old owner logged "stream released", and how long its
    /// release took by its own account (seal, upload, commit, release).
    pub released_at_ms: Option<f64>,
    pub release_ms: Option<f64>,
    /// When the new owner logged "serving stream".
    pub serving_at_ms: f64,
    /// The longest stretch without an ack of the partition, from the last
    /// ack before the command to the first ack of the new leader.
    pub max_ack_gap_ms: f64,
    /// The longest send-to-ack latency of a record acknowledged between the
    /// command and a second after the new leader's first ack.
    pub max_ack_latency_ms: f64,
    /// Where the new leader took over.
    pub end_offset: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MoveRun {
    pub history_mb: u64,
    pub history_records: u64,
    pub history_seconds: f64,
    /// Bytes of the history not yet committed when its last record was
    /// acknowledged (records × record size), and how long the moves waited
    /// for them to be committed.
    pub history_upload_lag_bytes: u64,
    pub history_upload_wait_ms: f64,
    pub target_p99_ms: f64,
    pub window: Stats,
    pub max_ack_gap: Stats,
    pub max_ack_latency: Stats,
    /// The window split into its steps: the command to the owner starting
    /// its release (the command's run, the move written to the metadata log
    /// and sent to the owner); the release to the new owner serving (seal,
    /// upload, commit, release, the new assignment sent to the new owner);
    /// serving to the client's first ack there.
    pub to_release_start: Stats,
    pub release_to_serving: Stats,
    pub serving_to_first_ack: Stats,
    /// The command's own run time, and the owner's account of its release
    /// (which ends once it has seen the new assignment itself).
    pub cli: Stats,
    pub release: Stats,
    pub moves: Vec<MoveSample>,
    /// Moves not finished within the step timeout (not in the figures).
    pub timeouts: usize,
    /// Records the load gave up on (retriable errors only are expected: 0).
    pub failed: u64,
    pub probe_ack_latency: Latency,
    pub acks_per_second: Vec<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailoverSample {
    pub victim: i32,
    pub controller: i32,
    pub partition: i32,
    pub new_owner: i32,
    /// SIGKILL to the first ack of the partition from another broker.
    pub failover_ms: f64,
    /// SIGKILL to the controller fencing the victim, to the victim's WAL
    /// recovered by a peer, to the new owner serving.
    pub fenced_ms: Option<f64>,
    pub recovered_ms: Option<f64>,
    pub serving_ms: f64,
    pub max_ack_latency_ms: f64,
    pub failed: u64,
    pub acks_per_second: Vec<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    pub target_ms: f64,
    pub failover: Stats,
    pub fenced: Stats,
    pub recovered: Stats,
    pub serving: Stats,
    pub runs: Vec<FailoverSample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewBrokerReport {
    pub target_ms: f64,
    /// Process start to the first ack of a partition the balancer gave it.
    pub first_ack_ms: f64,
    /// Process start to "floe is serving Kafka", and to its first
    /// "serving stream".
    pub ready_ms: f64,
    pub assigned_ms: f64,
    pub partition: i32,
    /// Partitions of the topic it serves a few seconds later.
    pub partitions_given: usize,
    pub topic_partitions: i32,
    pub max_ack_latency_ms: f64,
    pub failed: u64,
    pub acks_per_second: Vec<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrainReport {
    pub target_ms: f64,
    pub partitions: i32,
    /// Partitions broker 1 owned before the drain (its share of the topic).
    pub moved: u32,
    /// `floe cluster drain 1` to `floe cluster status` showing broker 1
    /// with no partitions and nothing moving (polled every 100 ms).
    pub drain_ms: f64,
    /// The command to the last "serving stream" on broker 0 (the last
    /// partition writable at its new owner), and how many it logged.
    pub last_serving_ms: Option<f64>,
    pub served: usize,
    pub max_ack_latency_ms: f64,
    pub failed: u64,
    pub acks_per_second: Vec<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThroughputRow {
    pub brokers: i32,
    pub partitions: i32,
    pub producers: usize,
    pub seconds: f64,
    pub records_per_s: f64,
    pub mb_per_s: f64,
    pub ack_latency: Latency,
    pub failed: u64,
    /// MB/s as a multiple of the first row's (one broker).
    pub of_first: f64,
    pub timeline: Vec<u64>,
}

/// A figure against its goal: `ratio` = measured / target (≤ 1 is met).
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    pub figure: String,
    pub measured_ms: f64,
    pub target_ms: f64,
    pub ratio: f64,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    pub scenario: &'static str,
    pub s3: S3Latency,
    pub record_size: usize,
    pub rate: u64,
    pub moves: Vec<MoveRun>,
    pub failover: Option<FailoverReport>,
    pub new_broker: Option<NewBrokerReport>,
    pub drain: Option<DrainReport>,
    pub throughput: Vec<ThroughputRow>,
    pub targets: Vec<TargetCheck>,
}

/// A picture of the run: its file name and SVG text.
pub struct Picture {
    pub file: String,
    pub svg: String,
}

/// Everything a part needs to start clusters behind the proxy.
struct Env {
    endpoint: String,
    bucket: String,
    run_id: String,
    broker_args: Vec<String>,
    keep_logs: Option<PathBuf>,
}

impl Env {
    fn start(&self, name: &str, brokers: i32) -> anyhow::Result<Running> {
        let store = ObjectStore { url: format!("s3://{}/{}-{name}", self.bucket, self.run_id) };
        let extra: Vec<&str> = self.broker_args.iter().map(String::as_str).collect();
        eprintln!("[cluster] {name}: starting {brokers} brokers on {}", store.url);
        let cluster = tokio::task::block_in_place(|| {
            Cluster::start_with_env(
                &format!("bench-{name}"),
                Some(store),
                brokers,
                &extra,
                &[("AWS_ENDPOINT_URL", &self.endpoint)],
            )
        })?;
        Ok(Running { cluster, name: name.to_string(), keep_logs: self.keep_logs.clone() })
    }
}

/// A part's cluster. Dropping it stops the brokers (SIGKILL: nothing of it
/// is needed any more), keeping their logs first if asked to, also when
/// the part failed.
struct Running {
    cluster: Cluster,
    name: String,
    keep_logs: Option<PathBuf>,
}

impl std::ops::Deref for Running {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(dir) = &self.keep_logs else { return };
        let _ = std::fs::create_dir_all(dir);
        for (id, b) in &self.cluster.brokers {
            let _ = std::fs::copy(&b.log, dir.join(format!("{}-broker-{id}.log", self.name)));
        }
    }
}

pub async fn run(o: &ClusterOptions) -> anyhow::Result<(ClusterReport, Vec<Picture>)> {
    ensure!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "cluster reads each cluster's metadata from the bucket: set AWS_ENDPOINT_URL and the \
         AWS_* credentials of the S3 server (`. .floe-test/s3.env`)"
    );
    ensure!(o.rate > 0, "the steady load needs --rate > 0");
    let delay =
        Delay { median: Duration::from_millis(o.s3.median_ms), p99: Duration::from_millis(o.s3.p99_ms) };
    let proxy = LatencyProxy::start("127.0.0.1:0".parse()?, o.upstream, delay).await?;
    let env = Env {
        endpoint: format!("http://{}", proxy.addr),
        bucket: o.bucket.clone(),
        run_id: format!("cluster-{}-{}-{}", std::process::id(), now_micros() / 1_000_000, o.s3.label),
        broker_args: o.broker_args.clone(),
        keep_logs: o.keep_logs.clone(),
    };
    let label = &o.s3.label;
    let mut report = ClusterReport {
        scenario: "cluster",
        s3: o.s3.clone(),
        record_size: o.load.record_size,
        rate: o.rate,
        moves: Vec::new(),
        failover: None,
        new_broker: None,
        drain: None,
        throughput: Vec::new(),
        targets: Vec::new(),
    };
    let mut pictures = Vec::new();
    let move_target = if o.s3.median_ms == 0 { MOVE_P99_LOCAL_MS } else { MOVE_P99_REAL_MS };

    if o.parts.contains(&Part::Moves) {
        let mut windows = Vec::new();
        for &mb in &o.history_mb {
            let (run, hist) = moves(&env, o, mb, move_target).await?;
            windows.push((format!("{mb} MB history"), hist, run.acks_per_second.clone()));
            report.moves.push(run);
        }
        let series: Vec<Series<'_>> =
            windows.iter().map(|(name, h, s)| Series { name, latency_us: h, per_second: s }).collect();
        let title = format!(
            "cluster moves: command to first ack at the new leader (left), load acks/s (right), S3 {label}"
        );
        pictures.push(Picture {
            file: format!("cluster-moves-{label}.svg"),
            svg: chart::svg(&title, &series, "load acks"),
        });
    }
    if o.parts.contains(&Part::Failover) {
        let mut runs = Vec::new();
        let mut drawn = Vec::new();
        for i in 0..o.failovers {
            let (sample, hist) = failover(&env, o, i).await?;
            drawn.push((format!("run {}: {:.1} s", i + 1, sample.failover_ms / 1000.0), hist));
            runs.push(sample);
        }
        let series: Vec<Series<'_>> = drawn
            .iter()
            .zip(&runs)
            .map(|((name, h), r)| Series { name, latency_us: h, per_second: &r.acks_per_second })
            .collect();
        let title = format!("cluster failover: load ack latency (left), acks/s (right), S3 {label}");
        pictures.push(Picture {
            file: format!("cluster-failover-{label}.svg"),
            svg: chart::svg(&title, &series, "load acks"),
        });
        report.failover = Some(FailoverReport {
            target_ms: FAILOVER_MS,
            failover: Stats::of(runs.iter().map(|r| r.failover_ms)),
            fenced: Stats::of(runs.iter().filter_map(|r| r.fenced_ms)),
            recovered: Stats::of(runs.iter().filter_map(|r| r.recovered_ms)),
            serving: Stats::of(runs.iter().map(|r| r.serving_ms)),
            runs,
        });
    }
    let mut churn: Vec<(String, Histogram<u64>, Vec<u64>)> = Vec::new();
    if o.parts.contains(&Part::NewBroker) {
        let (r, hist) = new_broker(&env, o).await?;
        churn.push(("a new broker joins".into(), hist, r.acks_per_second.clone()));
        report.new_broker = Some(r);
    }
    if o.parts.contains(&Part::Drain) {
        let (r, hist) = drain(&env, o).await?;
        churn.push((format!("drain of {} partitions", r.partitions), hist, r.acks_per_second.clone()));
        report.drain = Some(r);
    }
    if !churn.is_empty() {
        let series: Vec<Series<'_>> =
            churn.iter().map(|(name, h, s)| Series { name, latency_us: h, per_second: s }).collect();
        let title = format!("cluster: load ack latency and acks/s while brokers join and drain, S3 {label}");
        pictures.push(Picture {
            file: format!("cluster-churn-{label}.svg"),
            svg: chart::svg(&title, &series, "load acks"),
        });
    }
    if o.parts.contains(&Part::Throughput) {
        let mut drawn = Vec::new();
        for &n in &o.throughput_brokers {
            let c = env.start(&format!("throughput-{n}"), n)?;
            let load = ProduceOptions {
                bootstrap: c.bootstrap(),
                topic: "throughput".into(),
                rate: 0,
                limit_records: 0,
                stop: None,
                broker_pid: None,
                stamp: false,
                ..o.load.clone()
            };
            let (r, hist) = produce::run(&load).await?;
            drop(c);
            let first = report.throughput.first().map_or(r.mb_per_s, |f: &ThroughputRow| f.mb_per_s);
            report.throughput.push(ThroughputRow {
                brokers: n,
                partitions: r.partitions,
                producers: r.producers,
                seconds: r.seconds,
                records_per_s: r.records_per_s,
                mb_per_s: r.mb_per_s,
                ack_latency: r.ack_latency.clone(),
                failed: r.failed,
                of_first: if first > 0.0 { r.mb_per_s / first } else { 0.0 },
                timeline: r.timeline.clone(),
            });
            drawn.push((format!("{n} broker{}", if n == 1 { "" } else { "s" }), hist));
        }
        let series: Vec<Series<'_>> = drawn
            .iter()
            .zip(&report.throughput)
            .map(|((name, h), row)| Series { name, latency_us: h, per_second: &row.timeline })
            .collect();
        let title = format!(
            "cluster throughput: max rate, {} B records, {} partitions, S3 {label}",
            o.load.record_size, o.load.partitions
        );
        pictures.push(Picture {
            file: format!("cluster-throughput-{label}.svg"),
            svg: chart::svg(&title, &series, "acks"),
        });
    }
    report.targets = targets(&report);
    drop(proxy);
    Ok((report, pictures))
}

fn targets(r: &ClusterReport) -> Vec<TargetCheck> {
    let check = |figure: String, measured_ms: f64, target_ms: f64| TargetCheck {
        figure,
        measured_ms,
        target_ms,
        ratio: measured_ms / target_ms,
        met: measured_ms <= target_ms,
    };
    let mut t = Vec::new();
    for m in &r.moves {
        t.push(check(
            format!("move window p99, {} MB history", m.history_mb),
            m.window.p99_ms,
            m.target_p99_ms,
        ));
    }
    if let Some(f) = &r.failover {
        t.push(check("failover p99".into(), f.failover.p99_ms, f.target_ms));
    }
    if let Some(n) = &r.new_broker {
        t.push(check("new broker: start to first ack".into(), n.first_ack_ms, n.target_ms));
    }
    if let Some(d) = &r.drain {
        t.push(check(format!("drain of {} partitions", d.partitions), d.drain_ms, d.target_ms));
    }
    t
}
