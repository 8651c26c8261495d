//! The `long-run` scenario: one broker with many partitions, frequent
//! uploads and a light load under a time retention, for many minutes. It
//! samples the broker's memory and CPU, the metadata's size, and what the
//! bucket holds, to show whether they stay flat once retention bounds the
//! live data (they should: storage as small as the live data).

use std::fmt::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use object_store::ObjectStore as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;

use super::chart::{Line, Panel};
use super::produce::{self, ProduceOptions, ProduceReport};
use crate::cluster::Status;
use crate::{floe_binary, BrokerProcess, ObjectStore};

/// The goal: the last sample at most this much above the first
/// sample after warm-up.
pub const TARGET_RATIO: f64 = 1.2;

#[derive(Debug, Clone)]
pub struct LongRunOptions {
    /// `s3://BUCKET/PREFIX` (AWS_* from the environment) or `file://DIR`.
    pub object_store: String,
    pub partitions: i32,
    /// Records per second over all partitions.
    pub rate: u64,
    pub record_size: usize,
    pub duration: Duration,
    pub sample_every: Duration,
    /// The topic's `retention.ms`.
    pub retention_ms: u64,
    pub upload_interval_ms: u64,
    pub retention_check_interval_ms: u64,
    pub object_delete_delay_ms: u64,
    /// None: the broker's default; 0 turns compaction off (the "before").
    pub compaction_interval_ms: Option<u64>,
    /// More broker flags, as given.
    pub broker_args: Vec<String>,
    /// librdkafka producer properties, applied after the scenario's own.
    pub client_config: Vec<(String, String)>,
    /// Copy the broker's log here at the end.
    pub keep_log: Option<PathBuf>,
}

/// One look at the broker and the bucket.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub t_s: f64,
    pub rss_bytes: u64,
    /// Broker CPU over the interval since the previous sample, percent of one core.
    pub cpu_percent: f64,
    pub cpu_seconds: f64,
    /// The metadata log's sequence number: a count of commits (uploads,
    /// retention, compaction).
    pub seq: u64,
    /// Broker CPU milliseconds per commit over the interval.
    pub cpu_ms_per_commit: Option<f64>,
    /// The newest `meta/snapshot/` object.
    pub snapshot_bytes: u64,
    pub log_entries: u64,
    pub log_bytes: u64,
    /// Snapshot plus log entries: what a new controller reads.
    pub metadata_bytes: u64,
    /// From `floe cluster status`: live objects, ranges, objects awaiting deletion.
    pub objects: u64,
    pub ranges: u64,
    pub garbage: u64,
    /// Sum over the brokers of `floe cluster status`.
    pub committed_bytes: u64,
    pub bytes_in_per_sec: u64,
    /// What `data/` in the bucket holds.
    pub data_objects: u64,
    pub data_bytes: u64,
}

/// The figures the issue asks for.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Index of the sample the ratios are against.
    pub baseline: usize,
    pub baseline_t_s: f64,
    /// Whether that sample is after the warm-up (retention + 1 minute);
    /// a run too short for it compares against its third sample.
    pub warmed_up: bool,
    pub target_ratio: f64,
    pub rss_ratio: Option<f64>,
    pub cpu_ratio: Option<f64>,
    pub cpu_per_commit_ratio: Option<f64>,
    /// Snapshot plus log saw-tooths with the snapshot cycle (every 512
    /// commits); the snapshot and the mean log entry do not.
    pub metadata_ratio: Option<f64>,
    pub snapshot_ratio: Option<f64>,
    pub log_entry_ratio: Option<f64>,
    pub ranges_ratio: Option<f64>,
    /// bytes_in/s (the controller's average, else the nominal load) × retention.
    pub live_estimate_bytes: f64,
    pub committed_bytes: u64,
    pub data_bytes: u64,
    pub data_objects: u64,
    pub data_to_live: Option<f64>,
    pub data_to_committed: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LongRunReport {
    pub scenario: &'static str,
    pub object_store: String,
    pub partitions: i32,
    pub rate: u64,
    pub record_size: usize,
    pub retention_ms: u64,
    pub upload_interval_ms: u64,
    pub retention_check_interval_ms: u64,
    pub object_delete_delay_ms: u64,
    pub compaction_interval_ms: Option<u64>,
    pub sample_seconds: f64,
    pub samples: Vec<Sample>,
    pub verdict: Verdict,
    pub load: ProduceReport,
}

