//! The other real clients, run as the user would: Debian's kcat (librdkafka
//! 2.0.2), kafka-python and the Java kafka-clients 3.9.1 jar. Their paths come
//! from `testing/scripts/setup.sh` through the test command's environment.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use floe_testing::TestBroker;

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with `bash testing/run-tests.sh`"))
}

/// Runs a command with a time bound; kills it when the bound passes.
fn run(cmd: &mut Command, input: Option<&[u8]>, bound: Duration) -> Output {
    let mut child = cmd
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    if let Some(input) = input {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let deadline = std::time::Instant::now() + bound;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} did not finish within {bound:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_ok(out: &Output, what: &str, broker: &TestBroker) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}\nbroker log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        broker.broker.log_tail()
    );
}

#[test]
fn kcat_lists_produces_and_consumes() {
    let t = TestBroker::start("kcat", &[]).unwrap();
    let b = t.broker.bootstrap();
    let kcat = env("FLOE_KCAT");
    let lines: Vec<String> = (0..500).map(|i| format!("line-{i}")).collect();
    let input = lines.join("\n") + "\n";
    let out = run(
        Command::new(&kcat).args(["-b", &b, "-P", "-t", "kcat", "-z", "gzip", "-X", "acks=all"]),
        Some(input.as_bytes()),
        Duration::from_secs(60),
    );
    assert_ok(&out, "kcat -P", &t);

    let out = run(Command::new(&kcat).args(["-b", &b, "-L"]), None, Duration::from_secs(30));
    assert_ok(&out, "kcat -L", &t);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("topic \"kcat\" with 1 partitions"), "{listing}");
    assert!(listing.contains(&format!("broker 0 at {b}")), "{listing}");

    let out = run(
        Command::new(&kcat).args(["-b", &b, "-C", "-t", "kcat", "-o", "beginning", "-e", "-f", "%o %s\n"]),
        None,
        Duration::from_secs(60),
    );
    assert_ok(&out, "kcat -C", &t);
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    let want: Vec<String> = lines.iter().enumerate().map(|(i, l)| format!("{i} {l}")).collect();
    assert_eq!(got, want);
}

#[test]
fn kafka_python_round_trips_with_every_codec_it_has() {
    let t = TestBroker::start("kafka-python", &[]).unwrap();
    let python = env("FLOE_PYTHON");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/python/kafka_python_check.py");
    for codec in ["none", "gzip", "lz4", "zstd"] {
        let out = run(
            Command::new(&python).args([
                script,
                "--bootstrap",
                &t.broker.bootstrap(),
                "--topic",
                &format!("py-{codec}"),
                "--count",
                "2000",
                "--partitions",
                "3",
                "--compression",
                codec,
            ]),
            None,
            Duration::from_secs(180),
        );
        assert_ok(&out, &format!("kafka-python ({codec})"), &t);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("skipped"), "{codec} must not be skipped: {stdout}");
    }
}

#[test]
fn java_kafka_clients_admin_produce_consume() {
    let t = TestBroker::start("java", &[]).unwrap();
    let cp =
        format!("{}:{}:{}", env("FLOE_JAVA_CLASSES"), env("FLOE_KAFKA_CLIENTS_JAR"), env("FLOE_SLF4J_JAR"));
    for codec in ["none", "gzip"] {
        let out = run(
            Command::new("java").args([
                "-cp",
                &cp,
                "FloeJavaCheck",
                "--bootstrap",
                &t.broker.bootstrap(),
                "--topic",
                &format!("java-{codec}"),
                "--count",
                "3000",
                "--partitions",
                "3",
                "--compression",
                codec,
            ]),
            None,
            Duration::from_secs(240),
        );
        assert_ok(&out, &format!("java ({codec})"), &t);
    }
}
