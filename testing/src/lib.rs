//! Test harness: starts real `floe` processes against the S3 server the test
//! command started (or a local directory when none is configured), and
//! stops every process it starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub mod bench;
pub mod clients;
pub mod cluster;
pub mod fake_s3;
pub mod group;
pub mod kafka;
pub mod load;
pub mod raw;
pub mod s3_proxy;

/// Where a test's objects go: a prefix of the shared test bucket, or a directory.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    pub url: String,
}

impl ObjectStore {
    /// A fresh, unique place for one test: `s3://$FLOE_TEST_BUCKET/<name>-<pid>-<n>`
    /// when the S3 variables are set, else a directory under `scratch`.
    pub fn fresh(name: &str, scratch: &Path) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let unique = format!("{name}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        match std::env::var("FLOE_TEST_BUCKET") {
            Ok(bucket) if std::env::var("AWS_ENDPOINT_URL").is_ok() => {
                Self { url: format!("s3://{bucket}/{unique}") }
            }
            _ => Self { url: format!("file://{}", scratch.join("objects").join(unique).display()) },
        }
    }

    pub fn is_s3(&self) -> bool {
        self.url.starts_with("s3://")
    }

    /// The data objects in the store now (Floe keeps them flat under `data/`).
    pub async fn data_objects(&self) -> anyhow::Result<Vec<object_store::ObjectMeta>> {
        let bucket = floe_storage::Bucket::open(&self.url, Duration::from_secs(10))?;
        let listed = bucket.store.list_with_delimiter(Some(&bucket.key("data"))).await?;
        Ok(listed.objects)
    }
}

/// A free loopback port below Linux's ephemeral range (32768+), so that no
/// process binding port 0 can take it while a broker is down for a restart
/// (the restart reuses it, so its clients find it again).
pub fn low_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(2_654_435_761);
    // Bounded: a few collisions with other tests' brokers at most.
    for _ in 0..10_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(n.wrapping_mul(7_919)) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    0
}

/// The `floe` binary built next to the test executables.
pub fn floe_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("FLOE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    // A binary sits next to `floe` (target/<profile>/); a test one level below.
    let here = exe.parent().context("executable has no parent")?;
    for dir in [Some(here), here.parent()].into_iter().flatten() {
        let bin = dir.join("floe");
        if bin.exists() {
            return Ok(bin);
        }
    }
    bail!(
        "no `floe` binary next to {}: run `cargo build --bin floe` first (testing/run-tests.sh does)",
        exe.display()
    )
}

/// One running broker process.
pub struct BrokerProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub store: ObjectStore,
    pub log: PathBuf,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl BrokerProcess {
    /// Starts `floe` on a free port with `data_dir` and `store`, plus extra flags.
    pub fn start(data_dir: &Path, store: &ObjectStore, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(data_dir, store, extra, &[])
    }

    /// Like [`BrokerProcess::start`] with extra environment variables (for
    /// example `AWS_ENDPOINT_URL` pointing at a latency proxy).
    pub fn start_with_env(
        data_dir: &Path,
        store: &ObjectStore,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if !extra.iter().any(|a| a == "--rpc-listen") {
            extra.extend(["--rpc-listen".to_string(), format!("127.0.0.1:{}", low_port())]);
        }
        let mut b = BrokerProcess {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], low_port())),
            data_dir: data_dir.to_path_buf(),
            store: store.clone(),
            log: data_dir.with_extension("log"),
            extra,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        b.spawn()?;
        Ok(b)
    }

    /// The bootstrap address for clients.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The process id while it runs (for CPU accounting).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = floe_binary()?;
        let started_before = self.serving_lines().len();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        // Ports come from below the ephemeral range (see `low_port`), and a
        // restart reuses them, so clients find the broker again.
        let child = Command::new(&bin)
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--object-store")
            .arg(&self.store.url)
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("FLOE_LOG", std::env::var("FLOE_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                bail!("floe exited during start-up with {status}; log:\n{}", self.log_tail());
            }
            let lines = self.serving_lines();
            if lines.len() > started_before {
                let line = &lines[lines.len() - 1];
                let addr = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("listen="))
                    .context("serving line names its address")?;
                self.addr = addr.parse().with_context(|| format!("bad address in {line:?}"))?;
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        bail!("floe did not start serving within 30 s; log:\n{}", self.log_tail())
    }

    fn serving_lines(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter(|l| l.contains("floe is serving Kafka")).map(str::to_string).collect()
    }

    /// The broker's whole log (every incarnation's, appended).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the broker's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGKILL: no chance to flush or upload anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (bounded) for a graceful exit; returns its status.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else { bail!("broker is not running") };
        let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("floe did not exit within 60 s of SIGTERM; log:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded) for the process to exit by itself; its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let Some(child) = self.child.as_mut() else { bail!("broker is not running") };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("floe did not exit within {timeout:?}; log:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the broker again with the same port, data dir and object store.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("broker is still running");
        }
        self.spawn()
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- broker log ({}) ---\n{}", self.log.display(), self.log_tail());
        }
    }
}

/// A scratch directory and a broker on a fresh object store.
pub struct TestBroker {
    // Declared first so it is dropped (killed) before its directory goes.
    pub broker: BrokerProcess,
    pub scratch: tempfile::TempDir,
}

impl TestBroker {
    pub fn start(name: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let scratch = tempfile::Builder::new().prefix(&format!("floe-{name}-")).tempdir()?;
        let store = ObjectStore::fresh(name, scratch.path());
        let broker = BrokerProcess::start(&scratch.path().join("data"), &store, extra)?;
        Ok(Self { broker, scratch })
    }
}
