//! Consumer-group members run by other projects' clients (kafka-python, the
//! Java client, kafkajs), each a separate process (testing/clients/*) that
//! reports what it sees as JSON lines on stdout.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A variable the test command exports.
pub fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with `bash testing/run-tests.sh`"))
}

/// What a member process has said so far.
#[derive(Debug, Default, Clone)]
pub struct ClientView {
    pub assignment: Vec<i32>,
    /// First offset received per partition.
    pub first: BTreeMap<i32, i64>,
    /// Highest committed (next-to-read) offset per partition.
    pub committed: BTreeMap<i32, i64>,
    /// Errors the member reported (and survived).
    pub errors: Vec<String>,
    pub closed: bool,
}

/// One group member process and what its stdout has said.
pub struct ClientMember {
    child: Child,
    view: Arc<Mutex<ClientView>>,
}

impl ClientMember {
    pub fn start(client: &str, bootstrap: &str, topic: &str, group: &str, name: &str) -> Self {
        Self::start_with(client, bootstrap, topic, group, name, &[])
    }

    pub fn start_with(
        client: &str,
        bootstrap: &str,
        topic: &str,
        group: &str,
        name: &str,
        extra: &[&str],
    ) -> Self {
        let dir = env!("CARGO_MANIFEST_DIR");
        let common = [
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--group",
            group,
            "--name",
            name,
            "--max-seconds",
            "240",
        ];
        let mut cmd = match client {
            "python" => {
                let mut c = Command::new(env("FLOE_PYTHON"));
                c.arg(format!("{dir}/clients/python/group_member.py"));
                c
            }
            "java" => {
                let cp = format!(
                    "{}:{}:{}",
                    env("FLOE_JAVA_CLASSES"),
                    env("FLOE_KAFKA_CLIENTS_JAR"),
                    env("FLOE_SLF4J_JAR")
                );
                let mut c = Command::new("java");
                c.args(["-cp", &cp, "FloeGroupMember"]);
                c
            }
            "node" => {
                let mut c = Command::new("node");
                c.env("NODE_PATH", env("FLOE_NODE_MODULES"))
                    .arg(format!("{dir}/clients/node/group_member.js"));
                c
            }
            other => panic!("unknown client {other}"),
        };
        let mut child = cmd
            .args(common)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {client} member: {e}"));
        let view = Arc::new(Mutex::new(ClientView::default()));
        let (out, v) = (child.stdout.take().unwrap(), view.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let Ok(e) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                let mut v = v.lock().unwrap();
                let p = e["partition"].as_i64().unwrap_or(-1) as i32;
                let o = e["offset"].as_i64().unwrap_or(-1);
                match e["event"].as_str() {
                    Some("assigned") => {
                        v.assignment = e["partitions"]
                            .as_array()
                            .map(|a| a.iter().filter_map(|x| x.as_i64()).map(|x| x as i32).collect())
                            .unwrap_or_default();
                    }
                    Some("first") => {
                        v.first.entry(p).or_insert(o);
                    }
                    Some("committed") => {
                        let c = v.committed.entry(p).or_insert(o);
                        *c = (*c).max(o);
                    }
                    Some("closed") => v.closed = true,
                    Some("error") => v.errors.push(e["message"].as_str().unwrap_or_default().to_string()),
                    _ => {}
                }
            }
        });
        Self { child, view }
    }

    pub fn view(&self) -> ClientView {
        self.view.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill").arg(sig).arg(self.child.id().to_string()).status();
    }

    /// SIGTERM and wait (bounded) for the clean exit.
    pub fn terminate(mut self) -> ClientView {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        self.view()
    }

    pub fn kill(mut self) -> ClientView {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.view()
    }
}

impl Drop for ClientMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