/// Starts the broker, runs the load for `o.duration` while sampling, stops
/// the broker; the report.
pub async fn run(o: &LongRunOptions) -> anyhow::Result<LongRunReport> {
    let scratch = tempfile::Builder::new().prefix("floe-bench-long-run-").tempdir()?;
    let store = ObjectStore { url: o.object_store.clone() };
    let args = broker_args(o);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut broker = BrokerProcess::start(&scratch.path().join("data"), &store, &refs)?;
    let result = sample_under_load(o, &broker, scratch.path()).await;
    // Stopped whatever happened; a graceful stop, so its log ends cleanly.
    let stopped = broker.stop();
    if let Some(path) = &o.keep_log {
        std::fs::copy(&broker.log, path).with_context(|| format!("keeping the log as {}", path.display()))?;
    }
    let (samples, load) = result?;
    let status = stopped?;
    anyhow::ensure!(status.success(), "floe exited with {status}; log:\n{}", broker.log_tail());
    let verdict = verdict(o, &samples)?;
    Ok(LongRunReport {
        scenario: "long-run",
        object_store: o.object_store.clone(),
        partitions: o.partitions,
        rate: o.rate,
        record_size: o.record_size,
        retention_ms: o.retention_ms,
        upload_interval_ms: o.upload_interval_ms,
        retention_check_interval_ms: o.retention_check_interval_ms,
        object_delete_delay_ms: o.object_delete_delay_ms,
        compaction_interval_ms: o.compaction_interval_ms,
        sample_seconds: o.sample_every.as_secs_f64(),
        samples,
        verdict,
        load,
    })
}

fn broker_args(o: &LongRunOptions) -> Vec<String> {
    let mut args = vec![
        "--upload-interval-ms".to_string(),
        o.upload_interval_ms.to_string(),
        "--log-retention-check-interval-ms".into(),
        o.retention_check_interval_ms.to_string(),
        "--object-delete-delay-ms".into(),
        o.object_delete_delay_ms.to_string(),
    ];
    if let Some(ms) = o.compaction_interval_ms {
        args.extend(["--compaction-interval-ms".into(), ms.to_string()]);
    }
    args.extend(o.broker_args.iter().cloned());
    args
}

