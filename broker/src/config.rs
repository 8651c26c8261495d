//! Broker settings: command-line flags, each also settable by a `FLOE_*`
//! environment variable and by a TOML file (`--config`). Precedence: flag,
//! then environment, then file, then default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use serde::Deserialize;

/// Kafka's `message.max.bytes` default: the largest record batch accepted.
pub const DEFAULT_MESSAGE_MAX_BYTES: i32 = 1_048_588;

#[derive(Debug, Clone, Default, Parser, Deserialize)]
#[command(
    name = "floe",
    version,
    about = "Floe: a Kafka-compatible broker whose durable home is object storage"
)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Args {
    /// Without a command, `floe` runs a broker.
    #[command(subcommand)]
    #[serde(skip)]
    pub command: Option<Command>,
    /// TOML file with any of these settings (keys as the long flag names).
    #[arg(long, env = "FLOE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to serve Kafka on [default: 127.0.0.1:9092].
    #[arg(long, env = "FLOE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// HOST:PORT clients should connect to [default: the listen address].
    #[arg(long, env = "FLOE_ADVERTISE")]
    pub advertise: Option<String>,
    /// Directory for the WAL and, by default, the objects [default: ./floe-data].
    #[arg(long, env = "FLOE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// file://PATH or s3://BUCKET/PREFIX (S3 settings from AWS_ENDPOINT_URL,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION) [default: file://DATA_DIR/objects].
    #[arg(long, env = "FLOE_OBJECT_STORE", global = true)]
    pub object_store: Option<String>,
    /// Address of this broker's control-plane (gRPC) endpoint [default: 127.0.0.1:0, a free port].
    #[arg(long, env = "FLOE_RPC_LISTEN")]
    pub rpc_listen: Option<SocketAddr>,
    /// HOST:PORT other brokers reach the control plane at [default: the bound rpc address].
    #[arg(long, env = "FLOE_RPC_ADVERTISE")]
    pub rpc_advertise: Option<String>,
    /// A broker that cannot renew its lease for this long stops acknowledging writes [default: 3000].
    #[arg(long, env = "FLOE_BROKER_LEASE_MS")]
    pub broker_lease_ms: Option<u64>,
    /// How long the controller lease lasts without renewal [default: 3000].
    #[arg(long, env = "FLOE_CONTROLLER_LEASE_MS")]
    pub controller_lease_ms: Option<u64>,
    /// Default retention by time for topics without retention.ms, as Kafka's
    /// log.retention.ms; -1 keeps data forever [default: 604800000, 7 days].
    #[arg(long, env = "FLOE_LOG_RETENTION_MS", allow_negative_numbers = true)]
    pub log_retention_ms: Option<i64>,
    /// Default retention by size per partition for topics without
    /// retention.bytes, as Kafka's log.retention.bytes; -1: no limit [default: -1].
    #[arg(long, env = "FLOE_LOG_RETENTION_BYTES", allow_negative_numbers = true)]
    pub log_retention_bytes: Option<i64>,
    /// How often the controller applies retention, as Kafka's
    /// log.retention.check.interval.ms [default: 300000].
    #[arg(long, env = "FLOE_LOG_RETENTION_CHECK_INTERVAL_MS")]
    pub log_retention_check_interval_ms: Option<u64>,
    /// How long an object nothing reads any more stays in the bucket before
    /// it is deleted, for reads still in flight, as Kafka's
    /// file.delete.delay.ms [default: 60000].
    #[arg(long, env = "FLOE_OBJECT_DELETE_DELAY_MS")]
    pub object_delete_delay_ms: Option<u64>,
    /// How often this broker looks for small objects of its partitions to
    /// merge; 0 turns compaction off [default: 10000].
    #[arg(long, env = "FLOE_COMPACTION_INTERVAL_MS")]
    pub compaction_interval_ms: Option<u64>,
    /// This broker's id, unique in the cluster [default: 0].
    #[arg(long, env = "FLOE_BROKER_ID")]
    pub broker_id: Option<i32>,
    /// Create unknown topics on first use, as Kafka's auto.create.topics.enable [default: true].
    #[arg(long, env = "FLOE_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics and of CreateTopics without a count [default: 1].
    #[arg(long, env = "FLOE_NUM_PARTITIONS")]
    pub num_partitions: Option<i32>,
    /// Largest request accepted, as socket.request.max.bytes [default: 104857600].
    #[arg(long, env = "FLOE_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Largest record batch accepted unless a topic sets max.message.bytes [default: 1048588].
    #[arg(long, env = "FLOE_MESSAGE_MAX_BYTES")]
    pub message_max_bytes: Option<i32>,
    /// Upload the WAL to the object store at least this often, in ms [default: 500].
    #[arg(long, env = "FLOE_UPLOAD_INTERVAL_MS")]
    pub upload_interval_ms: Option<u64>,
    /// Upload as soon as this many bytes wait [default: 16777216].
    #[arg(long, env = "FLOE_UPLOAD_BYTES")]
    pub upload_bytes: Option<u64>,
    /// Memory for recent batches after upload, so tailing consumers never
    /// read the object store; more keeps slower consumers off it
    /// [default: 268435456].
    #[arg(long, env = "FLOE_LOG_CACHE_BYTES")]
    pub log_cache_bytes: Option<u64>,
    /// Memory for object ranges read by catch-up consumers; more serves
    /// repeated catch-up reads without GETs [default: 268435456].
    #[arg(long, env = "FLOE_BLOCK_CACHE_BYTES")]
    pub block_cache_bytes: Option<u64>,
    /// Most client connections served at once [default: 10000].
    #[arg(long, env = "FLOE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// How long the first rebalance of an empty group waits for more members,
    /// as Kafka's group.initial.rebalance.delay.ms [default: 3000].
    #[arg(long, env = "FLOE_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,
}

