//! `topo up --process`: one child per node, restarted after `kill -9`,
//! never outliving a parent killed with `kill -9`, and reloads that restart
//! only the children of changed nodes.

use crate::chat::LIMIT;
use crate::reload::{Up, probe_agrees, save};
use crate::util::{free_port, wait_until};
use std::time::Duration;
use topo::health::Health;

fn mesh(a: u16, b: u16, pa: u16, pb: u16) -> String {
    format!(
        "nodes:
  a: {{ http: {a}, zmq: {{ pub: {pa}, sub: [b] }} }}
  b: {{ http: {b}, zmq: {{ pub: {pb}, sub: [a] }} }}
"
    )
}

/// The pid of the process serving the node on `port`, from its `/healthz`.
async fn pid_at(port: u16) -> Result<i32, String> {
    let body = topo::http_get::get(
        format!("127.0.0.1:{port}"),
        "/healthz",
        Duration::from_secs(2),
        1 << 20,
    )
    .await
    .map_err(|e| e.to_string())?;
    let health: Health = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    Ok(health.pid as i32)
}

/// Waits until the node on `port` is served by a child of `up` that `ok`
/// accepts, and returns its pid.
pub async fn child_pid(up: &Up, port: u16, what: &str, ok: impl Fn(i32) -> bool) -> i32 {
    let parent = up.process.pid() as i32;
    wait_until(what, LIMIT, || async {
        let pid = pid_at(port).await?;
        if pid != parent && ok(pid) {
            Ok(pid)
        } else {
            Err(format!("pid {pid} (parent {parent})"))
        }
    })
    .await
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

pub fn kill9(pid: i32) {
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
    let first = child_pid(&up, a, "a served by a child", |_| true).await;
    let b_first = child_pid(&up, b, "b served by a child", |_| true).await;
    assert_ne!(first, b_first, "one child per node");
    probe_agrees(&file).await;
    kill9(first);
    let second = child_pid(&up, a, "a served by a new child", |p| p != first).await;
    assert!(alive(second));
    probe_agrees(&file).await;

    // A reload restarts only the changed node's child.
    let c = free_port();
    let mut text = mesh(a, b, pa, pb);
    text.push_str(&format!("  c: {{ http: {c} }}\n"));
    text = text.replace("sub: [a] }", "sub: [a], topic: chat2 }");
    save(&file, &text);
    up.wait_generation(1).await;
    let b_second = child_pid(&up, b, "b served by a new child", |p| p != b_first).await;
    let c_first = child_pid(&up, c, "c served by a child", |_| true).await;
    assert!(![first, second, b_first, b_second].contains(&c_first));
    assert_eq!(
        pid_at(a).await,
        Ok(second),
        "a was restarted:\n{}",
        up.log()
    );
    assert!(alive(second));
    probe_agrees(&file).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_do_not_outlive_a_parent_killed_with_sigkill() {
    let (a, b, pa, pb) = (free_port(), free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("topo.yaml");
    std::fs::write(&file, mesh(a, b, pa, pb)).unwrap();
    let mut up = Up::start(&file, &["--process"]);
    let pids = [
        child_pid(&up, a, "a served by a child", |_| true).await,
        child_pid(&up, b, "b served by a child", |_| true).await,
    ];
    assert!(pids.iter().all(|&p| alive(p)));
    up.process.child.kill().unwrap(); // SIGKILL
    up.process.child.wait().unwrap();
    wait_until(
        "children gone with the parent",
        Duration::from_secs(5),
        || async {
            let left: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
            if left.is_empty() { Ok(()) } else { Err(left) }
        },
    )
    .await;
}