async fn sample_under_load(
    o: &LongRunOptions,
    broker: &BrokerProcess,
    scratch: &std::path::Path,
) -> anyhow::Result<(Vec<Sample>, ProduceReport)> {
    let pid = broker.pid().context("the broker is not running")?;
    let topic = "long-run";
    create_topic(&broker.bootstrap(), topic, o.partitions, o.retention_ms).await?;
    let bucket = floe_storage::Bucket::open(&o.object_store, Duration::from_secs(30))?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut client_config = vec![("enable.idempotence".to_string(), "true".to_string())];
    client_config.extend(o.client_config.iter().cloned());
    let load = ProduceOptions {
        bootstrap: broker.bootstrap(),
        topic: topic.into(),
        producers: 1,
        record_size: o.record_size,
        partitions: o.partitions,
        acks: "all".into(),
        compression: "none".into(),
        rate: o.rate,
        duration: o.duration,
        max_in_flight: 10_000,
        stamp: false,
        limit_records: 0,
        stop: Some(stop.clone()),
        broker_pid: Some(pid),
        client_config,
    };
    let cpu_at_start = super::cpu::process_seconds(pid)?;
    let mut producing = tokio::spawn(async move { produce::run(&load).await });
    let started = Instant::now();
    let mut sampler = Sampler {
        pid,
        url: o.object_store.clone(),
        cli_dir: scratch.join("cli"),
        bucket,
        started,
        last_cpu: (started, cpu_at_start),
        last_seq: None,
    };
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval_at((started + o.sample_every).into(), o.sample_every);
    // A slow sample (a big bucket to list) shifts the next, not a burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let outcome: anyhow::Result<ProduceReport> = loop {
        tokio::select! {
            done = &mut producing => break done.map_err(anyhow::Error::from).and_then(|r| r.map(|r| r.0)),
            _ = tick.tick() => match sampler.sample().await {
                Ok(s) => {
                    eprintln!("[long-run] {}", row(&s).trim());
                    samples.push(s);
                }
                Err(e) => {
                    // The load ends with the sampling: the figures would have a hole.
                    stop.store(true, Ordering::Release);
                    let _ = producing.await;
                    return Err(e.context("sampling"));
                }
            }
        }
    };
    let load = outcome?;
    // The load's end (it may wait for its last acks) is worth a sample
    // unless one was just taken.
    if samples.last().is_none_or(|s| started.elapsed().as_secs_f64() - s.t_s > 1.0) {
        samples.push(sampler.sample().await?);
    }
    Ok((samples, load))
}

/// The topic with its retention, before the load's own CreateTopics (which
/// then finds it there).
async fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    retention_ms: u64,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let retention = retention_ms.to_string();
    let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1)).set("retention.ms", &retention);
    for r in admin.create_topics(&[t], &AdminOptions::new()).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("creating {name}: {code}"),
        }
    }
    Ok(())
}

struct Sampler {
    pid: u32,
    url: String,
    cli_dir: PathBuf,
    bucket: floe_storage::Bucket,
    started: Instant,
    last_cpu: (Instant, f64),
    last_seq: Option<u64>,
}

impl Sampler {
    async fn sample(&mut self) -> anyhow::Result<Sample> {
        let status = self.status().await?;
        let (snapshot_bytes, log_entries, log_bytes) = self.metadata().await?;
        let (data_objects, data_bytes) = self.list("data").await.map(|l| sizes(&l))?;
        let now = Instant::now();
        let cpu = super::cpu::process_seconds(self.pid)?;
        let (then, cpu_then) = self.last_cpu;
        let cpu_used = cpu - cpu_then;
        let wall = now.duration_since(then).as_secs_f64().max(1e-3);
        let commits = self.last_seq.map(|s| status.seq.saturating_sub(s));
        self.last_cpu = (now, cpu);
        self.last_seq = Some(status.seq);
        Ok(Sample {
            t_s: now.duration_since(self.started).as_secs_f64(),
            rss_bytes: super::cpu::rss_bytes(self.pid)?,
            cpu_percent: cpu_used / wall * 100.0,
            cpu_seconds: cpu,
            seq: status.seq,
            cpu_ms_per_commit: commits.filter(|c| *c > 0).map(|c| cpu_used * 1000.0 / c as f64),
            snapshot_bytes,
            log_entries,
            log_bytes,
            metadata_bytes: snapshot_bytes + log_bytes,
            objects: status.objects,
            ranges: status.ranges,
            garbage: status.garbage,
            committed_bytes: status.brokers.values().map(|b| b.committed_bytes).sum(),
            bytes_in_per_sec: status.brokers.values().map(|b| b.bytes_in_per_sec).sum(),
            data_objects,
            data_bytes,
        })
    }

