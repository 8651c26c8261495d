//! floe-bench runs briefly and its reports are complete and consistent
//! (a smoke test of the instrument, not of speed).

use std::process::Command;

use floe_testing::TestBroker;

fn bench(args: &[&str], json: &std::path::Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_floe-bench"))
        .args(args)
        .arg("--json")
        .arg(json)
        .output()
        .expect("run floe-bench");
    assert!(out.status.success(), "floe-bench {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

fn latency_is_ordered(l: &serde_json::Value) {
    let f = |k: &str| l[k].as_f64().unwrap_or_else(|| panic!("{k} in {l}"));
    assert!(l["count"].as_u64().unwrap() > 0);
    assert!(
        0.0 < f("p50_ms")
            && f("p50_ms") <= f("p99_ms")
            && f("p99_ms") <= f("p999_ms")
            && f("p999_ms") <= f("max_ms"),
        "{l}"
    );
}

#[test]
fn limits_and_produce_reports_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let l = bench(
        &[
            "limits",
            "--dir",
            dir.path().to_str().unwrap(),
            "--small-writes",
            "50",
            "--large-mib",
            "8",
            "--round-trips",
            "200",
        ],
        &dir.path().join("limits.json"),
    );
    latency_is_ordered(&l["fsync_4k"]);
    latency_is_ordered(&l["loopback_rtt"]);
    assert!(l["durable_write_mb_per_s"].as_f64().unwrap() > 0.0);

    let t = TestBroker::start("bench", &[]).unwrap();
    let r = bench(
        &[
            "produce",
            "--bootstrap",
            &t.broker.bootstrap(),
            "--producers",
            "2",
            "--partitions",
            "3",
            "--rate",
            "2000",
            "--duration-secs",
            "2",
        ],
        &dir.path().join("produce.json"),
    );
    let n = |k: &str| r[k].as_u64().unwrap();
    assert!(n("sent") > 1000, "{r}");
    assert_eq!(n("acked") + n("failed"), n("sent"), "every record is accounted for");
    assert_eq!(n("failed"), 0, "no lost acks: {r}");
    assert_eq!(r["ack_latency"]["count"].as_u64().unwrap(), n("acked"));
    latency_is_ordered(&r["ack_latency"]);
    assert!(r["mb_per_s"].as_f64().unwrap() > 0.0);
    let timeline: u64 = r["timeline"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(timeline, n("acked"), "the per-second counts add up to the total");

    let e = bench(
        &[
            "end-to-end",
            "--bootstrap",
            &t.broker.bootstrap(),
            "--topic",
            "e2e",
            "--partitions",
            "2",
            "--rate",
            "1000",
            "--duration-secs",
            "2",
        ],
        &dir.path().join("e2e.json"),
    );
    let acked = e["produce"]["acked"].as_u64().unwrap();
    assert!(acked > 500, "{e}");
    assert_eq!(e["produce"]["failed"].as_u64().unwrap(), 0);
    assert_eq!(e["consumed"].as_u64().unwrap(), acked, "every acked record is consumed once: {e}");
    assert_eq!(e["duplicates"].as_u64().unwrap(), 0);
    assert_eq!(e["end_to_end"]["count"].as_u64().unwrap(), acked);
    latency_is_ordered(&e["end_to_end"]);
}

/// The S3 latency proxy sits between Floe and SeaweedFS: Floe keeps working,
/// acks do not wait for S3, and the proxy counts the requests an upload costs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floe_runs_behind_the_s3_latency_proxy() {
    use floe_testing::s3_proxy::{Delay, LatencyProxy};
    use floe_testing::{BrokerProcess, ObjectStore};
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL is not set: run the tests with `bash testing/run-tests.sh`");
    let upstream: std::net::SocketAddr = endpoint.trim_start_matches("http://").parse().unwrap();
    let delay =
        Delay { median: std::time::Duration::from_millis(30), p99: std::time::Duration::from_millis(100) };
    let proxy = LatencyProxy::start("127.0.0.1:0".parse().unwrap(), upstream, delay).await.unwrap();
    let proxied = format!("http://{}", proxy.addr);

    let scratch = tempfile::tempdir().unwrap();
    let store = ObjectStore::fresh("proxied", scratch.path());
    assert!(store.is_s3());
    let mut broker = BrokerProcess::start_with_env(
        &scratch.path().join("data"),
        &store,
        &["--upload-interval-ms", "200"],
        &[("AWS_ENDPOINT_URL", &proxied)],
    )
    .unwrap();
    let at_start = proxy.counts.snapshot();
    assert!(at_start.list >= 1 && at_start.put >= 1, "start-up lists metadata and registers: {at_start:?}");

    let p = floe_testing::kafka::producer(&broker.bootstrap(), &[]).unwrap();
    let acked = floe_testing::kafka::produce_all(&p, "proxied", "k", 2_000, 200).await.unwrap();
    assert_eq!(acked.len(), 2_000);
    drop(p);
    assert!(broker.stop().unwrap().success());
    let after = proxy.counts.snapshot();
    // At least one data object and one metadata entry were written through the proxy.
    assert!(after.put >= at_start.put + 2, "{at_start:?} -> {after:?}");
}

/// upload-cost: per-partition-count rows whose PUT counts do not grow with
/// the partition count (one object per upload, whatever the partitions).
#[test]
fn upload_cost_puts_do_not_scale_with_partitions() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL is not set: run the tests with `bash testing/run-tests.sh`");
    let bucket = std::env::var("FLOE_TEST_BUCKET").expect("FLOE_TEST_BUCKET");
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("cost.svg");
    let r = bench(
        &[
            "--svg",
            svg.to_str().unwrap(),
            "upload-cost",
            "--upstream",
            endpoint.trim_start_matches("http://"),
            "--bucket",
            &bucket,
            "--partition-counts",
            "1,50",
            "--rate",
            "1000",
            "--duration-secs",
            "2",
        ],
        &dir.path().join("cost.json"),
    );
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{r}");
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.contains("1 partitions") && picture.contains("50 partitions"), "one line per count");
    let puts: Vec<u64> = rows.iter().map(|row| row["requests"]["put"].as_u64().unwrap()).collect();
    assert!(puts.iter().all(|p| *p >= 2), "each run writes at least one object and its commit: {r}");
    assert!(puts[1] <= 2 * puts[0] + 4, "PUTs must not scale with partitions: {puts:?}");
    for row in rows {
        let bill = row["monthly_request_bill"].as_f64().unwrap();
        assert!(bill.is_finite() && bill > 0.0, "{row}");
        assert!(row["mb_written"].as_f64().unwrap() > 0.0);
    }
}

