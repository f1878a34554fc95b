//! Applying diffs to nodes running in this process (`runtime::controller`):
//! rewiring loses nothing on links the change did not touch, the echo
//! filter follows changed channels, and a failing node rolls back alone.

use crate::chat::*;
use crate::util::RedisServer;
use std::time::Duration;
use topo::diff::{Diff, wirings};
use topo::model::Topology;
use topo::runtime::Running;
use topo::runtime::controller::{Fallback, apply};

/// a --zmq--> b; b and r share a Redis server; b's Redis side is what moves.
fn base(redis: &RedisServer, a: u16, b: u16, r: u16, pa: u16) -> Topology {
    let na = with_zmq(node("a", Some(a)), Some(pa), &[]);
    let nb = with_zmq(node("b", Some(b)), None, &[pa]);
    let nb = with_redis(nb, "x", &["x"], &[]);
    let nr = with_redis(node("r", Some(r)), "y", &["y"], &[]);
    topology(vec![na, nb, nr], vec![broker(redis.port)])
}

async fn reload(running: &mut Running, to: &Topology, generation: u64) {
    let diff = Diff::of_wirings(&running.wirings().await, &wirings(to));
    assert!(!diff.is_empty());
    let failures = apply(running, &diff, generation).await;
    assert!(failures.is_empty(), "{failures:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewiring_redis_drops_nothing_on_untouched_links_and_keeps_echoes_out() {
    let redis = RedisServer::start();
    let (a, b, r, pa) = (port(), port(), port(), port());
    let t0 = base(&redis, a, b, r, pa);
    let mut running = Running::start(&t0).await.unwrap();
    running.wait_links_up(LIMIT).await.unwrap();
    let mut ca = Client::connect(a).await;
    let mut cb = Client::connect(b).await;
    probe_links(
        &mut [Client::connect(a).await, Client::connect(b).await],
        &[(0, 1)],
    )
    .await;

    // b's Redis subscription moves around its own channel x while a's client
    // streams over ZeroMQ and b's client sends on its own channel.
    let variants: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["x", "y"], vec![]),
        (vec!["y", "x"], vec!["z*"]),
        (vec!["x"], vec!["z*", "q*"]),
        (vec!["x"], vec![]),
    ];
    let mut generation = 0;
    for round in 0..3 {
        for (subscribe, patterns) in &variants {
            generation += 1;
            let mut t = t0.clone();
            t.nodes[1] = with_redis(t.nodes[1].clone(), "x", subscribe, patterns);
            for i in 0..20 {
                ca.send(&format!("a{round}-{generation}-{i}")).await;
                cb.send(&format!("b{round}-{generation}-{i}")).await;
            }
            reload(&mut running, &t, generation).await;
            for i in 20..40 {
                ca.send(&format!("a{round}-{generation}-{i}")).await;
                cb.send(&format!("b{round}-{generation}-{i}")).await;
            }
        }
    }
    ca.send("fence").await;
    cb.send("fence-b").await;
    let mut seen = cb.until("fence-b").await;
    // The ZeroMQ fence may come after b's own: wait for it too.
    if !seen.iter().any(|s| s == "fence") {
        seen.extend(cb.until("fence").await);
    }
    for g in 1..=generation {
        let round = (g - 1) / variants.len() as u64;
        for i in 0..40 {
            assert_eq!(count(&seen, &format!("a{round}-{g}-{i}")), 1, "a's message");
            let m = format!("b{round}-{g}-{i}");
            assert_eq!(count(&seen, &m), 1, "b's own {m}");
        }
    }
    assert!(cb.drain(Duration::from_millis(200)).await.is_empty());
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_node_rolls_back_and_the_rest_of_the_diff_stands() {
    let (a, b, c, pa, pb) = (port(), port(), port(), port(), port());
    let na = with_zmq(node("a", Some(a)), Some(pa), &[pb]);
    let nb = with_zmq(node("b", Some(b)), Some(pb), &[pa]);
    let t0 = topology(vec![na, nb], vec![]);
    let mut running = Running::start(&t0).await.unwrap();
    running.wait_links_up(LIMIT).await.unwrap();
    let mut cb = Client::connect(b).await;
    let mut ca = Client::connect(a).await;

    // b's PUB moves onto a taken port, a's HTTP server onto another taken
    // one, and c is added: b and a keep their old configuration, c starts.
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let taken_http = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let mut t1 = t0.clone();
    t1.nodes[1] = with_zmq(node("b", Some(b)), Some(taken_port), &[pa]);
    t1.nodes[0].http = Some(local(taken_http.local_addr().unwrap().port()));
    t1.nodes.push(node("c", Some(c)));
    let diff = Diff::of_wirings(&running.wirings().await, &wirings(&t1));
    let failures = apply(&mut running, &diff, 1).await;
    let names: Vec<&str> = failures.iter().map(|f| f.node.as_str()).collect();
    assert_eq!(names, ["a", "b"], "{failures:?}");
    assert!(failures.iter().all(|f| f.now == Fallback::Previous));
    assert!(
        failures[1].to_string().contains("address in use"),
        "{}",
        failures[1]
    );
    assert_eq!(http_get(c, "/healthz").await.0, 200);
    let (_, health) = http_get(b, "/healthz").await;
    assert!(health.contains("\"generation\":0"), "{health}");
    // b kept its client (rewired in place, rolled back); a was restarted and
    // rolled back, so its client was closed and a new one works.
    cb.send("b still works").await;
    cb.wait_for("b still works").await;
    assert!(ca.close_frame().await.is_some());
    running.wait_links_up(LIMIT).await.unwrap();
    let mut clients = [Client::connect(a).await, Client::connect(b).await];
    probe_links(&mut clients, &[(0, 1), (1, 0)]).await;
    running.shutdown().await;
}

/// A node applies a delta only to the wiring it was computed from: a change
/// planned against another wiring is refused and nothing moves (the delta
/// is not re-derived on the node, so a stale one could not be corrected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_computed_from_another_wiring_is_refused() {
    let (a, pa) = (port(), port());
    let t0 = topology(vec![with_zmq(node("a", Some(a)), Some(pa), &[])], vec![]);
    let running = Running::start(&t0).await.unwrap();
    let runs = running.wirings().await.remove(0);
    let mut other = runs.clone();
    other.relay = !runs.relay;
    let new = topo::model::Wiring {
        publish: None,
        ..other.clone()
    };
    let change = topo::diff::Change::between(&other, &new);
    let node = running.node("a").unwrap();
    let refused = node.rewire(&change, 1).await;
    assert!(
        matches!(refused, Err(topo::node::StartError::Stale { ref node }) if node == "a"),
        "{refused:?}"
    );
    assert_eq!(node.wiring().await, runs);
    assert_eq!(node.router.generation(), 0);
    // The same target from what runs applies.
    let change = topo::diff::Change::between(&runs, &new);
    node.rewire(&change, 1).await.unwrap();
    assert_eq!(node.wiring().await, new);
    running.shutdown().await;
}
