//! The brokers a comparison starts: Floe (the `floe` binary next to
//! floe-bench) and a peer (tansu), each on a loopback port with its storage
//! under a fresh prefix of the same S3 bucket, reached through the latency
//! proxy so both see the same object-store latency.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::Latency;
use crate::{BrokerProcess, ObjectStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Floe,
    Tansu,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Floe => "floe",
            Kind::Tansu => "tansu",
        }
    }
}

/// What to start and where its objects go.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub kind: Kind,
    /// The peer's binary (Floe's is found by [`crate::floe_binary`]).
    pub tansu_bin: Option<PathBuf>,
    pub bucket: String,
}

/// A running broker of either kind; stopped when dropped.
pub struct Target {
    pub kind: Kind,
    process: Process,
    // Dropped after the process (field order): its WAL lives here.
    _scratch: tempfile::TempDir,
}

enum Process {
    Floe(BrokerProcess),
    Tansu(Tansu),
}

impl TargetSpec {
    /// Starts a fresh broker whose object store is `s3://bucket/prefix` at
    /// `endpoint` (the latency proxy). AWS_* credentials come from the
    /// environment, as for the tests.
    pub fn start(&self, endpoint: &str, prefix: &str) -> anyhow::Result<Target> {
        let scratch =
            tempfile::Builder::new().prefix(&format!("floe-bench-{}-", self.kind.name())).tempdir()?;
        let process = match self.kind {
            Kind::Floe => {
                let store = ObjectStore { url: format!("s3://{}/{prefix}", self.bucket) };
                Process::Floe(BrokerProcess::start_with_env(
                    &scratch.path().join("data"),
                    &store,
                    &[],
                    &[("AWS_ENDPOINT_URL", endpoint)],
                )?)
            }
            Kind::Tansu => {
                let bin = self.tansu_bin.clone().context(
                    "the tansu peer needs --tansu-bin (testing/scripts/tansu.sh install puts it in .floe-test/bin)",
                )?;
                Process::Tansu(Tansu::start(bin, endpoint, &self.bucket, prefix, scratch.path())?)
            }
        };
        Ok(Target { kind: self.kind, process, _scratch: scratch })
    }
}

impl Target {
    pub fn bootstrap(&self) -> String {
        match &self.process {
            Process::Floe(b) => b.bootstrap(),
            Process::Tansu(t) => t.addr.to_string(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match &self.process {
            Process::Floe(b) => b.pid(),
            Process::Tansu(t) => t.child.as_ref().map(Child::id),
        }
    }

    /// A graceful stop and a start on the same port and storage, so every
    /// in-memory cache is cold and the data is only in object storage.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        match &mut self.process {
            Process::Floe(b) => {
                let status = b.stop()?;
                anyhow::ensure!(status.success(), "floe exited with {status}");
                b.restart()
            }
            Process::Tansu(t) => {
                t.stop();
                t.spawn()
            }
        }
    }

    /// A graceful stop (Floe uploads what its WAL holds). Returns where
    /// Floe's produce requests spent their time, from its shutdown log line.
    pub fn stop(&mut self) -> anyhow::Result<Option<BrokerLatency>> {
        match &mut self.process {
            Process::Floe(b) => {
                let status = b.stop()?;
                anyhow::ensure!(status.success(), "floe exited with {status}");
                let log = std::fs::read_to_string(&b.log).unwrap_or_default();
                Ok(log.lines().rev().find_map(BrokerLatency::parse))
            }
            Process::Tansu(t) => {
                t.stop();
                Ok(None)
            }
        }
    }
}

/// Floe's own account of its produce requests (see `broker/src/stats.rs`):
/// request read to durable, to response sent, and the WAL's queue wait and
/// group commit. Values are bucket upper bounds (within 19%).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BrokerLatency {
    pub to_durable: Latency,
    pub to_sent: Latency,
    pub wal_queue_wait: Latency,
    pub wal_commit: Latency,
}