    /// `floe cluster status`, retried: a controller busy with a commit may
    /// miss one call, and one miss should not end a long run.
    async fn status(&self) -> anyhow::Result<Status> {
        let mut last = None;
        for _ in 0..3 {
            let (url, dir) = (self.url.clone(), self.cli_dir.clone());
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new(floe_binary()?)
                    .args(["cluster", "status", "--object-store", &url, "--data-dir"])
                    .arg(dir)
                    .env("FLOE_LOG", "warn")
                    .output()
                    .context("running floe cluster status")
            })
            .await??;
            if out.status.success() {
                return Status::parse(&String::from_utf8_lossy(&out.stdout));
            }
            last = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        anyhow::bail!("floe cluster status failed: {}", last.unwrap_or_default())
    }

    /// The newest snapshot's size, and the log entries' count and size.
    async fn metadata(&self) -> anyhow::Result<(u64, u64, u64)> {
        let snapshots = self.list("meta/snapshot").await?;
        let newest = snapshots.iter().max_by(|a, b| a.location.cmp(&b.location)).map_or(0, |m| m.size);
        let (entries, bytes) = sizes(&self.list("meta/log").await?);
        Ok((newest, entries, bytes))
    }

    /// One directory level: every directory listed is flat.
    async fn list(&self, dir: &str) -> anyhow::Result<Vec<object_store::ObjectMeta>> {
        let prefix = self.bucket.key(dir);
        let listed = self.bucket.store.list_with_delimiter(Some(&prefix)).await;
        Ok(listed.with_context(|| format!("listing {prefix}"))?.objects)
    }
}

fn sizes(objects: &[object_store::ObjectMeta]) -> (u64, u64) {
    (objects.len() as u64, objects.iter().map(|m| m.size).sum())
}

/// The sample the ratios are against: the first after retention + 1
/// minute, and no earlier than the third.
fn baseline(samples: &[Sample], retention_ms: u64) -> (usize, bool) {
    let warm_up = retention_ms as f64 / 1000.0 + 60.0;
    match samples.iter().enumerate().skip(2).find(|(_, s)| s.t_s >= warm_up) {
        Some((i, _)) => (i, true),
        None => (2.min(samples.len().saturating_sub(1)), false),
    }
}

fn ratio(last: f64, first: f64) -> Option<f64> {
    (first > 0.0 && last.is_finite()).then(|| last / first)
}

fn verdict(o: &LongRunOptions, samples: &[Sample]) -> anyhow::Result<Verdict> {
    let last = samples.last().context("no samples: the run was shorter than --sample-seconds")?;
    let (i, warmed_up) = baseline(samples, o.retention_ms);
    let first = &samples[i];
    let r = |f: fn(&Sample) -> f64| ratio(f(last), f(first));
    let nominal = (o.rate as usize * o.record_size) as f64;
    let bytes_in = if last.bytes_in_per_sec > 0 { last.bytes_in_per_sec as f64 } else { nominal };
    let live_estimate_bytes = bytes_in * o.retention_ms as f64 / 1000.0;
    Ok(Verdict {
        baseline: i,
        baseline_t_s: first.t_s,
        warmed_up,
        target_ratio: TARGET_RATIO,
        rss_ratio: r(|s| s.rss_bytes as f64),
        cpu_ratio: r(|s| s.cpu_percent),
        cpu_per_commit_ratio: match (last.cpu_ms_per_commit, first.cpu_ms_per_commit) {
            (Some(l), Some(f)) => ratio(l, f),
            _ => None,
        },
        metadata_ratio: r(|s| s.metadata_bytes as f64),
        snapshot_ratio: r(|s| s.snapshot_bytes as f64),
        log_entry_ratio: r(|s| s.log_bytes as f64 / s.log_entries.max(1) as f64),
        ranges_ratio: r(|s| s.ranges as f64),
        live_estimate_bytes,
        committed_bytes: last.committed_bytes,
        data_bytes: last.data_bytes,
        data_objects: last.data_objects,
        data_to_live: ratio(last.data_bytes as f64, live_estimate_bytes),
        data_to_committed: ratio(last.data_bytes as f64, last.committed_bytes as f64),
    })
}

