//! Wire compatibility with the chapter's own Node.js servers
//! (shared/peers/node-seed): a topo node and a Node.js peer exchange messages
//! over ZeroMQ and over Redis, both ways. Skipped only when `node` is missing.

use crate::chat::*;
use crate::util::RedisServer;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::time::timeout;
use topo::runtime::Running;

const PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/peers/node-seed");

/// A node-seed server, killed (by pid) on drop.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node_installed() -> bool {
    let found = Command::new("node").arg("--version").output().is_ok();
    if !found {
        println!("skipped: `node` is not installed");
    }
    found
}

/// Starts `run-peer.sh ARGS` and waits until its HTTP port accepts
/// connections (the first run also installs its npm packages).
async fn peer(args: &[&str], env: &[(&str, String)], http: u16) -> Peer {
    let child = Command::new(format!("{PEERS}/run-peer.sh"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("run-peer.sh");
    let mut peer = Peer(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", http))
            .await
            .is_ok()
        {
            return peer;
        }
        if let Ok(Some(status)) = peer.0.try_wait() {
            panic!("node-seed peer exited: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "node-seed peer did not listen on {http}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn zmq_node_and_node_seed_peer_exchange_messages() {
    if !node_installed() {
        return;
    }
    let (t_http, t_pub, n_http, n_pub) = (port(), port(), port(), port());
    let t = topology(
        vec![with_zmq(node("t", Some(t_http)), Some(t_pub), &[n_pub])],
        vec![],
    );
    let running = timeout(LIMIT, Running::start(&t)).await.unwrap().unwrap();
    let args = [
        "zmq-fixed",
        "--http",
        &n_http.to_string(),
        "--pub",
        &n_pub.to_string(),
        "--sub",
        &t_pub.to_string(),
    ];
    let _peer = peer(&args, &[], n_http).await;
    running
        .wait_links_up(LIMIT)
        .await
        .expect("topo sub connected to the peer");

    let mut clients = vec![
        Client::connect(t_http).await,
        Client::connect_path(n_http, "/").await,
    ];
    probe_links(&mut clients, &[(0, 1), (1, 0)]).await;
    clients[0].send("from topo, several words").await;
    clients[1].wait_for("from topo, several words").await;
    clients[1].send("from node, several words").await;
    clients[0].wait_for("from node, several words").await;
    running.shutdown().await;
}

#[tokio::test]
async fn redis_node_and_node_seed_peer_share_a_channel() {
    if !node_installed() {
        return;
    }
    let redis = RedisServer::start();
    let (t_http, n_http) = (port(), port());
    let n = with_redis(
        node("t", Some(t_http)),
        "chat_messages",
        &["chat_messages"],
        &[],
    );
    let t = topology(vec![n], vec![broker(redis.port)]);
    let running = timeout(LIMIT, Running::start(&t)).await.unwrap().unwrap();
    let _peer = peer(
        &["redis", &n_http.to_string()],
        &[("REDIS_URL", redis.url())],
        n_http,
    )
    .await;

    let mut clients = vec![
        Client::connect(t_http).await,
        Client::connect_path(n_http, "/").await,
    ];
    // The peer subscribes in the background after it listens.
    probe_links(&mut clients, &[(0, 1), (1, 0)]).await;
    let (t_client, n_client) = clients.split_at_mut(1);
    let (t_client, n_client) = (&mut t_client[0], &mut n_client[0]);
    t_client.send("from topo").await;
    t_client.wait_for("from topo").await;
    n_client.wait_for("from topo").await;
    // The peer's message leaves Redis after topo's echo: a duplicate would show first.
    n_client.send("from node").await;
    assert_eq!(count(&t_client.until("from node").await, "from topo"), 0);
    running.shutdown().await;
}
