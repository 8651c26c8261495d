//! The `compare` suite: the machine's limits, then each scenario against
//! Floe and a peer at each object-store latency, in one invocation, with a
//! table of every figure as a ratio to the peer and to the limits, JSON, and
//! one picture per scenario and latency.

use std::net::SocketAddr;
use std::path::PathBuf;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::catch_up::{self, CatchUpOptions, CatchUpReport};
use super::chart::{self, Series};
use super::end_to_end::{self, EndToEndReport};
use super::limits::{self, Limits};
use super::produce::{self, ProduceOptions, ProduceReport};
use super::target::{BrokerLatency, Kind, TargetSpec};
use super::upload_cost::{self, UploadCostReport};
use crate::s3_proxy::{Delay, LatencyProxy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Produce,
    EndToEnd,
    CatchUp,
    UploadCost,
}

#[derive(Debug, Clone, Serialize)]
pub struct S3Latency {
    pub label: String,
    pub median_ms: u64,
    pub p99_ms: u64,
}

#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub targets: Vec<TargetSpec>,
    pub latencies: Vec<S3Latency>,
    pub scenarios: Vec<Scenario>,
    /// The S3 server both brokers use, behind a proxy per latency.
    pub upstream: SocketAddr,
    /// Record size, producers, partitions, acks, compression, duration.
    pub load: ProduceOptions,
    /// Records per second for end-to-end.
    pub e2e_rate: u64,
    /// Live load during catch-up, records per second.
    pub live_rate: u64,
    pub history_bytes: u64,
    pub cost_partitions: Vec<i32>,
    pub cost_rate: u64,
    /// Where the limits are measured: the disk the brokers' WALs are on.
    pub limits_dir: PathBuf,
    pub limits_small_writes: usize,
    pub limits_large_mib: usize,
    /// Pictures go here, one per scenario and latency.
    pub out: Option<PathBuf>,
}

/// Everything one broker did at one object-store latency.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub target: Kind,
    pub s3: String,
    pub produce_max: Option<ProduceReport>,
    /// At half of `produce_max`'s rate: the latency target's load.
    pub produce_half: Option<ProduceReport>,
    /// Floe's own account of `produce_half` (None for a peer).
    pub broker_half: Option<BrokerLatency>,
    pub end_to_end: Option<EndToEndReport>,
    pub catch_up: Option<CatchUpReport>,
    pub upload_cost: Option<UploadCostReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub scenario: &'static str,
    pub limits: Limits,
    pub s3_latencies: Vec<S3Latency>,
    pub runs: Vec<Run>,
}

/// One broker's latency histogram (µs) and per-second counts, kept for the
/// pictures (not in the JSON).
struct Picture {
    scenario: &'static str,
    /// The line's name in the legend.
    label: String,
    s3: String,
    latency_us: Histogram<u64>,
    per_second: Vec<u64>,
}