/// Commands other than running a broker.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Inspect and steer the cluster on `--object-store` (through its controller).
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClusterAction {
    /// Brokers, epochs, partitions and bytes per broker, upload lag.
    Status,
    /// Moves one partition to a broker.
    Move { topic: String, partition: i32, broker: i32 },
    /// Moves every partition off a broker (it keeps running, owning nothing).
    Drain { broker: i32 },
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub listen: SocketAddr,
    pub advertise_host: String,
    pub advertise_port: i32,
    pub data_dir: PathBuf,
    pub object_store: String,
    pub broker_id: i32,
    pub auto_create_topics: bool,
    pub num_partitions: i32,
    pub max_request_bytes: usize,
    pub message_max_bytes: i32,
    pub upload_interval: Duration,
    pub upload_bytes: u64,
    pub log_cache_bytes: u64,
    pub block_cache_bytes: u64,
    pub max_connections: usize,
    pub group_initial_rebalance_delay: Duration,
    pub rpc_listen: SocketAddr,
    pub rpc_advertise: Option<String>,
    pub broker_lease: Duration,
    pub controller_lease: Duration,
    pub log_retention_ms: i64,
    pub log_retention_bytes: i64,
    pub log_retention_check_interval: Duration,
    pub object_delete_delay: Duration,
    pub compaction_interval: Duration,
}

