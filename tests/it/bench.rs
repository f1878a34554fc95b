//! `topo bench` as CI runs it: briefly, against topologies started in this
//! process on free ports, through the real binary; every predicted delivery
//! must arrive exactly once and the JSON must carry the figures.

use crate::util::{RedisServer, free_port};
use std::path::Path;
use std::time::Duration;
use topo::check::check_file;
use topo::runtime::Running;

/// Runs `topo bench ARGS --format json` under a deadline; its JSON and exit code.
async fn bench(args: &[&str]) -> (serde_json::Value, i32) {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_topo"))
        .arg("bench")
        .args(args)
        .args(["--format", "json"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("bench finishes")
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "bench printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (json, out.status.code().unwrap_or(-1))
}

/// A run that must come out clean. The whole test suite shares two cores
/// with this debug-build generator and server, and a starved run can lose a
/// message that a fed one would not (seen once in many full-suite runs): a
/// second run is allowed, and it must be clean. Losses in both still fail.
async fn clean_bench(args: &[&str]) -> (serde_json::Value, i32) {
    let (json, code) = bench(args).await;
    if code == 0 {
        return (json, code);
    }
    eprintln!("bench run not clean, running once more: {json:#}");
    bench(args).await
}

async fn start(file: &Path) -> Running {
    let valid = check_file(file).unwrap().valid.expect("a valid topology");
    let running = tokio::time::timeout(Duration::from_secs(10), Running::start(&valid.topology))
        .await
        .expect("starts in time")
        .expect("starts");
    running
        .wait_links_up(Duration::from_secs(10))
        .await
        .expect("links up");
    running
}

fn assert_clean(json: &serde_json::Value, code: i32) {
    assert_eq!(code, 0, "{json:#}");
    assert!(json["sent"].as_u64().unwrap() > 0, "{json:#}");
    assert_eq!(json["delivered"], json["expected"], "{json:#}");
    assert_eq!(json["lost"], 0, "{json:#}");
    assert_eq!(json["duplicates"], 0, "{json:#}");
    assert_eq!(json["dropped_clients"], 0, "{json:#}");
    assert!(
        json["latency"]["p99_ms"].as_f64().unwrap() > 0.0,
        "{json:#}"
    );
    assert!(json["generator_cpu"].as_f64().is_some(), "{json:#}");
}

const SHORT: [&str; 6] = ["--warmup", "0.5", "--duration", "1", "--drain", "5"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_zmq_mesh_open_loop_gets_every_predicted_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("zmq.yaml");
    let (h, p): (Vec<u16>, Vec<u16>) = (0..3).map(|_| (free_port(), free_port())).unzip();
    std::fs::write(
        &file,
        format!(
            "nodes:\n  a: {{ http: {}, zmq: {{ pub: {}, sub: [b, c] }} }}\n  \
             b: {{ http: {}, zmq: {{ pub: {}, sub: [a, c] }} }}\n  \
             c: {{ http: {}, zmq: {{ pub: {}, sub: [a, b] }} }}\n",
            h[0], p[0], h[1], p[1], h[2], p[2]
        ),
    )
    .unwrap();
    let running = start(&file).await;
    let pid = std::process::id().to_string();
    let mut args = vec![file.to_str().unwrap(), "--clients", "30", "--senders", "6"];
    args.extend(["--rate", "300", "--pid", &pid, "--label", "smoke/zmq"]);
    args.extend(SHORT);
    let (json, code) = clean_bench(&args).await;
    running.shutdown().await;
    assert_clean(&json, code);
    // 30 clients on 3 nodes, every one gets every message once.
    assert_eq!(
        json["expected"].as_u64().unwrap(),
        json["sent"].as_u64().unwrap() * 30
    );
    assert_eq!(json["label"], "smoke/zmq");
    assert!(json["processes"][0]["cpu"].as_f64().is_some(), "{json:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_redis_closed_loop_and_raw_urls() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("redis.yaml");
    let (a, b) = (free_port(), free_port());
    std::fs::write(
        &file,
        format!(
            "brokers:\n  main: {{ url: \"{}\" }}\nnodes:\n  \
             a: {{ http: {a}, redis: {{ broker: main }} }}\n  \
             b: {{ http: {b}, redis: {{ broker: main }} }}\n",
            redis.url()
        ),
    )
    .unwrap();
    let running = start(&file).await;
    let mut args = vec![file.to_str().unwrap(), "--clients", "20", "--senders", "4"];
    args.extend(["--window", "4"]);
    args.extend(SHORT);
    let (json, code) = clean_bench(&args).await;
    assert_clean(&json, code);
    assert_eq!(json["load"]["mode"], "closed");

    // The same servers as raw URLs: `--expect all` predicts the same.
    let (ua, ub) = (
        format!("ws://127.0.0.1:{a}/"),
        format!("ws://127.0.0.1:{b}/"),
    );
    let mut args = vec!["--url", &ua, "--url", &ub, "--expect", "all"];
    args.extend(["--clients", "10", "--senders", "2", "--rate", "200"]);
    args.extend(SHORT);
    let (json, code) = clean_bench(&args).await;
    assert_clean(&json, code);
    // `--expect node` is wrong for this wiring: the bench says so (duplicates).
    let mut args = vec!["--url", &ua, "--url", &ub, "--expect", "node"];
    args.extend(["--clients", "4", "--senders", "2", "--rate", "100"]);
    args.extend(SHORT);
    let (json, code) = bench(&args).await;
    assert_eq!(code, 1, "{json:#}");
    assert!(json["duplicates"].as_u64().unwrap() > 0, "{json:#}");
    running.shutdown().await;
}

#[test]
fn bench_without_a_target_is_a_usage_error() {
    crate::util::TestCommand::new()
        .args(["bench", "--duration", "0.1"])
        .expect_code(2);
}
