//! The `upload-cost` scenario: object-store requests per second and per GB
//! at a given load, for several partition counts, and the monthly S3 request
//! bill that implies at list prices. Each partition count runs its own Floe
//! behind a counting proxy (no added delay) on a fresh bucket prefix.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::produce::{self, ProduceOptions};
use crate::s3_proxy::{Counts, Delay, LatencyProxy};
use crate::{BrokerProcess, ObjectStore};

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
    pub rate: u64,
    pub record_size: usize,
    pub rows: Vec<CostRow>,
}

/// Runs `load` against a fresh Floe per partition count.
pub async fn run(
    upstream: SocketAddr,
    bucket: &str,
    partition_counts: &[i32],
    load: &ProduceOptions,
) -> anyhow::Result<UploadCostReport> {
    let mut rows = Vec::new();
    for &partitions in partition_counts {
        let proxy = LatencyProxy::start("127.0.0.1:0".parse()?, upstream, Delay::NONE).await?;
        let endpoint = format!("http://{}", proxy.addr);
        let scratch = tempfile::tempdir()?;
        let store =
            ObjectStore { url: format!("s3://{bucket}/upload-cost-{}-{partitions}", std::process::id()) };
        let count = partitions.to_string();
        let mut broker = BrokerProcess::start_with_env(
            &scratch.path().join("data"),
            &store,
            &["--num-partitions", &count],
            &[("AWS_ENDPOINT_URL", &endpoint)],
        )?;
        let before = proxy.counts.snapshot();
        let o = ProduceOptions {
            bootstrap: broker.bootstrap(),
            topic: "upload-cost".into(),
            partitions,
            ..load.clone()
        };
        let (r, _) = produce::run(&o).await?;
        // Graceful stop uploads the tail: every byte produced is paid for.
        let status = broker.stop()?;
        anyhow::ensure!(status.success(), "floe exited with {status}");
        let after = proxy.counts.snapshot();
        let d = Counts {
            put: after.put - before.put,
            get: after.get - before.get,
            list: after.list - before.list,
            head: after.head - before.head,
            delete: after.delete - before.delete,
            other: after.other - before.other,
        };
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
        drop(proxy);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(UploadCostReport { scenario: "upload-cost", rate: load.rate, record_size: load.record_size, rows })
}
