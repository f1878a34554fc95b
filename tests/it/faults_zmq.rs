//! A ZeroMQ PUB peer that dies: another process (`topo node FILE a`, the
//! real binary) is killed with SIGKILL and started again, and the node that
//! subscribes to it receives from it again without a restart.

use crate::chat::*;
use crate::util::{Spawned, TestCommand};
use std::time::{Duration, Instant};
use tokio::time::timeout;
use topo::check::check_file;
use topo::runtime::Running;
use topo::transport::LinkState;

/// `topo node FILE NAME`, killed on drop.
fn spawn_node(file: &std::path::Path, name: &str) -> Spawned {
    TestCommand::new()
        .arg("node")
        .arg(file)
        .arg(name)
        .topology(file)
        .spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_receives_again_from_a_pub_process_that_was_killed_and_restarted() {
    let (a_http, a_pub, b_http) = (port(), port(), port());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pair.yaml");
    std::fs::write(
        &file,
        format!(
            "nodes:\n  a: {{ http: {a_http}, zmq: {{ pub: {a_pub} }} }}\n  b: {{ http: {b_http}, zmq: {{ sub: [a] }} }}\n"
        ),
    )
    .unwrap();
    let valid = check_file(&file).unwrap().valid.expect("valid");
    let b_id = valid.topology.node_id("b").unwrap();
    let running = timeout(LIMIT, Running::start_nodes(&valid.topology, [b_id]))
        .await
        .unwrap()
        .unwrap();
    let mut peer = spawn_node(&file, "a");
    let a = Client::connect_when_listening(a_http).await;
    let b = Client::connect(b_http).await;
    let mut clients = vec![a, b];
    probe_links(&mut clients, &[(0, 1)]).await;

    // SIGKILL: no goodbye on the wire.
    peer.kill();
    let link = running.node("b").unwrap().links()[0].clone();
    crate::util::wait_until("b notices the loss", LIMIT, || async {
        match link.state() {
            LinkState::Up => Err(LinkState::Up),
            _ => Ok(()),
        }
    })
    .await;
    let (_, body) = http_get(b_http, "/healthz").await;
    assert!(body.contains("\"state\":\"connecting\""), "{body}");
    // Down for a while, so a crate-level backoff would have grown.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let restarted = Instant::now();
    let _peer = spawn_node(&file, "a");
    clients[0] = Client::connect_when_listening(a_http).await;
    timeout(LIMIT, link.wait_up())
        .await
        .expect("b's sub reconnects");
    probe_links(&mut clients, &[(0, 1)]).await;
    let resumed = restarted.elapsed();
    eprintln!("zmq delivery resumed {resumed:?} after the PUB process restarted");
    assert!(resumed < Duration::from_secs(5), "{resumed:?}");
    clients[0].send("after the restart").await;
    clients[1].wait_for("after the restart").await;
    running.shutdown().await;
}
