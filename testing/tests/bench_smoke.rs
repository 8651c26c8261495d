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
}