/// compare: Floe and tansu side by side at local S3 latency, every scenario
/// briefly. Floe's reports must add up (every acked record consumed once,
/// the whole cold history read back); the peer's must be present. The table
/// has a row per figure and a ratio column.
#[test]
fn compare_runs_every_scenario_against_floe_and_the_peer() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL is not set: run the tests with `bash testing/run-tests.sh`");
    std::env::var("FLOE_BENCH_TANSU")
        .expect("FLOE_BENCH_TANSU is not set: testing/scripts/setup.sh installs tansu");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let json = dir.path().join("compare.json");
    let run = Command::new(env!("CARGO_BIN_EXE_floe-bench"))
        .args(["--json", json.to_str().unwrap(), "compare", "--upstream"])
        .arg(endpoint.trim_start_matches("http://"))
        .args(["--targets", "floe,tansu", "--s3-latencies", "local", "--duration-secs", "1"])
        .args(["--history-mb", "2", "--e2e-rate", "100", "--live-rate", "100", "--cost-rate", "200"])
        .args(["--cost-partitions", "1,4", "--limits-small-writes", "50", "--limits-large-mib", "8"])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run floe-bench compare");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "one run per target: {r}");
    for run in runs {
        for part in ["produce_max", "produce_half", "end_to_end", "catch_up", "upload_cost"] {
            assert!(run[part].is_object(), "{} has no {part}: {run}", run["target"]);
        }
    }
    let floe = runs.iter().find(|r| r["target"] == "floe").unwrap();
    let max = &floe["produce_max"];
    assert_eq!(max["failed"].as_u64(), Some(0));
    assert!(max["cpu_seconds_per_gb"].as_f64().unwrap() > 0.0, "broker CPU is measured: {max}");
    latency_is_ordered(&floe["produce_half"]["ack_latency"]);
    let broker = &floe["broker_half"];
    assert!(broker["to_durable"]["count"].as_u64().unwrap() > 0, "Floe's own account is read: {broker}");
    latency_is_ordered(&broker["wal_commit"]);
    assert!(
        broker["to_durable"]["p50_ms"].as_f64() <= floe["produce_half"]["ack_latency"]["p99_ms"].as_f64(),
        "the broker's share is part of the client's latency: {floe}"
    );
    assert!(runs.iter().find(|r| r["target"] == "tansu").unwrap()["broker_half"].is_null());
    let e2e = &floe["end_to_end"];
    assert_eq!(e2e["consumed"], e2e["produce"]["acked"], "{e2e}");
    let c = &floe["catch_up"];
    assert_eq!(c["cold"], true);
    assert!(c["history"]["records"].as_u64().unwrap() >= 2048, "2 MB of 1 KiB records: {c}");
    assert_eq!(c["read_records"], c["history"]["records"], "the whole history is read back: {c}");
    assert!(c["read_mb_per_s"].as_f64().unwrap() > 0.0);
    latency_is_ordered(&c["during_read"]["ack_latency"]);
    assert_eq!(floe["upload_cost"]["rows"].as_array().unwrap().len(), 2);

    for row in
        ["produce max MB/s", "ack p99 ms @ half max", "end-to-end p99 ms", "catch-up read MB/s", "PUT/s @ 4"]
    {
        let line =
            stdout.lines().find(|l| l.starts_with(row)).unwrap_or_else(|| panic!("no {row:?} in\n{stdout}"));
        let ratio = |t: &str| t.strip_suffix('x').is_some_and(|n| n.parse::<f64>().is_ok());
        assert!(line.split_whitespace().any(ratio), "a ratio on {line:?}");
    }
    assert!(stdout.contains("floe/tansu"), "{stdout}");
    assert!(stdout.contains("broker: WAL commit p99"), "{stdout}");
    for picture in [
        "produce-local.svg",
        "end-to-end-local.svg",
        "catch-up-local.svg",
        "upload-cost-local.svg",
        "table.txt",
    ] {
        assert!(out.join(picture).exists(), "{picture} was not written");
    }
}