const HEADER: &str = "      t s   RSS MB   CPU %  ms/commit    commits  meta KB  snap KB  log n  objects   ranges  garbage  data obj  data MB  committed MB";

fn row(s: &Sample) -> String {
    let kb = |b: u64| b as f64 / 1e3;
    let mb = |b: u64| b as f64 / 1e6;
    format!(
        "{:>9.0} {:>8.1} {:>7.1} {:>10} {:>10} {:>8.1} {:>8.1} {:>6} {:>8} {:>8} {:>8} {:>9} {:>8.2} {:>13.2}",
        s.t_s,
        mb(s.rss_bytes),
        s.cpu_percent,
        s.cpu_ms_per_commit.map_or("-".into(), |c| format!("{c:.2}")),
        s.seq,
        kb(s.metadata_bytes),
        kb(s.snapshot_bytes),
        s.log_entries,
        s.objects,
        s.ranges,
        s.garbage,
        s.data_objects,
        mb(s.data_bytes),
        mb(s.committed_bytes)
    )
}

/// The samples as a table, then the verdict.
pub fn render(r: &LongRunReport) -> String {
    let mut out = String::new();
    let compaction = r.compaction_interval_ms.map_or("default".into(), |ms| format!("{ms} ms"));
    let _ = writeln!(
        out,
        "long-run: {} partitions, {} B records at {}/s, retention {} s, uploads every {} ms, compaction {compaction}",
        r.partitions,
        r.record_size,
        r.rate,
        r.retention_ms / 1000,
        r.upload_interval_ms
    );
    let _ = writeln!(
        out,
        "  load: acked {} failed {} in {:.0} s ({:.0} records/s)",
        r.load.acked, r.load.failed, r.load.seconds, r.load.records_per_s
    );
    let _ = writeln!(out, "{HEADER}");
    for s in &r.samples {
        let _ = writeln!(out, "{}", row(s));
    }
    let v = &r.verdict;
    let _ = writeln!(
        out,
        "ratios: last sample ({:.0} s) to sample {} ({:.0} s{}), target <= {}x",
        r.samples.last().map_or(0.0, |s| s.t_s),
        v.baseline + 1,
        v.baseline_t_s,
        if v.warmed_up { ", after warm-up" } else { ", warm-up not reached: the run is too short" },
        v.target_ratio
    );
    for (name, value) in [
        ("RSS", v.rss_ratio),
        ("CPU", v.cpu_ratio),
        ("CPU per commit", v.cpu_per_commit_ratio),
        ("metadata (snapshot + log)", v.metadata_ratio),
        ("metadata snapshot", v.snapshot_ratio),
        ("metadata log entry (mean)", v.log_entry_ratio),
        ("ranges", v.ranges_ratio),
    ] {
        let verdict = match value {
            Some(x) if x <= v.target_ratio => "ok",
            Some(_) => "OVER",
            None => "",
        };
        let shown = value.map_or("-".into(), |x| format!("{x:.2}x"));
        let _ = writeln!(out, "  {name:<28}{shown:>9}  {verdict}");
    }
    let times = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.2}x"));
    let _ = writeln!(
        out,
        "  bucket data: {} objects, {:.2} MB = {} the live estimate ({:.2} MB = bytes in/s x retention), {} committed ({:.2} MB)",
        v.data_objects,
        v.data_bytes as f64 / 1e6,
        times(v.data_to_live),
        v.live_estimate_bytes / 1e6,
        times(v.data_to_committed),
        v.committed_bytes as f64 / 1e6
    );
    out
}

