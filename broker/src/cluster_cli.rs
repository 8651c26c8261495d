//! `floe cluster status | move | drain`: admin of a running cluster, found
//! through the controller lease in its bucket.

use std::time::Duration;

use anyhow::{bail, Context};

use crate::config::{BrokerConfig, ClusterAction};
use crate::proto::{self, admin_request::Op, controller_client::ControllerClient};

/// Runs one cluster command against the cluster on `config.object_store`;
/// prints its answer to stdout.
pub async fn run(config: &BrokerConfig, action: ClusterAction) -> anyhow::Result<()> {
    let bucket = floe_storage::Bucket::open(&config.object_store, Duration::from_secs(10))?;
    let lease =
        floe_storage::meta::ControllerLease::new(bucket, -1, String::new(), String::new(), Duration::ZERO);
    let Some(current) = lease.current().await? else {
        bail!("no cluster has run on {} (no controller lease)", config.object_store);
    };
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", current.rpc))?
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .with_context(|| {
            format!("cannot reach the controller (broker {}) at {}", current.holder, current.rpc)
        })?;
    let mut client = ControllerClient::new(channel);
    let op = match &action {
        ClusterAction::Status => Op::Status(proto::ClusterStatusRequest {}),
        ClusterAction::Move { topic, partition, broker } => Op::MovePartition(proto::MovePartition {
            topic: topic.clone(),
            partition: *partition,
            broker_id: *broker,
        }),
        ClusterAction::Drain { broker } => Op::DrainBroker(proto::DrainBroker { broker_id: *broker }),
    };
    let resp = client
        .admin(proto::AdminRequest { op: Some(op) })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", code_name(s.code()), s.message()))?
        .into_inner();
    let mut out = String::new();
    match action {
        ClusterAction::Status => {
            out.push_str(&format!(
                "controller {} term {} metadata seq {} moving {} unassigned {} objects {} ranges {} garbage {}\n",
                resp.controller,
                resp.term,
                resp.seq,
                resp.moving,
                resp.unassigned,
                resp.objects,
                resp.ranges,
                resp.garbage
            ));
            out.push_str("broker  epoch  state     address                 partitions  committed_bytes  upload_lag_bytes  applied_seq  bytes_in/s  bytes_out/s\n");
            for b in &resp.brokers {
                let state = match (b.live, b.draining) {
                    (false, _) => "fenced",
                    (true, true) => "draining",
                    (true, false) => "live",
                };
                out.push_str(&format!(
                    "{:<7} {:<6} {:<9} {:<23} {:<11} {:<16} {:<17} {:<12} {:<11} {}\n",
                    b.broker_id,
                    b.broker_epoch,
                    state,
                    b.kafka_address,
                    b.partitions,
                    b.committed_bytes,
                    b.pending_upload_bytes,
                    b.applied_seq,
                    b.bytes_in_per_sec,
                    b.bytes_out_per_sec
                ));
            }
        }
        ClusterAction::Move { .. } | ClusterAction::Drain { .. } => {
            out.push_str(&format!("started (metadata seq {})\n", resp.seq));
        }
    }
    use std::io::Write;
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "invalid",
        tonic::Code::NotFound => "not found",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::FailedPrecondition => "refused",
        _ => "failed",
    }
}