/// cluster: every part briefly (a 1 MB history moved twice, one failover,
/// a new broker, 20 partitions drained, throughput with 1 and 2 brokers).
/// The report has every part and its figures are consistent with each
/// other; the table has a row per part with its goal; the pictures are
/// written. No timing is asserted: the goals are in docs/benchmarks.md.
#[test]
fn cluster_reports_every_part() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL is not set: run the tests with `bash testing/run-tests.sh`");
    let bucket = std::env::var("FLOE_TEST_BUCKET").expect("FLOE_TEST_BUCKET");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let json = dir.path().join("cluster.json");
    let run = Command::new(env!("CARGO_BIN_EXE_floe-bench"))
        .args(["--json", json.to_str().unwrap(), "cluster", "--s3", "local", "--upstream"])
        .arg(endpoint.trim_start_matches("http://"))
        .args(["--bucket", &bucket, "--history-mb", "1", "--moves", "2", "--rate", "500"])
        .args(["--failovers", "1", "--drain-partitions", "20", "--throughput-brokers", "1,2"])
        .args(["--throughput-partitions", "2", "--duration-secs", "1"])
        // Shorter leases: the failover waits for one to run out.
        .args(["--broker-arg=--broker-lease-ms=1000", "--broker-arg=--controller-lease-ms=1000"])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run floe-bench cluster");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["scenario"], "cluster");
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));

    let moves = r["moves"].as_array().unwrap();
    assert_eq!(moves.len(), 1, "one run per history size: {r}");
    let m = &moves[0];
    let samples = m["moves"].as_array().unwrap();
    assert_eq!(samples.len() as u64 + m["timeouts"].as_u64().unwrap(), 2, "{m}");
    assert_eq!(m["window"]["n"].as_u64().unwrap(), samples.len() as u64);
    assert_eq!(m["failed"].as_u64(), Some(0), "{m}");
    assert!(m["history_records"].as_u64().unwrap() >= 1024, "1 MB of 1 KiB records: {m}");
    for s in samples {
        assert_ne!(s["from"], s["to"]);
        assert!(0.0 < f(s, "cli_ms") && f(s, "cli_ms") <= f(s, "window_ms"), "{s}");
        assert!(f(s, "serving_at_ms") <= f(s, "window_ms"), "the new owner serves before it acks: {s}");
        assert!(f(s, "max_ack_gap_ms") > 0.0 && f(s, "max_ack_latency_ms") > 0.0, "{s}");
    }
    for (a, b) in samples.iter().zip(samples.iter().skip(1)) {
        assert_eq!(a["to"], b["from"], "moves go back and forth");
    }

    let fo = &r["failover"];
    let runs = fo["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{fo}");
    let x = &runs[0];
    assert_ne!(x["victim"], x["controller"], "the controller is not the one killed: {x}");
    assert_ne!(x["victim"], x["new_owner"]);
    assert!(0.0 < f(x, "serving_ms") && f(x, "serving_ms") <= f(x, "failover_ms"), "{x}");
    assert_eq!(x["failed"].as_u64(), Some(0), "{x}");

    let n = &r["new_broker"];
    assert!(0.0 < f(n, "ready_ms") && f(n, "ready_ms") <= f(n, "assigned_ms"), "{n}");
    assert!(f(n, "assigned_ms") <= f(n, "first_ack_ms"), "{n}");
    assert!(n["partitions_given"].as_u64().unwrap() >= 1, "{n}");
    assert_eq!(n["failed"].as_u64(), Some(0), "{n}");

    let d = &r["drain"];
    assert_eq!(d["partitions"].as_u64(), Some(20));
    assert!(d["moved"].as_u64().unwrap() >= 1, "{d}");
    assert_eq!(d["served"], d["moved"], "broker 0 took every partition broker 1 gave: {d}");
    assert!(f(d, "drain_ms") > 0.0 && d["failed"].as_u64() == Some(0), "{d}");

    let t = r["throughput"].as_array().unwrap();
    assert_eq!(t.iter().map(|row| row["brokers"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2]);
    for row in t {
        assert!(f(row, "mb_per_s") > 0.0 && row["failed"].as_u64() == Some(0), "{row}");
        latency_is_ordered(&row["ack_latency"]);
    }
    assert_eq!(f(&t[0], "of_first"), 1.0);

    let targets = r["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 4, "moves, failover, new broker, drain: {r}");
    for t in targets {
        assert!(f(t, "ratio").is_finite() && f(t, "ratio") > 0.0, "{t}");
    }
    for row in ["move: command to 1st ack, 1 MB history", "failover:", "new broker:", "drain: 20 partitions"]
    {
        let line =
            stdout.lines().find(|l| l.starts_with(row)).unwrap_or_else(|| panic!("no {row:?} in\n{stdout}"));
        assert!(line.trim_end().ends_with('x'), "a ratio to the goal on {line:?}");
    }
    for file in [
        "cluster-moves-local.svg",
        "cluster-failover-local.svg",
        "cluster-churn-local.svg",
        "cluster-throughput-local.svg",
        "cluster-table-local.txt",
    ] {
        assert!(out.join(file).exists(), "{file} was not written");
    }
}

/// long-run, for half a minute on a local directory: a table of samples,
/// the ratios of the last to a baseline, a picture, and a report whose
/// figures are consistent. Flatness is not asserted: that takes minutes.
#[test]
fn long_run_samples_and_prints_its_ratios() {
    let dir = tempfile::tempdir().unwrap();
    let (json, svg) = (dir.path().join("long-run.json"), dir.path().join("long-run.svg"));
    let run = Command::new(env!("CARGO_BIN_EXE_floe-bench"))
        .args(["--json", json.to_str().unwrap(), "--svg", svg.to_str().unwrap(), "long-run"])
        .args(["--local-dir", dir.path().to_str().unwrap(), "--minutes", "0.5", "--sample-seconds", "5"])
        .args(["--partitions", "50", "--rate", "500", "--retention-ms", "10000"])
        .args(["--log-retention-check-interval-ms", "2000", "--object-delete-delay-ms", "2000"])
        .output()
        .expect("run floe-bench long-run");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    for text in
        ["RSS MB", "meta KB", "ratios: last sample", "RSS", "metadata (snapshot + log)", "bucket data:"]
    {
        assert!(stdout.contains(text), "no {text:?} in\n{stdout}");
    }
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["scenario"], "long-run");
    assert_eq!(r["load"]["failed"].as_u64(), Some(0), "{}", r["load"]);
    assert!(r["load"]["acked"].as_u64().unwrap() > 5_000, "{}", r["load"]);
    let samples = r["samples"].as_array().unwrap();
    assert!(samples.len() >= 5, "a sample every 5 s for 30 s: {samples:?}");
    let n = |s: &serde_json::Value, k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k} in {s}"));
    for s in samples {
        assert!(n(s, "rss_bytes") > 0 && n(s, "metadata_bytes") > 0, "{s}");
        assert!(s["cpu_percent"].as_f64().unwrap() >= 0.0, "{s}");
    }
    let last = samples.last().unwrap();
    assert!(n(last, "data_objects") > 0 && n(last, "objects") > 0 && n(last, "ranges") > 0, "{last}");
    assert!(n(last, "seq") > n(&samples[0], "seq"), "uploads commit: {samples:?}");
    let v = &r["verdict"];
    assert_eq!(v["baseline"].as_u64(), Some(2), "30 s does not reach the warm-up: {v}");
    for ratio in ["rss_ratio", "metadata_ratio", "data_to_live"] {
        assert!(v[ratio].as_f64().is_some_and(|x| x > 0.0), "{ratio} in {v}");
    }
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.contains("broker RSS") && picture.contains("ranges"), "{picture}");
}
