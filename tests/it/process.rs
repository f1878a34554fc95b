//! `topo up --process`: one child per node, restarted after `kill -9`,
//! never outliving a parent killed with `kill -9`, and reloads that restart
//! only the children of changed nodes.

use crate::reload::{Up, probe_agrees, save};
use crate::util::free_port;
use std::time::{Duration, Instant};

fn mesh(a: u16, b: u16, pa: u16, pb: u16) -> String {
    format!(
        "nodes:
  a: {{ http: {a}, zmq: {{ pub: {pa}, sub: [b] }} }}
  b: {{ http: {b}, zmq: {{ pub: {pb}, sub: [a] }} }}
"
    )
}

/// Pids from the supervisor's `child started pid=N` lines, per node, in order.
fn child_pids(log: &str, node: &str) -> Vec<i32> {
    let tag = format!("node{{node={node}}}: child started pid=");
    log.lines()
        .filter_map(|l| l.split_once(&tag))
        .filter_map(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Alive and not a zombie waiting for its new parent to reap it.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(") ").map(|(_, s)| &s[..1]),
            Some("Z" | "X")
        ),
        Err(_) => false,
    }
}

fn kill9(pid: i32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_child_is_restarted_and_the_topology_heals() {
    let (a, b, pa, pb) = (free_port(), free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("topo.yaml");
    std::fs::write(&file, mesh(a, b, pa, pb)).unwrap();
    let up = Up::start(&file, &["--process"]);
    up.wait_log("child started", 2).await;
    up.wait_log("node ready", 2).await;
    probe_agrees(&file).await;
    let first = child_pids(&up.log(), "a")[0];
    kill9(first);
    up.wait_log("child exited, restarting", 1).await;
    up.wait_log("child started", 3).await;
    up.wait_log("node ready", 3).await;
    let second = child_pids(&up.log(), "a")[1];
    assert_ne!(first, second);
    probe_agrees(&file).await;

    // A reload restarts only the changed node's child.
    let c = free_port();
    let mut text = mesh(a, b, pa, pb);
    text.push_str(&format!("  c: {{ http: {c} }}\n"));
    text = text.replace("sub: [a] }", "sub: [a], topic: chat2 }");
    save(&file, &text);
    up.wait_generation(1).await;
    up.wait_log("node ready", 5).await;
    let log = up.log();
    assert_eq!(child_pids(&log, "a"), [first, second], "{log}");
    assert_eq!(child_pids(&log, "b").len(), 2, "{log}");
    assert_eq!(child_pids(&log, "c").len(), 1, "{log}");
    probe_agrees(&file).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_do_not_outlive_a_parent_killed_with_sigkill() {
    let (a, b, pa, pb) = (free_port(), free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("topo.yaml");
    std::fs::write(&file, mesh(a, b, pa, pb)).unwrap();
    let mut up = Up::start(&file, &["--process"]);
    up.wait_log("node ready", 2).await;
    let log = up.log();
    let pids = [child_pids(&log, "a")[0], child_pids(&log, "b")[0]];
    assert!(pids.iter().all(|&p| alive(p)));
    up.child.kill().unwrap(); // SIGKILL
    up.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| alive(p)) {
        assert!(Instant::now() < deadline, "children outlived the parent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
