//! File descriptors (issue 11): `topo up` refuses, naming both numbers, a
//! topology that cannot fit under its `RLIMIT_NOFILE` (never "ready"),
//! `validate` reports what a topology needs, and a node out of
//! descriptors backs off and recovers instead of logging every second.

use crate::chat::{Client, LIMIT};
use crate::util::{TestCommand, free_port, wait_until};
use std::time::{Duration, Instant};

/// `topo ARGS` with `RLIMIT_NOFILE` set to `limit` (soft and hard).
fn topo_limited(args: &[&str], limit: u64) -> TestCommand {
    let mut cmd = TestCommand::new();
    cmd.args(args).descriptor_limit(limit);
    cmd
}

/// A ZeroMQ full mesh of `n` nodes on free ports.
fn mesh(n: usize) -> String {
    let names: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
    let mut text = String::from("name: mesh\nnodes:\n");
    for name in &names {
        let subs: Vec<&str> = names
            .iter()
            .filter(|o| *o != name)
            .map(String::as_str)
            .collect();
        text.push_str(&format!(
            "  {name}: {{ http: {}, zmq: {{ pub: {}, sub: [{}] }} }}\n",
            free_port(),
            free_port(),
            subs.join(", ")
        ));
    }
    text
}

#[test]
fn up_refuses_a_topology_over_the_descriptor_limit_naming_both_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("mesh.yaml");
    std::fs::write(&file, mesh(12)).unwrap();
    let path = file.to_str().unwrap();

    let json = topo_limited(&["validate", path, "--format", "json"], 200).run();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let needed = v["descriptors"]["needed"]
        .as_u64()
        .expect("descriptors.needed");
    assert_eq!(v["descriptors"]["limit"], 200);
    // 12 listeners each for HTTP and PUB, 12 × 11 subscriptions × 2 ends.
    assert!(needed > 24 + 264, "{v}");
    let text = topo_limited(&["validate", path], 200).run();
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains(&format!("about {needed} needed in one process, limit 200")),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&text.stderr).contains("would refuse"));

    let started = Instant::now();
    let up = topo_limited(&["up", path, "--no-admin"], 200).run();
    assert!(started.elapsed() < LIMIT);
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(!up.status.success(), "{stderr}");
    assert!(stderr.contains(&needed.to_string()), "{stderr}");
    assert!(stderr.contains("200"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&up.stdout).contains("ready"),
        "ready printed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_a_node_backs_off_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let http = free_port();
    let file = tmp.path().join("one.yaml");
    std::fs::write(&file, format!("nodes:\n  a: {{ http: {http} }}\n")).unwrap();
    let mut up = topo_limited(&["up", file.to_str().unwrap(), "--no-admin"], 120)
        .env("RUST_LOG", "info")
        .topology(&file)
        .spawn();
    wait_until("topo up listens", LIMIT, || {
        tokio::net::TcpStream::connect(("127.0.0.1", http))
    })
    .await;
    // More idle connections than it has descriptors left.
    let mut idle = Vec::new();
    for _ in 0..150 {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", http))
                .await
                .unwrap(),
        );
    }
    // Accept fails while they are open: said once, not every second.
    let read = || up.stderr();
    crate::util::wait_until("an accept error logged", LIMIT, || async {
        let text = read();
        if text.contains("accept failing") {
            Ok(())
        } else {
            Err(text)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(read().matches("accept failing").count(), 1, "{}", read());
    drop(idle);
    // The header timeout and the freed descriptors: served again.
    let mut a = tokio::time::timeout(LIMIT * 2, Client::connect(http))
        .await
        .expect("served again");
    a.send("back").await;
    assert_eq!(a.recv().await, "back");
    assert!(read().contains("accepting again"), "{}", read());
    drop(a);
    up.kill();
}
