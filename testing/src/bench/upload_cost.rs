//! The `upload-cost` scenario: object-store requests per second and per GB
//! at a given load, for several partition counts, and the monthly S3 request
//! bill that implies at list prices. Each partition count runs its own
//! broker behind the counting proxy on a fresh bucket prefix.

use hdrhistogram::Histogram;
use serde::Serialize;

use super::produce::{self, ProduceOptions};
use super::target::{Kind, TargetSpec};
use crate::s3_proxy::{Counts, LatencyProxy};

/// S3 standard list prices (us-east-1), dollars per 1,000 requests.
pub const PUT_PRICE_PER_1000: f64 = 0.005;
pub const GET_PRICE_PER_1000: f64 = 0.0004;
const SECONDS_PER_MONTH: f64 = 30.0 * 24.0 * 3600.0;

#[derive(Debug, Clone, Serialize)]
pub struct CostRow {
    pub partitions: i32,
    pub seconds: f64,
    pub mb_written: f64,
    pub requests: Counts,
    pub puts_per_s: f64,
    pub puts_per_gb: f64,
    pub gets_per_s: f64,
    /// Requests of this load for a month, at list prices, in dollars.
    pub monthly_request_bill: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UploadCostReport {
    pub scenario: &'static str,
    pub target: Kind,
    pub rate: u64,
    pub record_size: usize,
    pub rows: Vec<CostRow>,
}

/// One partition count's load, for the picture: ack latency histogram (µs)
/// and acks per second.
pub struct CostRun {
    pub partitions: i32,
    pub latency_us: Histogram<u64>,
    pub per_second: Vec<u64>,
}

/// Runs `load` against a fresh broker per partition count, all of whose
/// object-store requests go through `proxy`.
pub async fn run(
    spec: &TargetSpec,
    proxy: &LatencyProxy,
    partition_counts: &[i32],
    load: &ProduceOptions,
    run_id: &str,
) -> anyhow::Result<(UploadCostReport, Vec<CostRun>)> {
    let endpoint = format!("http://{}", proxy.addr);
    let mut rows = Vec::new();
    let mut runs = Vec::new();
    for &partitions in partition_counts {
        let prefix = format!("{run_id}-cost-{}-{partitions}", spec.kind.name());
        let mut broker = spec.start(&endpoint, &prefix)?;
        let before = proxy.counts.snapshot();
        let o = ProduceOptions {
            bootstrap: broker.bootstrap(),
            topic: "upload-cost".into(),
            partitions,
            broker_pid: broker.pid(),
            ..load.clone()
        };
        let (r, latency_us) = produce::run(&o).await?;
        runs.push(CostRun { partitions, latency_us, per_second: r.timeline.clone() });
        // A graceful stop uploads the tail: every byte produced is paid for.
        broker.stop()?;
        let after = proxy.counts.snapshot();
        let d = after.since(&before);
        let seconds = r.seconds.max(0.001);
        let gb = r.acked as f64 * r.record_size as f64 / 1e9;
        let puts_per_s = d.put as f64 / seconds;
        let gets_per_s = (d.get + d.list + d.head) as f64 / seconds;
        rows.push(CostRow {
            partitions,
            seconds,
            mb_written: gb * 1000.0,
            requests: d,
            puts_per_s,
            puts_per_gb: if gb > 0.0 { d.put as f64 / gb } else { 0.0 },
            gets_per_s,
            monthly_request_bill: (puts_per_s * PUT_PRICE_PER_1000 + gets_per_s * GET_PRICE_PER_1000)
                / 1000.0
                * SECONDS_PER_MONTH,
        });
    }
    let report = UploadCostReport {
        scenario: "upload-cost",
        target: spec.kind,
        rate: load.rate,
        record_size: load.record_size,
        rows,
    };
    Ok((report, runs))
}
