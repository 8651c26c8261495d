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

// ---------------------------------------------------------------- the parts

async fn moves(
    env: &Env,
    o: &ClusterOptions,
    history_mb: u64,
    target_p99_ms: f64,
) -> anyhow::Result<(MoveRun, Histogram<u64>)> {
    let c = env.start(&format!("moves-{history_mb}mb"), 2)?;
    let topic = "moves";
    let records = (history_mb << 20).div_ceil(o.load.record_size.max(1) as u64).max(1);
    eprintln!("[cluster] writing a {history_mb} MB history ({records} records) to {topic}/0");
    let history = ProduceOptions {
        bootstrap: c.bootstrap(),
        topic: topic.into(),
        producers: 1,
        partitions: 1,
        acks: "all".into(),
        rate: 0,
        duration: Duration::from_secs(1800),
        limit_records: records,
        stop: None,
        broker_pid: None,
        stamp: false,
        ..o.load.clone()
    };
    let (h, _) = produce::run(&history).await?;
    ensure!(
        h.failed == 0 && h.acked == records,
        "the history was not written: {} of {records} acked",
        h.acked
    );
    let (streams, state) = topic_streams(&c.store, topic).await?;
    let stream = streams[0];
    let meta = state.streams.get(&stream).context("the stream is not in the metadata")?;
    let mut owner = meta.owner.context("the partition has no owner")?;
    let mut epoch = meta.epoch;
    // A history written at full speed is ahead of the uploads for a while;
    // the moves start once it is committed (what a move costs with a
    // backlog to upload first is a different figure: the backlog's upload).
    let t_wait = Instant::now();
    let backlog = records.saturating_sub(meta.end_offset.max(0) as u64) * o.load.record_size as u64;
    let deadline = t_wait + STEP_TIMEOUT * 5;
    while load_meta(&c.store).await?.streams.get(&stream).map_or(0, |m| m.end_offset) < records as i64 {
        ensure!(Instant::now() < deadline, "the history was not committed within {:?}", STEP_TIMEOUT * 5);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let history_upload_wait_ms = t_wait.elapsed().as_secs_f64() * 1000.0;
    eprintln!(
        "[cluster] the history is committed ({:.0} MB were waiting for upload at its end; {:.0} ms)",
        backlog as f64 / 1e6,
        history_upload_wait_ms
    );

    let probe = Probe::start(&c.bootstrap(), topic, vec![0], o.rate, &o.load)?;
    probe.wait_for_acks(0, (o.rate as usize).max(1), STEP_TIMEOUT).await.context("the load got no acks")?;
    let mut samples = Vec::new();
    let mut timeouts = 0;
    for i in 0..o.moves {
        let to = 1 - owner;
        let mut dest_log = LogTail::from_end(&c.brokers[&to].log);
        let mut owner_log = LogTail::from_end(&c.brokers[&owner].log);
        let from = probe.len();
        let t_cmd = now_micros();
        tokio::task::block_in_place(|| c.cli(&["move", topic, "0", &to.to_string()]))?;
        let t_cli = now_micros();
        let serving = wait_line(std::slice::from_mut(&mut dest_log), STEP_TIMEOUT, |l| {
            l.is("serving stream")
                && l.field("stream") == Some(stream)
                && l.field::<u32>("epoch") > Some(epoch)
        })
        .await;
        let Some((_, serving)) = serving else {
            eprintln!("[cluster] move {i}: broker {to} did not serve the partition within {STEP_TIMEOUT:?}");
            timeouts += 1;
            (owner, epoch) = after_timeout(&c, stream).await?;
            continue;
        };
        let end: i64 = serving.field("end_offset").context("serving line without end_offset")?;
        let first = probe.wait_for(from, STEP_TIMEOUT, |a| a.partition == 0 && a.offset >= end).await;
        let Some(first) = first else {
            eprintln!("[cluster] move {i}: no ack at the new leader within {STEP_TIMEOUT:?}");
            timeouts += 1;
            (owner, epoch) = after_timeout(&c, stream).await?;
            continue;
        };
        tokio::time::sleep(SETTLE).await;
        owner_log.poll()?;
        let released = owner_log.find(|l| {
            l.is("stream released") && l.field("stream") == Some(stream) && l.field("epoch") == Some(epoch)
        });
        let since = |at: u64| at.saturating_sub(t_cmd) as f64 / 1000.0;
        let (gap, latency) = probe.with(|acks| caught(acks, &[0], t_cmd, first.at_us));
        let sample = MoveSample {
            from: owner,
            to,
            window_ms: since(first.at_us),
            cli_ms: since(t_cli),
            released_at_ms: released.map(|l| since(l.at_us)),
            release_ms: released.and_then(|l| l.field::<f64>("ms")),
            serving_at_ms: since(serving.at_us),
            max_ack_gap_ms: gap,
            max_ack_latency_ms: latency,
            end_offset: end,
        };
        eprintln!(
            "[cluster] move {}/{} {owner}->{to}: {:.1} ms to the first ack at the new leader \
             (command {:.1}, released at {}, serving at {:.1}; longest ack gap {:.1} ms)",
            i + 1,
            o.moves,
            sample.window_ms,
            sample.cli_ms,
            sample.released_at_ms.map_or("?".into(), |v| format!("{v:.1}")),
            sample.serving_at_ms,
            sample.max_ack_gap_ms
        );
        samples.push(sample);
        owner = to;
        epoch = serving.field("epoch").unwrap_or(epoch + 1);
    }
    let (acks, failed) = probe.stop();
    drop(c);
    let mut hist = histogram();
    for s in &samples {
        hist.record((s.window_ms * 1000.0).max(1.0) as u64)?;
    }
    let step = |f: &dyn Fn(&MoveSample) -> Option<f64>| Stats::of(samples.iter().filter_map(f));
    let run = MoveRun {
        history_mb,
        history_records: h.acked,
        history_seconds: h.seconds,
        history_upload_lag_bytes: backlog,
        history_upload_wait_ms,
        target_p99_ms,
        window: step(&|s| Some(s.window_ms)),
        max_ack_gap: step(&|s| Some(s.max_ack_gap_ms)),
        max_ack_latency: step(&|s| Some(s.max_ack_latency_ms)),
        to_release_start: step(&|s| Some(s.released_at_ms? - s.release_ms?)),
        release_to_serving: step(&|s| Some(s.serving_at_ms - (s.released_at_ms? - s.release_ms?))),
        serving_to_first_ack: step(&|s| Some(s.window_ms - s.serving_at_ms)),
        cli: step(&|s| Some(s.cli_ms)),
        release: step(&|s| s.release_ms),
        moves: samples,
        timeouts,
        failed,
        probe_ack_latency: Latency::from_micros(&ack_histogram(&acks)),
        acks_per_second: per_second(&acks),
    };
    Ok((run, hist))
}

/// After a move that did not finish: waits for the cluster to settle and
/// reads where the partition is now.
async fn after_timeout(c: &Cluster, stream: u64) -> anyhow::Result<(i32, u32)> {
    tokio::task::block_in_place(|| c.wait_for("the move to finish", STEP_TIMEOUT, |s| s.moving == 0))?;
    let state = load_meta(&c.store).await?;
    let meta = state.streams.get(&stream).context("the stream is gone")?;
    Ok((meta.owner.context("the partition has no owner")?, meta.epoch))
}

async fn failover(
    env: &Env,
    o: &ClusterOptions,
    run: usize,
) -> anyhow::Result<(FailoverSample, Histogram<u64>)> {
    let mut c = env.start(&format!("failover-{run}"), 3)?;
    let topic = "failover";
    create_topic(&c.bootstrap(), topic, 3).await?;
    let (streams, state) = topic_streams(&c.store, topic).await?;
    let controller = tokio::task::block_in_place(|| c.status())?.controller;
    let (partition, stream, victim) = streams
        .iter()
        .enumerate()
        .find_map(|(p, s)| {
            let owner = state.streams.get(s)?.owner?;
            (owner != controller).then_some((p as i32, *s, owner))
        })
        .context("every partition is on the controller")?;
    let epoch = state.streams[&stream].epoch;
    let probe = Probe::start(&c.bootstrap(), topic, vec![0, 1, 2], o.rate, &o.load)?;
    probe
        .wait_for_acks(partition, (o.rate as usize / 3).max(1), STEP_TIMEOUT)
        .await
        .context("the load got no acks")?;
    let survivors: Vec<i32> = c.brokers.keys().copied().filter(|b| *b != victim).collect();
    let mut tails: Vec<LogTail> = survivors.iter().map(|b| LogTail::from_end(&c.brokers[b].log)).collect();
    let from = probe.len();
    let t_kill = now_micros();
    c.broker(victim).kill();
    eprintln!("[cluster] failover {}: SIGKILL to broker {victim}, owner of {topic}/{partition}", run + 1);
    let (which, serving) = wait_line(&mut tails, STEP_TIMEOUT, |l| {
        l.is("serving stream") && l.field("stream") == Some(stream) && l.field::<u32>("epoch") > Some(epoch)
    })
    .await
    .with_context(|| format!("no broker served {topic}/{partition} within {STEP_TIMEOUT:?}\n{}", c.logs()))?;
    let first = probe
        .wait_for(from, STEP_TIMEOUT, |a| a.partition == partition && a.at_us >= serving.at_us)
        .await
        .context("no ack from the new owner")?;
    tokio::time::sleep(SETTLE).await;
    for t in &mut tails {
        t.poll()?;
    }
    let ctl = &tails[survivors.iter().position(|b| *b == controller).context("the controller died")?];
    let line_at =
        |message: &str| ctl.find(|l| l.is(message) && l.field("broker_id") == Some(victim)).map(|l| l.at_us);
    let since = |at: u64| at.saturating_sub(t_kill) as f64 / 1000.0;
    let (_, latency) = probe.with(|acks| caught(acks, &[partition], t_kill, first.at_us));
    let (acks, failed) = probe.stop();
    drop(c);
    let sample = FailoverSample {
        victim,
        controller,
        partition,
        new_owner: survivors[which],
        failover_ms: since(first.at_us),
        fenced_ms: line_at("broker lease expired").map(since),
        recovered_ms: line_at("WAL recovered; its streams moved").map(since),
        serving_ms: since(serving.at_us),
        max_ack_latency_ms: latency,
        failed,
        acks_per_second: per_second(&acks),
    };
    eprintln!(
        "[cluster] failover {}: {:.0} ms to the first ack at broker {} (fenced at {}, recovered at {}, serving at {:.0})",
        run + 1,
        sample.failover_ms,
        sample.new_owner,
        sample.fenced_ms.map_or("?".into(), |v| format!("{v:.0}")),
        sample.recovered_ms.map_or("?".into(), |v| format!("{v:.0}")),
        sample.serving_ms
    );
    Ok((sample, ack_histogram(&acks)))
}

async fn new_broker(env: &Env, o: &ClusterOptions) -> anyhow::Result<(NewBrokerReport, Histogram<u64>)> {
    let mut c = env.start("new-broker", 2)?;
    let topic = "grow";
    let partitions = 6;
    create_topic(&c.bootstrap(), topic, partitions).await?;
    let (streams, _) = topic_streams(&c.store, topic).await?;
    let probe = Probe::start(&c.bootstrap(), topic, (0..partitions).collect(), o.rate, &o.load)?;
    probe
        .wait_for_acks(partitions - 1, (o.rate as usize / partitions as usize).max(1), STEP_TIMEOUT)
        .await
        .context("the load got no acks")?;
    let from = probe.len();
    let t_start = now_micros();
    tokio::task::block_in_place(|| c.add_broker(2))?;
    let mut tail = LogTail::from_start(&c.brokers[&2].log);
    let (_, given) = wait_line(std::slice::from_mut(&mut tail), STEP_TIMEOUT, |l| {
        l.is("serving stream") && l.field::<u64>("stream").is_some_and(|s| streams.contains(&s))
    })
    .await
    .with_context(|| format!("the new broker was given nothing within {STEP_TIMEOUT:?}\n{}", c.logs()))?;
    let stream: u64 = given.field("stream").context("stream")?;
    let partition = streams.iter().position(|s| *s == stream).context("not the topic's")? as i32;
    let end: i64 = given.field("end_offset").context("serving line without end_offset")?;
    let first = probe
        .wait_for(from, STEP_TIMEOUT, |a| a.partition == partition && a.offset >= end)
        .await
        .context("no ack from the new broker")?;
    // Let the balancer finish its round before counting what it gave.
    tokio::time::sleep(SETTLE * 3).await;
    tail.poll()?;
    let ready = tail.find(|l| l.is("floe is serving Kafka")).map(|l| l.at_us).unwrap_or(t_start);
    let mut given_streams: Vec<u64> = tail
        .lines
        .iter()
        .filter(|l| l.is("serving stream"))
        .filter_map(|l| l.field::<u64>("stream"))
        .filter(|s| streams.contains(s))
        .collect();
    given_streams.sort_unstable();
    given_streams.dedup();
    let since = |at: u64| at.saturating_sub(t_start) as f64 / 1000.0;
    let (_, latency) =
        probe.with(|acks| caught(acks, &(0..partitions).collect::<Vec<_>>(), t_start, first.at_us));
    let (acks, failed) = probe.stop();
    drop(c);
    let r = NewBrokerReport {
        target_ms: NEW_BROKER_MS,
        first_ack_ms: since(first.at_us),
        ready_ms: since(ready),
        assigned_ms: since(given.at_us),
        partition,
        partitions_given: given_streams.len(),
        topic_partitions: partitions,
        max_ack_latency_ms: latency,
        failed,
        acks_per_second: per_second(&acks),
    };
    eprintln!(
        "[cluster] new broker: {:.0} ms from start to its first ack ({topic}/{partition}); serving Kafka at {:.0} ms, \
         first partition at {:.0} ms, {} of {partitions} partitions",
        r.first_ack_ms, r.ready_ms, r.assigned_ms, r.partitions_given
    );
    Ok((r, ack_histogram(&acks)))
}

async fn drain(env: &Env, o: &ClusterOptions) -> anyhow::Result<(DrainReport, Histogram<u64>)> {
    let c = env.start(&format!("drain-{}", o.drain_partitions), 2)?;
    let topic = "drain";
    let n = o.drain_partitions;
    create_topic(&c.bootstrap(), topic, n).await?;
    let spread = tokio::task::block_in_place(|| {
        c.wait_for("the partitions spread", STEP_TIMEOUT, |s| {
            s.moving == 0 && s.unassigned == 0 && s.live_partitions().values().sum::<u32>() == n as u32
        })
    })?;
    let moved = spread.brokers.get(&1).map_or(0, |b| b.partitions);
    let probe = Probe::start(&c.bootstrap(), topic, (0..n).collect(), o.rate, &o.load)?;
    probe.wait_for_acks(n - 1, 1, STEP_TIMEOUT).await.context("the load got no acks")?;
    tokio::time::sleep(SETTLE).await;
    let mut tail = LogTail::from_end(&c.brokers[&0].log);
    let t0 = now_micros();
    tokio::task::block_in_place(|| c.cli(&["drain", "1"]))?;
    eprintln!("[cluster] drain: broker 1 gives away {moved} partitions");
    let deadline = Instant::now() + STEP_TIMEOUT * 3;
    let t_done = loop {
        // A status that fails (the controller changing hands) is asked again.
        let s = tokio::task::block_in_place(|| c.status());
        let now = now_micros();
        if s.as_ref().is_ok_and(|s| s.brokers.get(&1).is_some_and(|b| b.partitions == 0) && s.moving == 0) {
            break now;
        }
        if Instant::now() > deadline {
            bail!("broker 1 still owns partitions after {:?}: {s:?}\n{}", STEP_TIMEOUT * 3, c.logs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(SETTLE).await;
    tail.poll()?;
    let served: Vec<u64> = tail.lines.iter().filter(|l| l.is("serving stream")).map(|l| l.at_us).collect();
    let since = |at: u64| at.saturating_sub(t0) as f64 / 1000.0;
    let all: Vec<i32> = (0..n).collect();
    let (_, latency) = probe.with(|acks| caught(acks, &all, t0, t_done));
    let (acks, failed) = probe.stop();
    drop(c);
    let r = DrainReport {
        target_ms: DRAIN_MS,
        partitions: n,
        moved,
        drain_ms: since(t_done),
        last_serving_ms: served.iter().max().map(|at| since(*at)),
        served: served.len(),
        max_ack_latency_ms: latency,
        failed,
        acks_per_second: per_second(&acks),
    };
    eprintln!(
        "[cluster] drain: {:.0} ms until broker 1 owned nothing (broker 0 took {}, the last at {})",
        r.drain_ms,
        r.served,
        r.last_serving_ms.map_or("?".into(), |v| format!("{v:.0} ms"))
    );
    Ok((r, ack_histogram(&acks)))
}

// ------------------------------------------------------------ the metadata

async fn load_meta(store: &ObjectStore) -> anyhow::Result<floe_storage::MetaState> {
    let bucket = floe_storage::Bucket::open(&store.url, Duration::from_secs(10))?;
    Ok(floe_storage::meta::load(&bucket).await?)
}

/// The stream ids of `topic`'s partitions, in partition order, and the state.
async fn topic_streams(
    store: &ObjectStore,
    topic: &str,
) -> anyhow::Result<(Vec<u64>, floe_storage::MetaState)> {
    let state = load_meta(store).await?;
    let streams =
        state.topics.get(topic).with_context(|| format!("no topic {topic} in the metadata"))?.streams.clone();
    Ok((streams, state))
}

async fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    for result in admin.create_topics(&[topic], &options).await? {
        result.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
    }
    Ok(())
}

// ------------------------------------------------------------ the load

/// One acknowledged record, as the delivery report saw it.
#[derive(Debug, Clone, Copy)]
struct Ack {
    at_us: u64,
    sent_us: u64,
    partition: i32,
    offset: i64,
}

struct AckContext {
    acks: Arc<Mutex<Vec<Ack>>>,
    failed: Arc<AtomicU64>,
}

impl ClientContext for AckContext {
    /// The load's own client log (with `-X debug=...`), with the time, so
    /// it lines up with the brokers' logs.
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        eprintln!("[librdkafka {:.6}] {fac} {message}", now_micros() as f64 / 1e6);
    }
}

impl ProducerContext for AckContext {
    /// The send time, µs since the Unix epoch.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_us: usize) {
        let at_us = now_micros();
        match result {
            Ok(m) => self.acks.lock().expect("acks").push(Ack {
                at_us,
                sent_us: sent_us as u64,
                partition: m.partition(),
                offset: m.offset(),
            }),
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A steady idempotent load (acks=all) over some partitions, round robin,
/// recording every delivery report in arrival order. Delivery reports come
/// from librdkafka's own thread, so their times do not wait on the runtime.
struct Probe {
    acks: Arc<Mutex<Vec<Ack>>>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Probe {
    fn start(
        bootstrap: &str,
        topic: &str,
        partitions: Vec<i32>,
        rate: u64,
        o: &ProduceOptions,
    ) -> anyhow::Result<Self> {
        let acks = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", &o.compression)
            .set("linger.ms", "1")
            .set("message.timeout.ms", "300000")
            .set("queue.buffering.max.messages", "1000000");
        for (k, v) in &o.client_config {
            config.set(k, v);
        }
        if o.client_config.iter().any(|(k, _)| k == "debug") {
            config.set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
        }
        let producer: ThreadedProducer<AckContext> =
            config.create_with_context(AckContext { acks: acks.clone(), failed: failed.clone() })?;
        let (topic, size, stopping, failing) =
            (topic.to_string(), o.record_size, stop.clone(), failed.clone());
        let thread = std::thread::Builder::new().name("cluster-load".into()).spawn(move || {
            let payload = vec![b'x'; size];
            let started = Instant::now();
            let mut i = 0u64;
            while !stopping.load(Ordering::Acquire) {
                let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let p = partitions[(i % partitions.len() as u64) as usize];
                let record = BaseRecord::<'_, (), [u8], usize>::with_opaque_to(&topic, now_micros() as usize)
                    .partition(p)
                    .payload(&payload[..]);
                match producer.send(record) {
                    Ok(()) => i += 1,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => {
                        failing.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                }
            }
            let _ = producer.flush(Duration::from_secs(60));
        })?;
        Ok(Self { acks, failed, stop, thread: Some(thread) })
    }

    fn len(&self) -> usize {
        self.acks.lock().expect("acks").len()
    }

    fn with<R>(&self, f: impl FnOnce(&[Ack]) -> R) -> R {
        f(&self.acks.lock().expect("acks"))
    }

    /// The first ack at index `from` or later that `pred` accepts, polled
    /// until `timeout`.
    async fn wait_for(&self, from: usize, timeout: Duration, pred: impl Fn(&Ack) -> bool) -> Option<Ack> {
        let deadline = Instant::now() + timeout;
        let mut scanned = from;
        loop {
            let found = self.with(|acks| {
                let hit = acks.iter().skip(scanned).find(|a| pred(a)).copied();
                scanned = acks.len().max(scanned);
                hit
            });
            if found.is_some() {
                return found;
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits until `partition` has `count` acks.
    async fn wait_for_acks(&self, partition: i32, count: usize, timeout: Duration) -> Option<()> {
        let deadline = Instant::now() + timeout;
        while self.with(|acks| acks.iter().filter(|a| a.partition == partition).count()) < count {
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(())
    }

    /// Stops sending, waits (bounded) for what is in flight; every ack and
    /// the number of records that failed for good.
    fn stop(mut self) -> (Vec<Ack>, u64) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::block_in_place(|| t.join());
        }
        let acks = std::mem::take(&mut *self.acks.lock().expect("acks"));
        (acks, self.failed.load(Ordering::Relaxed))
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Over the acks of `partitions` from `from_us` to `first_us` (the event
/// and its end): the longest stretch without an ack (counted from the last
/// ack before the event), and the longest send-to-ack latency of a record
/// acknowledged up to [`SETTLE`] after the end. Both in ms.
fn caught(acks: &[Ack], partitions: &[i32], from_us: u64, first_us: u64) -> (f64, f64) {
    let ours = || acks.iter().filter(|a| partitions.contains(&a.partition));
    let mut last = ours().filter(|a| a.at_us < from_us).map(|a| a.at_us).next_back().unwrap_or(from_us);
    let mut gap = 0;
    for a in ours().filter(|a| a.at_us >= from_us && a.at_us <= first_us) {
        gap = gap.max(a.at_us.saturating_sub(last));
        last = a.at_us;
    }
    let until = first_us + SETTLE.as_micros() as u64;
    let latency = ours()
        .filter(|a| a.at_us >= from_us && a.at_us <= until)
        .map(|a| a.at_us.saturating_sub(a.sent_us))
        .max()
        .unwrap_or(0);
    (gap as f64 / 1000.0, latency as f64 / 1000.0)
}

/// Acks in each second since the first send.
fn per_second(acks: &[Ack]) -> Vec<u64> {
    let Some(start) = acks.iter().map(|a| a.sent_us).min() else { return Vec::new() };
    let mut out: Vec<u64> = Vec::new();
    for a in acks {
        let s = (a.at_us.saturating_sub(start) / 1_000_000) as usize;
        if out.len() <= s {
            out.resize(s + 1, 0);
        }
        out[s] += 1;
    }
    out
}

fn ack_histogram(acks: &[Ack]) -> Histogram<u64> {
    let mut h = histogram();
    for a in acks {
        let _ = h.record(a.at_us.saturating_sub(a.sent_us).max(1));
    }
    h
}

// ------------------------------------------------------------ broker logs

/// One line of a broker's log: its time, its text, and its `key=value` fields.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// µs since the Unix epoch.
    pub at_us: u64,
    pub text: String,
    fields: BTreeMap<String, String>,
}

impl LogLine {
    pub fn is(&self, message: &str) -> bool {
        self.text.contains(message)
    }

    pub fn field<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.fields.get(key)?.trim_matches('"').parse().ok()
    }
}

/// Parses a line of `floe`'s log ("2026-11-25T16:54:56.123456Z  INFO
/// target: message key=value ..."); None for lines without a timestamp.
pub fn parse_log_line(line: &str) -> Option<LogLine> {
    let plain = super::target::strip_ansi(line);
    let stamp = plain.split_whitespace().next()?;
    let at_us = parse_utc_micros(stamp)?;
    let fields = plain
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.split_once('='))
        .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some(LogLine { at_us, text: plain, fields })
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` as µs since the Unix epoch.
fn parse_utc_micros(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
    let digits: String = frac.chars().take(6).collect();
    let micros =
        if digits.is_empty() { 0 } else { digits.parse::<i64>().ok()? * 10i64.pow(6 - digits.len() as u32) };
    // Days from the civil date (proleptic Gregorian), after H. Hinnant.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
    u64::try_from(secs * 1_000_000 + micros).ok()
}

/// The lines a broker's log gained since this tail was made.
pub struct LogTail {
    path: PathBuf,
    pos: u64,
    partial: String,
    pub lines: Vec<LogLine>,
}

impl LogTail {
    pub fn from_start(path: &Path) -> Self {
        Self { path: path.to_path_buf(), pos: 0, partial: String::new(), lines: Vec::new() }
    }

    pub fn from_end(path: &Path) -> Self {
        let pos = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Self { pos, ..Self::from_start(path) }
    }

    /// Reads what was appended since the last poll.
    pub fn poll(&mut self) -> std::io::Result<()> {
        let mut f = std::fs::File::open(&self.path)?;
        f.seek(SeekFrom::Start(self.pos))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        self.pos += bytes.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        if let Some(end) = self.partial.rfind('\n') {
            let complete: String = self.partial.drain(..=end).collect();
            self.lines.extend(complete.lines().filter_map(parse_log_line));
        }
        Ok(())
    }

    pub fn find(&self, pred: impl Fn(&LogLine) -> bool) -> Option<&LogLine> {
        self.lines.iter().find(|l| pred(l))
    }
}

/// Polls `tails` until one has a line `pred` accepts: which tail, and the line.
async fn wait_line(
    tails: &mut [LogTail],
    timeout: Duration,
    pred: impl Fn(&LogLine) -> bool,
) -> Option<(usize, LogLine)> {
    let deadline = Instant::now() + timeout;
    loop {
        for (i, t) in tails.iter_mut().enumerate() {
            let _ = t.poll();
            if let Some(l) = t.find(&pred) {
                return Some((i, l.clone()));
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ------------------------------------------------------------ the table

/// The report as fixed-width text: each figure's p50/p99/max, its goal, and
/// p99 as a ratio to the goal (≤ 1.00x is met).
pub fn render(r: &ClusterReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cluster: S3 {} (+{}/{} ms median/p99), {} B records, load {}/s idempotent acks=all",
        r.s3.label, r.s3.median_ms, r.s3.p99_ms, r.record_size, r.rate
    );
    let _ = writeln!(
        out,
        "{:<48}{:>4}{:>10}{:>10}{:>10}{:>10}{:>10}",
        "figure (ms)", "n", "p50", "p99", "max", "target", "p99/tgt"
    );
    let row = |out: &mut String, name: &str, s: &Stats, target: Option<f64>| {
        let (t, ratio) = match target {
            Some(t) => (format!("{t:.0}"), format!("{:.2}x", s.p99_ms / t)),
            None => (String::new(), String::new()),
        };
        let _ = writeln!(
            out,
            "{name:<48}{:>4}{:>10}{:>10}{:>10}{t:>10}{ratio:>10}",
            s.n,
            num(s.p50_ms),
            num(s.p99_ms),
            num(s.max_ms)
        );
    };
    let one = |v: f64| Stats { n: 1, p50_ms: v, p99_ms: v, max_ms: v };
    for m in &r.moves {
        row(
            &mut out,
            &format!("move: command to 1st ack, {} MB history", m.history_mb),
            &m.window,
            Some(m.target_p99_ms),
        );
        row(&mut out, "  longest stretch without an ack", &m.max_ack_gap, None);
        row(&mut out, "  longest ack latency of a caught record", &m.max_ack_latency, None);
        row(&mut out, "  step: command to owner starting release", &m.to_release_start, None);
        row(&mut out, "  step: release start to new owner serving", &m.release_to_serving, None);
        row(&mut out, "  step: new owner serving to 1st ack there", &m.serving_to_first_ack, None);
        row(&mut out, "  (floe cluster move's run time)", &m.cli, None);
        row(&mut out, "  (owner's release, by its own log)", &m.release, None);
        let _ = writeln!(
            out,
            "  (history written in {:.1} s; {:.0} MB of it waited for upload, committed {:.1} s later, before the moves)",
            m.history_seconds,
            m.history_upload_lag_bytes as f64 / 1e6,
            m.history_upload_wait_ms / 1000.0
        );
        if m.timeouts > 0 || m.failed > 0 {
            let _ = writeln!(out, "  ({} moves timed out, {} records failed)", m.timeouts, m.failed);
        }
    }
    if let Some(f) = &r.failover {
        row(&mut out, "failover: SIGKILL to 1st ack elsewhere", &f.failover, Some(f.target_ms));
        row(&mut out, "  SIGKILL to fenced by the controller", &f.fenced, None);
        row(&mut out, "  SIGKILL to WAL recovered by a peer", &f.recovered, None);
        row(&mut out, "  SIGKILL to new owner serving", &f.serving, None);
    }
    if let Some(n) = &r.new_broker {
        row(
            &mut out,
            "new broker: start to 1st ack of its partition",
            &one(n.first_ack_ms),
            Some(n.target_ms),
        );
        row(&mut out, "  start to serving Kafka", &one(n.ready_ms), None);
        row(&mut out, "  start to its first partition", &one(n.assigned_ms), None);
        let _ = writeln!(out, "  ({} of {} partitions given to it)", n.partitions_given, n.topic_partitions);
    }
    if let Some(d) = &r.drain {
        row(
            &mut out,
            &format!("drain: {} partitions ({} moved) to owning none", d.partitions, d.moved),
            &one(d.drain_ms),
            Some(d.target_ms),
        );
        if let Some(last) = d.last_serving_ms {
            row(&mut out, "  command to the last partition served", &one(last), None);
        }
        row(&mut out, "  longest ack latency of the load", &one(d.max_ack_latency_ms), None);
    }
    if !r.throughput.is_empty() {
        let _ = writeln!(
            out,
            "{:<48}{:>10}{:>12}{:>12}{:>10}",
            "produce at max rate", "MB/s", "records/s", "ack p99 ms", "x 1st"
        );
        for t in &r.throughput {
            let _ = writeln!(
                out,
                "{:<48}{:>10}{:>12.0}{:>12}{:>9.2}x",
                format!("  {} broker(s), {} partitions, {} producers", t.brokers, t.partitions, t.producers),
                num(t.mb_per_s),
                t.records_per_s,
                num(t.ack_latency.p99_ms),
                t.of_first
            );
        }
    }
    out
}

fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_log_line() {
        let l = parse_log_line(
            "2026-11-25T16:54:56.123456Z  INFO floe_broker::ownership: serving stream stream=3 epoch=2 end_offset=1500",
        )
        .unwrap();
        assert!(l.is("serving stream"));
        assert_eq!(l.field::<u64>("stream"), Some(3));
        assert_eq!(l.field::<i64>("end_offset"), Some(1500));
        assert_eq!(l.at_us % 1_000_000, 123_456);
        assert!(parse_log_line("not a log line").is_none());
        assert_eq!(parse_utc_micros("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_utc_micros("2000-03-01T00:00:01.5Z"),
            Some((11_017 * 86_400 + 1) * 1_000_000 + 500_000)
        );
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let s = Stats::of((1..=20).map(f64::from));
        assert_eq!((s.n, s.p50_ms, s.p99_ms, s.max_ms), (20, 10.0, 20.0, 20.0));
        assert_eq!(Stats::of([]).n, 0);
    }

    #[test]
    fn the_longest_gap_runs_to_the_first_new_ack() {
        let ack = |at_us, sent_us| Ack { at_us, sent_us, partition: 0, offset: 0 };
        let acks = [ack(100, 90), ack(1_000, 950), ack(1_100, 1_090), ack(5_000, 1_200), ack(5_100, 5_000)];
        let (gap, latency) = caught(&acks, &[0], 1_050, 5_000);
        assert_eq!(gap, 3.9, "1.1 ms to 5.0 ms");
        assert_eq!(latency, 3.8, "sent at 1.2 ms, acked at 5.0 ms");
    }
}
