//! Several `floe` brokers on one bucket prefix, each with its own broker id
//! and data directory, and the `floe cluster` command against them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{floe_binary, BrokerProcess, ObjectStore};

/// One broker row of `floe cluster status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRow {
    pub id: i32,
    pub epoch: u64,
    pub state: String,
    pub partitions: u32,
    /// Live committed bytes of its partitions (retention lowers it).
    pub committed_bytes: u64,
    /// Acknowledged bytes waiting for upload, as of its last heartbeat.
    pub upload_lag_bytes: u64,
    /// Traffic of its partitions as the controller averages it.
    pub bytes_in_per_sec: u64,
    pub bytes_out_per_sec: u64,
}

/// What `floe cluster status` printed.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub controller: i32,
    pub moving: u32,
    pub unassigned: u32,
    /// The metadata log's sequence number (every commit advances it).
    pub seq: u64,
    /// Live objects, ranges pointing into them, objects awaiting deletion.
    pub objects: u64,
    pub ranges: u64,
    pub garbage: u64,
    pub brokers: BTreeMap<i32, BrokerRow>,
}

impl Status {
    /// Partitions of each live broker.
    pub fn live_partitions(&self) -> BTreeMap<i32, u32> {
        self.brokers.values().filter(|b| b.state != "fenced").map(|b| (b.id, b.partitions)).collect()
    }

    /// Parses what `floe cluster status` prints.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut lines = text.lines();
        let head: Vec<&str> = lines.next().context("empty status")?.split_whitespace().collect();
        let field = |name: &str| -> anyhow::Result<i64> {
            let i = head.iter().position(|w| *w == name).with_context(|| format!("no {name} in {head:?}"))?;
            Ok(head[i + 1].parse()?)
        };
        let mut status = Status {
            controller: field("controller")? as i32,
            moving: field("moving")? as u32,
            unassigned: field("unassigned")? as u32,
            seq: field("seq").unwrap_or(0) as u64,
            objects: field("objects").unwrap_or(0) as u64,
            ranges: field("ranges").unwrap_or(0) as u64,
            garbage: field("garbage").unwrap_or(0) as u64,
            brokers: BTreeMap::new(),
        };
        for line in lines.skip(1) {
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.len() < 5 {
                continue;
            }
            let row = BrokerRow {
                id: w[0].parse()?,
                epoch: w[1].parse()?,
                state: w[2].to_string(),
                partitions: w[4].parse()?,
                committed_bytes: w.get(5).map_or(Ok(0), |v| v.parse())?,
                upload_lag_bytes: w.get(6).map_or(Ok(0), |v| v.parse())?,
                bytes_in_per_sec: w.get(8).map_or(Ok(0), |v| v.parse())?,
                bytes_out_per_sec: w.get(9).map_or(Ok(0), |v| v.parse())?,
            };
            status.brokers.insert(row.id, row);
        }
        Ok(status)
    }
}

pub struct Cluster {
    // Declared first so brokers are killed before their directories go.
    pub brokers: BTreeMap<i32, BrokerProcess>,
    pub store: ObjectStore,
    pub scratch: tempfile::TempDir,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Starts brokers 0..n on a fresh bucket prefix, one after another.
    pub fn start(name: &str, n: i32, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(name, None, n, extra, &[])
    }

    /// Like [`Cluster::start`], on `store` (None: a fresh prefix or
    /// directory), with extra environment variables for every broker and
    /// every `floe cluster` command (e.g. `AWS_ENDPOINT_URL` of a latency proxy).
    pub fn start_with_env(
        name: &str,
        store: Option<ObjectStore>,
        n: i32,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let scratch = tempfile::Builder::new().prefix(&format!("floe-{name}-")).tempdir()?;
        let store = store.unwrap_or_else(|| ObjectStore::fresh(name, scratch.path()));
        let mut c = Self {
            brokers: BTreeMap::new(),
            store,
            scratch,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        for id in 0..n {
            c.add_broker(id)?;
        }
        Ok(c)
    }

    pub fn data_dir(&self, id: i32) -> PathBuf {
        self.scratch.path().join(format!("broker-{id}"))
    }

    /// Starts broker `id` on the cluster's bucket.
    pub fn add_broker(&mut self, id: i32) -> anyhow::Result<()> {
        let mut args: Vec<String> = vec!["--broker-id".into(), id.to_string()];
        args.extend(self.extra.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let b = BrokerProcess::start_with_env(&self.data_dir(id), &self.store, &refs, &env)?;
        self.brokers.insert(id, b);
        Ok(())
    }

    pub fn broker(&mut self, id: i32) -> &mut BrokerProcess {
        self.brokers.get_mut(&id).expect("no such broker")
    }

    /// Bootstrap list of every broker process running.
    pub fn bootstrap(&self) -> String {
        self.brokers
            .values()
            .filter(|b| b.pid().is_some())
            .map(|b| b.bootstrap())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs `floe cluster ARGS...` against this cluster; its stdout.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(floe_binary()?)
            .arg("cluster")
            .args(args)
            .arg("--object-store")
            .arg(&self.store.url)
            .arg("--data-dir")
            .arg(self.scratch.path().join("cli"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("FLOE_LOG", "warn")
            .output()?;
        if !out.status.success() {
            bail!("floe cluster {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn status(&self) -> anyhow::Result<Status> {
        Status::parse(&self.cli(&["status"])?)
    }

    /// Polls the status until `ok` holds (bounded by `timeout`).
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&Status) -> bool,
    ) -> anyhow::Result<Status> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            match self.status() {
                Ok(s) if ok(&s) => return Ok(s),
                Ok(s) => last = Some(format!("{s:?}")),
                Err(e) => last = Some(e.to_string()),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("{what}: not reached within {timeout:?}; last status: {}", last.unwrap_or_default())
    }

    /// The logs of every broker, for failure messages.
    pub fn logs(&self) -> String {
        self.brokers.iter().map(|(id, b)| format!("--- broker {id} ---\n{}\n", b.log_tail())).collect()
    }
}