pub async fn run(o: &CompareOptions) -> anyhow::Result<CompareReport> {
    eprintln!("[compare] limits on {}", o.limits_dir.display());
    let limits = limits::measure(&o.limits_dir, o.limits_small_writes, o.limits_large_mib, 10_000)?;
    let run_id = format!("bench-{}-{}", std::process::id(), super::now_micros() / 1_000_000);
    let mut runs = Vec::new();
    let mut pictures: Vec<Picture> = Vec::new();
    for lat in &o.latencies {
        let delay = Delay {
            median: std::time::Duration::from_millis(lat.median_ms),
            p99: std::time::Duration::from_millis(lat.p99_ms),
        };
        let proxy = LatencyProxy::start("127.0.0.1:0".parse()?, o.upstream, delay).await?;
        let endpoint = format!("http://{}", proxy.addr);
        for spec in &o.targets {
            let name = spec.kind.name();
            let mut run = Run {
                target: spec.kind,
                s3: lat.label.clone(),
                produce_max: None,
                produce_half: None,
                broker_half: None,
                end_to_end: None,
                catch_up: None,
                upload_cost: None,
            };
            let prefix = |scenario: &str| format!("{run_id}-{}-{name}-{scenario}", lat.label);
            for scenario in &o.scenarios {
                eprintln!("[compare] {name}, {} S3: {scenario:?}", lat.label);
                match scenario {
                    Scenario::Produce => {
                        let mut b = spec.start(&endpoint, &prefix("produce"))?;
                        let load = ProduceOptions {
                            bootstrap: b.bootstrap(),
                            broker_pid: b.pid(),
                            topic: "bench-max".into(),
                            rate: 0,
                            ..o.load.clone()
                        };
                        let (max, _) = produce::run(&load).await?;
                        b.stop()?;
                        // A fresh broker for the half-rate run, so its own
                        // account of where the time went covers that run only.
                        let mut b = spec.start(&endpoint, &prefix("produce-half"))?;
                        let half_rate = ((max.records_per_s / 2.0).round() as u64).max(1);
                        let half = ProduceOptions {
                            bootstrap: b.bootstrap(),
                            broker_pid: b.pid(),
                            topic: "bench-half".into(),
                            rate: half_rate,
                            ..load
                        };
                        let (half, hist) = produce::run(&half).await?;
                        run.broker_half = b.stop()?;
                        pictures.push(Picture {
                            scenario: "produce",
                            label: name.into(),
                            s3: lat.label.clone(),
                            latency_us: hist,
                            per_second: half.timeline.clone(),
                        });
                        run.produce_max = Some(max);
                        run.produce_half = Some(half);
                    }
                    Scenario::EndToEnd => {
                        let mut b = spec.start(&endpoint, &prefix("e2e"))?;
                        let load = ProduceOptions {
                            bootstrap: b.bootstrap(),
                            broker_pid: b.pid(),
                            topic: "bench-e2e".into(),
                            rate: o.e2e_rate,
                            ..o.load.clone()
                        };
                        let (r, hist) = end_to_end::run(&load).await?;
                        b.stop()?;
                        pictures.push(Picture {
                            scenario: "end-to-end",
                            label: name.into(),
                            s3: lat.label.clone(),
                            latency_us: hist,
                            per_second: r.produce.timeline.clone(),
                        });
                        run.end_to_end = Some(r);
                    }
                    Scenario::CatchUp => {
                        let mut b = spec.start(&endpoint, &prefix("catch-up"))?;
                        let c = CatchUpOptions {
                            load: ProduceOptions {
                                bootstrap: b.bootstrap(),
                                topic: "bench-catch-up".into(),
                                rate: o.live_rate,
                                ..o.load.clone()
                            },
                            history_bytes: o.history_bytes,
                            history_partitions: o.load.partitions,
                            baseline: o.load.duration.min(std::time::Duration::from_secs(5)),
                            write_timeout: std::time::Duration::from_secs(60),
                            read_timeout: std::time::Duration::from_secs(300),
                        };
                        let history = catch_up::write_history(&c).await?;
                        b.restart()?;
                        let (r, before, during) = catch_up::read_while_producing(&c, history, true).await?;
                        b.stop()?;
                        pictures.push(Picture {
                            scenario: "catch-up",
                            label: format!("{name}, during read"),
                            s3: lat.label.clone(),
                            latency_us: during,
                            per_second: r.read_timeline.clone(),
                        });
                        pictures.push(Picture {
                            scenario: "catch-up",
                            label: format!("{name}, before"),
                            s3: lat.label.clone(),
                            latency_us: before,
                            per_second: Vec::new(),
                        });
                        run.catch_up = Some(r);
                    }
                    Scenario::UploadCost => {
                        let load = ProduceOptions { rate: o.cost_rate, ..o.load.clone() };
                        let (r, runs) =
                            upload_cost::run(spec, &proxy, &o.cost_partitions, &load, &prefix("cost"))
                                .await?;
                        for c in runs {
                            pictures.push(Picture {
                                scenario: "upload-cost",
                                label: format!("{name}, {} partitions", c.partitions),
                                s3: lat.label.clone(),
                                latency_us: c.latency_us,
                                per_second: c.per_second,
                            });
                        }
                        run.upload_cost = Some(r);
                    }
                }
            }
            runs.push(run);
        }
    }
    let report = CompareReport { scenario: "compare", limits, s3_latencies: o.latencies.clone(), runs };
    if let Some(dir) = &o.out {
        std::fs::create_dir_all(dir)?;
        let kinds = [
            ("produce", "ack latency at half max rate", "acks"),
            ("end-to-end", "end-to-end latency", "acks"),
            ("catch-up", "live acks before and during a cold read", "history records read"),
            ("upload-cost", "ack latency of the upload-cost load", "acks"),
        ];
        for (scenario, what, unit) in kinds {
            for lat in &o.latencies {
                let series: Vec<Series<'_>> = pictures
                    .iter()
                    .filter(|p| p.scenario == scenario && p.s3 == lat.label)
                    .map(|p| Series { name: &p.label, latency_us: &p.latency_us, per_second: &p.per_second })
                    .collect();
                if series.is_empty() {
                    continue;
                }
                let title = format!(
                    "{scenario}: {what}, {} B records, S3 {} (+{} ms median)",
                    o.load.record_size, lat.label, lat.median_ms
                );
                let path = dir.join(format!("{scenario}-{}.svg", lat.label));
                std::fs::write(path, chart::svg(&title, &series, unit))?;
            }
        }
    }
    Ok(report)
}
