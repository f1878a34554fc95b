//! Wire compatibility with the chapter's Node.js chat servers, as rewritten
//! in `tests/peers`: a topo node and a Node.js peer exchange messages over
//! ZeroMQ and over Redis, both ways. Without `node` these tests fail, unless
//! `TOPO_SKIP_NODE=1` (see the README).

use crate::chat::*;
use crate::external::{node_or_skip, npm_dir};
use crate::util::RedisServer;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;
use topo::runtime::Running;

/// A peer of `tests/peers`, killed when dropped.
struct Peer(#[allow(dead_code)] Child);

/// Starts `node tests/peers/PROGRAM ARGS` and waits for its `ready` line
/// (printed once its HTTP, WebSocket and pub/sub sockets are set up).
async fn peer(program: &str, args: &[&str], env: &[(&str, String)]) -> Peer {
    let dir = npm_dir("peers", "zeromq");
    let mut child = Command::new("node")
        .arg(dir.join(program))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{program} printed no ready line within 30 s"))
        .expect("peer stdout");
    match line {
        Some(line) if line.starts_with("ready ") => Peer(child),
        other => panic!(
            "{program} {args:?} did not start: {other:?} ({:?})",
            child.wait().await
        ),
    }
}

#[tokio::test]
async fn zmq_node_and_node_peer_exchange_messages() {
    if !node_or_skip() {
        return;
    }
    let (t_http, t_pub, n_http, n_pub) = (port(), port(), port(), port());
    let t = topology(
        vec![with_zmq(node("t", Some(t_http)), Some(t_pub), &[n_pub])],
        vec![],
    );
    let running = timeout(LIMIT, Running::start(&t)).await.unwrap().unwrap();
    let args = [
        "--http",
        &n_http.to_string(),
        "--pub",
        &n_pub.to_string(),
        "--sub",
        &t_pub.to_string(),
    ];
    let _peer = peer("zmq-chat.mjs", &args, &[]).await;
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
async fn redis_node_and_node_peer_share_a_channel() {
    if !node_or_skip() {
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
        "redis-chat.mjs",
        &[&n_http.to_string()],
        &[("REDIS_URL", redis.url())],
    )
    .await;

    let mut clients = vec![
        Client::connect(t_http).await,
        Client::connect_path(n_http, "/").await,
    ];
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
