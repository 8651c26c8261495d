//! The comparison table: every figure for each broker at each object-store
//! latency, Floe's value as a ratio to the peer's, and as a ratio to the
//! machine's limit where one applies (ratios hold across noisy machines).

use std::fmt::Write;

use super::compare::{CompareReport, Run};
use super::limits::Limits;
use super::target::Kind;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
}

type Value = Box<dyn Fn(&Run) -> Option<f64>>;
type ToLimit = Box<dyn Fn(f64, &Limits) -> f64>;

struct Figure {
    name: String,
    better: Better,
    value: Value,
    /// Floe's value against the machine: (label, ratio).
    limit: Option<(&'static str, ToLimit)>,
}

fn figure(name: &str, better: Better, value: impl Fn(&Run) -> Option<f64> + 'static) -> Figure {
    Figure { name: name.into(), better, value: Box::new(value), limit: None }
}

fn figures(r: &CompareReport) -> Vec<Figure> {
    use Better::*;
    let mut f = vec![
        Figure {
            limit: Some(("of disk MB/s", Box::new(|v, l: &Limits| v / l.durable_write_mb_per_s))),
            ..figure("produce max MB/s", Higher, |r| r.produce_max.as_ref().map(|p| p.mb_per_s))
        },
        figure("produce max records/s", Higher, |r| r.produce_max.as_ref().map(|p| p.records_per_s)),
        figure("ack p50 ms @ half max", Lower, |r| r.produce_half.as_ref().map(|p| p.ack_latency.p50_ms)),
        Figure {
            limit: Some(("x fsync p99", Box::new(|v, l: &Limits| v / l.fsync_4k.p99_ms))),
            ..figure("ack p99 ms @ half max", Lower, |r| {
                r.produce_half.as_ref().map(|p| p.ack_latency.p99_ms)
            })
        },
        figure("ack p99.9 ms @ half max", Lower, |r| r.produce_half.as_ref().map(|p| p.ack_latency.p999_ms)),
        figure("  broker: read→durable p99 ms", Lower, |r| {
            r.broker_half.as_ref().map(|b| b.to_durable.p99_ms)
        }),
        figure("  broker: WAL commit p99 ms", Lower, |r| r.broker_half.as_ref().map(|b| b.wal_commit.p99_ms)),
        figure("  broker: WAL commit max ms", Lower, |r| r.broker_half.as_ref().map(|b| b.wal_commit.max_ms)),
        figure("broker CPU s/GB @ max", Lower, |r| r.produce_max.as_ref().and_then(|p| p.cpu_seconds_per_gb)),
        figure("end-to-end p50 ms", Lower, |r| r.end_to_end.as_ref().map(|e| e.end_to_end.p50_ms)),
        figure("end-to-end p99 ms", Lower, |r| r.end_to_end.as_ref().map(|e| e.end_to_end.p99_ms)),
        figure("catch-up read MB/s", Higher, |r| r.catch_up.as_ref().map(|c| c.read_mb_per_s)),
        figure("catch-up first record ms", Lower, |r| r.catch_up.as_ref().map(|c| c.first_record_ms)),
        figure("catch-up ack p99 worsening x", Lower, |r| r.catch_up.as_ref().map(|c| c.p99_worsening)),
    ];
    let counts: Vec<i32> = r
        .runs
        .iter()
        .filter_map(|r| r.upload_cost.as_ref())
        .flat_map(|c| c.rows.iter().map(|row| row.partitions))
        .fold(Vec::new(), |mut v, p| {
            if !v.contains(&p) {
                v.push(p);
            }
            v
        });
    for p in counts {
        let row = move |r: &Run| r.upload_cost.as_ref()?.rows.iter().find(|row| row.partitions == p).cloned();
        f.push(figure(&format!("PUT/s @ {p} partitions"), Lower, move |r| row(r).map(|x| x.puts_per_s)));
        f.push(figure(&format!("requests $/month @ {p} part."), Lower, move |r| {
            row(r).map(|x| x.monthly_request_bill)
        }));
    }
    f
}

/// Renders the table as fixed-width text.
pub fn render(r: &CompareReport) -> String {
    let mut kinds: Vec<Kind> = Vec::new();
    for run in &r.runs {
        if !kinds.contains(&run.target) {
            kinds.push(run.target);
        }
    }
    let peers: Vec<Kind> = kinds.iter().copied().filter(|k| *k != Kind::Floe).collect();
    let has_floe = kinds.contains(&Kind::Floe);
    let mut out = String::new();
    let l = &r.limits;
    let _ = writeln!(
        out,
        "limits: 4 KiB fsync p50 {:.3} ms p99 {:.3} ms; 1 MiB durable writes {:.0} MB/s; loopback p50 {:.3} ms",
        l.fsync_4k.p50_ms, l.fsync_4k.p99_ms, l.durable_write_mb_per_s, l.loopback_rtt.p50_ms
    );
    let per_latency = kinds.len() + if has_floe { peers.len() + 1 } else { 0 };
    let width = 11;
    let _ = write!(out, "{:<32}", "");
    for s3 in &r.s3_latencies {
        let label = format!("S3 {} (+{}/{} ms)", s3.label, s3.median_ms, s3.p99_ms);
        let _ = write!(out, "| {label:<w$}", w = per_latency * width);
    }
    let _ = writeln!(out);
    let _ = write!(out, "{:<32}", "figure");
    for _ in &r.s3_latencies {
        let _ = write!(out, "|");
        for k in &kinds {
            let _ = write!(out, "{:>width$}", k.name());
        }
        if has_floe {
            for p in &peers {
                let _ = write!(out, "{:>width$}", format!("floe/{}", p.name()));
            }
            let _ = write!(out, "{:>width$}", "vs limit");
        }
        let _ = write!(out, " ");
    }
    let _ = writeln!(out);
    for f in figures(r) {
        let arrow = if f.better == Better::Higher { "↑" } else { "↓" };
        let mut line = format!("{:<31}{arrow}", f.name);
        let mut any = false;
        let mut limit_note = "";
        for s3 in &r.s3_latencies {
            line += "|";
            let value = |k: Kind| {
                r.runs.iter().find(|run| run.target == k && run.s3 == s3.label).and_then(|run| (f.value)(run))
            };
            for k in &kinds {
                let v = value(*k);
                any |= v.is_some();
                line += &format!("{:>width$}", v.map(num).unwrap_or_else(|| "-".into()));
            }
            if has_floe {
                for p in &peers {
                    let ratio = match (value(Kind::Floe), value(*p)) {
                        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
                        _ => "-".into(),
                    };
                    line += &format!("{ratio:>width$}");
                }
                let vs = match (&f.limit, value(Kind::Floe)) {
                    (Some((label, ratio)), Some(v)) => {
                        limit_note = label;
                        format!("{:.2}x", ratio(v, l))
                    }
                    _ => "".into(),
                };
                line += &format!("{vs:>width$}");
            }
            line += " ";
        }
        if any {
            if !limit_note.is_empty() {
                line += &format!("(vs limit: {limit_note})");
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    out
}

/// Three significant figures, without exponent noise.
fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