/// RSS, metadata size, ranges, objects and the bucket's bytes over time.
pub fn panels(r: &LongRunReport) -> Vec<Panel<'static>> {
    let over =
        |f: fn(&Sample) -> f64| -> Vec<(f64, f64)> { r.samples.iter().map(|s| (s.t_s, f(s))).collect() };
    let line = |name, f| Line { name, points: over(f) };
    vec![
        Panel { title: "broker RSS", unit: "MB", lines: vec![line("RSS", |s| s.rss_bytes as f64 / 1e6)] },
        Panel {
            title: "metadata",
            unit: "MB",
            lines: vec![
                line("snapshot + log", |s| s.metadata_bytes as f64 / 1e6),
                line("snapshot", |s| s.snapshot_bytes as f64 / 1e6),
            ],
        },
        Panel { title: "ranges", unit: "count", lines: vec![line("ranges", |s| s.ranges as f64)] },
        Panel {
            title: "objects",
            unit: "count",
            lines: vec![
                line("live", |s| s.objects as f64),
                line("garbage", |s| s.garbage as f64),
                line("in data/", |s| s.data_objects as f64),
            ],
        },
        Panel {
            title: "bucket",
            unit: "MB",
            lines: vec![
                line("data/", |s| s.data_bytes as f64 / 1e6),
                line("committed", |s| s.committed_bytes as f64 / 1e6),
            ],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t_s: f64, rss: u64) -> Sample {
        Sample {
            t_s,
            rss_bytes: rss,
            cpu_percent: 10.0,
            cpu_seconds: t_s / 10.0,
            seq: t_s as u64 * 10,
            cpu_ms_per_commit: Some(1.0),
            snapshot_bytes: 1000,
            log_entries: 10,
            log_bytes: 500,
            metadata_bytes: 1500,
            objects: 5,
            ranges: 50,
            garbage: 1,
            committed_bytes: 1_000_000,
            bytes_in_per_sec: 10_000,
            data_objects: 6,
            data_bytes: 1_200_000,
        }
    }

    #[test]
    fn the_baseline_is_after_warm_up_and_not_before_the_third_sample() {
        let samples: Vec<Sample> = (1..=10).map(|i| at(30.0 * i as f64, 100)).collect();
        // Retention 60 s: warm-up ends at 120 s, the fourth sample.
        assert_eq!(baseline(&samples, 60_000), (3, true));
        // Retention 1 s: warm-up at 61 s, but never before the third sample.
        assert_eq!(baseline(&samples, 1_000), (2, true));
        // Too short a run: its third sample, marked.
        assert_eq!(baseline(&samples[..4], 300_000), (2, false));
        assert_eq!(baseline(&samples[..1], 300_000), (0, false));
    }

    #[test]
    fn ratios_are_last_over_baseline() {
        let mut samples: Vec<Sample> = (1..=6).map(|i| at(30.0 * i as f64, 100)).collect();
        samples[5].rss_bytes = 150;
        let o = LongRunOptions {
            object_store: "file:///nowhere".into(),
            partitions: 10,
            rate: 100,
            record_size: 100,
            duration: Duration::from_secs(180),
            sample_every: Duration::from_secs(30),
            retention_ms: 60_000,
            upload_interval_ms: 100,
            retention_check_interval_ms: 10_000,
            object_delete_delay_ms: 10_000,
            compaction_interval_ms: None,
            broker_args: vec![],
            client_config: vec![],
            keep_log: None,
        };
        let v = verdict(&o, &samples).unwrap();
        assert_eq!(v.baseline, 3);
        assert!((v.rss_ratio.unwrap() - 1.5).abs() < 1e-9);
        assert!((v.metadata_ratio.unwrap() - 1.0).abs() < 1e-9);
        // 10 KB/s for 60 s is 600 KB live; the bucket holds 1.2 MB.
        assert!((v.data_to_live.unwrap() - 2.0).abs() < 1e-9);
        assert!((v.data_to_committed.unwrap() - 1.2).abs() < 1e-9);
        assert!(broker_args(&o).windows(2).any(|w| w == ["--upload-interval-ms", "100"]));
        assert!(!broker_args(&o).contains(&"--compaction-interval-ms".to_string()));
    }
}