impl BrokerConfig {
    /// Merges flags/environment over the `--config` file over defaults.
    pub fn resolve(cli: Args) -> anyhow::Result<Self> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => Args::default(),
        };
        macro_rules! pick {
            ($f:ident, $default:expr) => {
                cli.$f.clone().or(file.$f.clone()).unwrap_or_else(|| $default)
            };
        }
        let listen: SocketAddr = pick!(listen, "127.0.0.1:9092".parse().expect("valid default"));
        let data_dir = pick!(data_dir, PathBuf::from("floe-data"));
        let data_dir =
            std::path::absolute(&data_dir).with_context(|| format!("data dir {}", data_dir.display()))?;
        let object_store = pick!(object_store, format!("file://{}", data_dir.join("objects").display()));
        let advertise = pick!(advertise, listen.to_string());
        let (host, port) = advertise
            .rsplit_once(':')
            .with_context(|| format!("--advertise {advertise:?} must be HOST:PORT"))?;
        let advertise_port: u16 =
            port.parse().with_context(|| format!("--advertise {advertise:?}: bad port"))?;
        let config = Self {
            listen,
            advertise_host: host.trim_matches(|c| c == '[' || c == ']').to_string(),
            advertise_port: i32::from(advertise_port),
            data_dir,
            object_store,
            broker_id: pick!(broker_id, 0),
            auto_create_topics: pick!(auto_create_topics, true),
            num_partitions: pick!(num_partitions, 1),
            max_request_bytes: pick!(max_request_bytes, 100 << 20),
            message_max_bytes: pick!(message_max_bytes, DEFAULT_MESSAGE_MAX_BYTES),
            upload_interval: Duration::from_millis(pick!(upload_interval_ms, 500)),
            upload_bytes: pick!(upload_bytes, 16 << 20),
            log_cache_bytes: pick!(log_cache_bytes, 256 << 20),
            block_cache_bytes: pick!(block_cache_bytes, 256 << 20),
            max_connections: pick!(max_connections, 10_000),
            group_initial_rebalance_delay: Duration::from_millis(pick!(
                group_initial_rebalance_delay_ms,
                3000
            )),
            rpc_listen: pick!(rpc_listen, "127.0.0.1:0".parse().expect("valid default")),
            rpc_advertise: cli.rpc_advertise.clone().or(file.rpc_advertise.clone()),
            broker_lease: Duration::from_millis(pick!(broker_lease_ms, 3000)),
            controller_lease: Duration::from_millis(pick!(controller_lease_ms, 3000)),
            log_retention_ms: pick!(log_retention_ms, 7 * 24 * 3600 * 1000),
            log_retention_bytes: pick!(log_retention_bytes, -1),
            log_retention_check_interval: Duration::from_millis(pick!(
                log_retention_check_interval_ms,
                300_000
            )),
            object_delete_delay: Duration::from_millis(pick!(object_delete_delay_ms, 60_000)),
            compaction_interval: Duration::from_millis(pick!(compaction_interval_ms, 10_000)),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.broker_id < 0 {
            bail!("--broker-id must be >= 0, got {}", self.broker_id);
        }
        if self.num_partitions < 1 {
            bail!("--num-partitions must be >= 1, got {}", self.num_partitions);
        }
        if self.max_request_bytes < 1024 {
            bail!("--max-request-bytes must be at least 1024");
        }
        if self.message_max_bytes < 64 || self.message_max_bytes as usize > 16 << 20 {
            bail!("--message-max-bytes must be between 64 and 16777216 (the WAL entry limit)");
        }
        if self.upload_interval.is_zero() || self.upload_bytes == 0 {
            bail!("--upload-interval-ms and --upload-bytes must be positive");
        }
        if self.broker_lease < Duration::from_millis(300)
            || self.controller_lease < Duration::from_millis(300)
        {
            bail!("--broker-lease-ms and --controller-lease-ms must be at least 300");
        }
        if self.log_retention_ms < -1 || self.log_retention_bytes < -1 {
            bail!("--log-retention-ms and --log-retention-bytes must be -1 (no limit) or more");
        }
        if self.log_retention_check_interval < Duration::from_millis(100) {
            bail!("--log-retention-check-interval-ms must be at least 100");
        }
        if self.max_connections == 0 {
            bail!("--max-connections must be positive");
        }
        if !self.object_store.starts_with("file://") && !self.object_store.starts_with("s3://") {
            bail!("--object-store {:?} must start with file:// or s3://", self.object_store);
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> anyhow::Result<Args> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_single_node() {
        let c = BrokerConfig::resolve(Args::parse_from(["floe"])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9092");
        assert_eq!((c.advertise_host.as_str(), c.advertise_port), ("127.0.0.1", 9092));
        assert!(c.object_store.starts_with("file://") && c.object_store.ends_with("floe-data/objects"));
        assert!(c.auto_create_topics);
    }

    #[test]
    fn flags_override_the_file_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("floe.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:19092\"\nbroker-id = 3\nnum-partitions = 6\n").unwrap();
        let p = path.to_str().unwrap();
        let c = BrokerConfig::resolve(Args::parse_from(["floe", "--config", p, "--broker-id", "4"])).unwrap();
        assert_eq!(c.listen.port(), 19092);
        assert_eq!(c.broker_id, 4);
        assert_eq!(c.num_partitions, 6);
        std::fs::write(&path, "no-such-key = 1\n").unwrap();
        assert!(BrokerConfig::resolve(Args::parse_from(["floe", "--config", p])).is_err());
        let err = BrokerConfig::resolve(Args::parse_from(["floe", "--object-store", "ftp://x"])).unwrap_err();
        assert!(err.to_string().contains("file:// or s3://"));
    }
}