impl BrokerLatency {
    /// Parses `floe`'s "produce latency on the broker since start" line.
    pub fn parse(line: &str) -> Option<Self> {
        if !line.contains("produce latency on the broker") {
            return None;
        }
        let plain = strip_ansi(line);
        let tokens: Vec<&str> = plain.split_whitespace().collect();
        let field = |name: &str| -> Option<Latency> {
            let at = tokens.iter().position(|t| t.starts_with(&format!("{name}=n=")))?;
            let count = tokens[at].rsplit('=').next()?.parse().ok()?;
            let ms = |i: usize, label: &str| -> Option<f64> {
                tokens.get(at + i)?.strip_prefix(label)?.strip_prefix('≤')?.strip_suffix("ms")?.parse().ok()
            };
            Some(Latency {
                count,
                p50_ms: ms(1, "p50")?,
                p99_ms: ms(2, "p99")?,
                p999_ms: ms(3, "p99.9")?,
                max_ms: ms(4, "max")?,
            })
        };
        Some(Self {
            to_durable: field("to_durable")?,
            to_sent: field("to_sent")?,
            wal_queue_wait: field("wal_queue_wait")?,
            wal_commit: field("wal_commit")?,
        })
    }
}

/// Drops terminal colour sequences (ESC [ ... letter).
pub(crate) fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// tansu 0.6.0 as a child process with S3 storage.
struct Tansu {
    bin: PathBuf,
    addr: SocketAddr,
    storage: String,
    /// tansu takes only the bucket from its storage URL and keeps a
    /// cluster's objects under `clusters/<id>/`: the id keeps runs apart.
    cluster_id: String,
    endpoint: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Tansu {
    fn start(
        bin: PathBuf,
        endpoint: &str,
        bucket: &str,
        prefix: &str,
        scratch: &std::path::Path,
    ) -> anyhow::Result<Self> {
        // tansu takes a port, not port 0: pick a free one (the race with
        // another process taking it in between is harmless here).
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut t = Tansu {
            bin,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            storage: format!("s3://{bucket}/"),
            cluster_id: prefix.to_string(),
            endpoint: endpoint.to_string(),
            log: scratch.join("tansu.log"),
            child: None,
        };
        t.spawn()?;
        Ok(t)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(tansu_args(self.addr, &self.storage, &self.cluster_id))
            .envs(tansu_env(&self.endpoint))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(cmd.spawn().with_context(|| format!("spawning {}", self.bin.display()))?);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                bail!("tansu exited during start-up with {status}; log:\n{}", self.log_tail());
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop();
        bail!("tansu did not listen on {} within 30 s; log:\n{}", self.addr, self.log_tail())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after 10 s: tansu acknowledges only what is in
    /// S3, so nothing acknowledged is in memory only.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tansu_args(addr: SocketAddr, storage: &str, cluster_id: &str) -> Vec<String> {
    vec![
        "broker".into(),
        "--cluster-id".into(),
        cluster_id.into(),
        "--listener-url".into(),
        format!("tcp://{addr}"),
        "--advertised-listener-url".into(),
        format!("tcp://{addr}"),
        "--storage-engine".into(),
        storage.into(),
    ]
}

fn tansu_env(endpoint: &str) -> Vec<(String, String)> {
    // Both names: object_store reads either, and the test environment sets
    // AWS_ENDPOINT_URL to the S3 server itself, not to the proxy.
    let mut env = vec![
        ("AWS_ENDPOINT".to_string(), endpoint.to_string()),
        ("AWS_ENDPOINT_URL".to_string(), endpoint.to_string()),
        ("AWS_ALLOW_HTTP".to_string(), "true".to_string()),
        ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
    ];
    if std::env::var("AWS_REGION").is_err() {
        env.push(("AWS_REGION".into(), "us-east-1".into()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_floes_shutdown_account() {
        let line =
            "2026-11-25T16:54:56Z  \u{1b}[32m INFO\u{1b}[0m floe: produce latency on the broker since start \
            to_durable=n=9972 p50≤0.639ms p99≤14.335ms p99.9≤32.767ms max≤98.303ms \
            to_sent=n=9972 p50≤0.639ms p99≤14.335ms p99.9≤32.767ms max≤98.303ms \
            wal_queue_wait=n=8838 p50≤0.039ms p99≤5.119ms p99.9≤10.239ms max≤28.671ms \
            wal_commit=n=8838 p50≤0.383ms p99≤6.143ms p99.9≤12.287ms max≤28.671ms";
        let b = BrokerLatency::parse(line).unwrap();
        assert_eq!(b.to_durable.count, 9972);
        assert_eq!(b.wal_commit.count, 8838);
        assert!((b.to_sent.p99_ms - 14.335).abs() < 1e-9);
        assert!((b.wal_commit.max_ms - 28.671).abs() < 1e-9);
        assert!(BrokerLatency::parse("floe is serving Kafka listen=127.0.0.1:1").is_none());
        assert!(BrokerLatency::parse("produce latency on the broker since start to_durable=n=1").is_none());
    }
}
