//! The fault limits under hot reload (the merge of `reload` and `faults`):
//! client limits change in place for new connections while existing clients
//! stay, a new `send_queue` restarts the node, and a Redis link's outbox
//! survives a rewire made during an outage, resized, flushed in order onto
//! the new publish channel without echoes; a node added while its Redis
//! server is down is refused at once.

use crate::chat::*;
use crate::util::{RedisServer, wait_until};
use std::time::Duration;
use tokio::time::timeout;
use topo::check::check_bytes;
use topo::diff::{Diff, wirings};
use topo::model::Topology;
use topo::node::close::CloseCode;
use topo::runtime::Running;
use topo::runtime::controller::apply;

fn compile(yaml: &str, http: u16) -> Topology {
    let text = yaml.replace("PORT", &http.to_string());
    let checked = check_bytes("limits.yaml", "limits", text.as_bytes(), &|_| None);
    match checked.valid {
        Some(valid) => valid.topology,
        None => panic!("{}", checked.render()),
    }
}

/// Applies the diff to `to`; returns how each changed node was applied.
async fn reload(running: &mut Running, to: &Topology, generation: u64) -> String {
    let diff = Diff::of_wirings(&running.wirings().await, &wirings(to));
    let failures = apply(running, &diff, generation).await;
    assert!(failures.is_empty(), "{failures:?}");
    diff.summary()
}

#[tokio::test]
async fn client_limits_change_in_place_and_a_new_send_queue_restarts() {
    let http = port();
    let t0 = compile("nodes:\n  a: { http: PORT }\n", http);
    let mut running = timeout(LIMIT, Running::start(&t0)).await.unwrap().unwrap();
    let mut kept = Client::connect(http).await;
    // No `origins:`: same-origin only.
    assert_eq!(upgrade_status(http, "http://good.example").await, 403);
    assert_eq!(
        upgrade_status(http, &format!("http://127.0.0.1:{http}")).await,
        101
    );

    let t1 = compile(
        "origins: ['http://good.example']\nlimits: { max_message_bytes: 64 }\nnodes:\n  a: { http: PORT }\n",
        http,
    );
    assert_eq!(reload(&mut running, &t1, 1).await, "~a(rewire)");
    assert_eq!(upgrade_status(http, "http://evil.example").await, 403);
    assert_eq!(upgrade_status(http, "http://good.example").await, 101);
    // The client accepted before keeps its connection and its limits.
    kept.send(&"k".repeat(100)).await;
    assert_eq!(kept.recv().await.len(), 100);
    // A new one gets the new size limit.
    let mut fresh = Client::connect(http).await;
    fresh.send(&"x".repeat(100)).await;
    let frame = fresh.close_frame().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), u16::from(CloseCode::TooBig));

    let t2 = compile(
        "origins: ['http://good.example']\nlimits: { max_message_bytes: 64, send_queue: 16 }\nnodes:\n  a: { http: PORT }\n",
        http,
    );
    assert_eq!(reload(&mut running, &t2, 2).await, "~a(restart)");
    let frame = kept.close_frame().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), u16::from(CloseCode::GoingAway));
    assert_eq!(upgrade_status(http, "http://evil.example").await, 403);
    let mut after = Client::connect(http).await;
    after.send("after").await;
    assert_eq!(after.recv().await, "after");
    assert_eq!(health(http).await["generation"], 2);
    running.shutdown().await;
}

/// Polls `/healthz` until `check` holds for a's Redis link.
async fn wait_link(http: u16, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
    wait_until(what, LIMIT, || async {
        let h = health(http).await;
        if check(&h["links"][0]) {
            Ok(())
        } else {
            Err(h)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_survives_a_rewire_during_an_outage_and_flushes_onto_the_new_channel() {
    let mut redis = RedisServer::start();
    let (a_http, b_http) = (port(), port());
    // a publishes on chat and hears both channels; b only hears news.
    let node_a = |publish: &str, outbox: usize| {
        let mut n = with_redis(node("a", Some(a_http)), publish, &["chat", "news"], &[]);
        n.limits.outbox = outbox;
        n
    };
    let b = with_redis(node("b", Some(b_http)), "other", &["news"], &[]);
    let t0 = topology(
        vec![node_a("chat", 10), b.clone()],
        vec![broker(redis.port)],
    );
    let mut running = timeout(LIMIT, Running::start(&t0)).await.unwrap().unwrap();
    let mut ca = Client::connect(a_http).await;
    let mut cb = Client::connect(b_http).await;
    ca.send("before").await;
    assert_eq!(ca.recv().await, "before");
    // Published (not held) before the outage: the outbox starts empty.
    crate::util::wait_until("\"before\" published", LIMIT, || async {
        let health = health(a_http).await;
        if health["messages"]["out"] == 1 {
            Ok(())
        } else {
            Err(health)
        }
    })
    .await;

    redis.kill();
    wait_link(a_http, "down", |l| l["state"] == "down").await;
    for i in 0..6 {
        let text = format!("held-{i}");
        ca.send(&text).await;
        assert_eq!(ca.recv().await, text);
    }
    wait_link(a_http, "6 held", |l| l["outbox"]["queued"] == 6).await;
    // While Redis is down: a new publish channel (no (UN)SUBSCRIBE needed)
    // and a smaller outbox, both applied in place.
    let t1 = topology(vec![node_a("news", 4), b], vec![broker(redis.port)]);
    assert_eq!(reload(&mut running, &t1, 1).await, "~a(rewire)");
    wait_link(a_http, "resized", |l| {
        l["outbox"]["queued"] == 4 && l["outbox"]["dropped"] == 2 && l["state"] == "down"
    })
    .await;

    let _redis = RedisServer::start_on(redis.port);
    for i in 2..6 {
        assert_eq!(cb.recv().await, format!("held-{i}"));
    }
    wait_link(a_http, "flushed", |l| {
        l["state"] == "up" && l["outbox"]["queued"] == 0 && l["outbox"]["flushed"] == 4
    })
    .await;
    // a hears news too: its flushed messages came back as echoes and were
    // dropped; new traffic flows on the new channel.
    ca.send("after").await;
    assert_eq!(cb.recv().await, "after");
    cb.send("fence").await; // on b's own channel: only b's client gets it
    assert_eq!(cb.until("fence").await, Vec::<String>::new());
    assert_eq!(ca.drain(Duration::from_millis(300)).await, ["after"]);
    running.shutdown().await;
}

/// A node added while its Redis server is down is refused with the reason,
/// though the process already holds a (reconnecting) publishing connection
/// to that server: the new node's own connection is probed, not awaited
/// for the 5 s start timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_while_its_shared_redis_is_down_is_refused_at_once() {
    let mut redis = RedisServer::start();
    let a = with_redis(node("a", Some(port())), "chat", &["chat"], &[]);
    let t0 = topology(vec![a.clone()], vec![broker(redis.port)]);
    let mut running = timeout(LIMIT, Running::start(&t0)).await.unwrap().unwrap();
    redis.kill();
    let b = with_redis(node("b", None), "chat", &["chat"], &[]);
    let t1 = topology(vec![a, b], vec![broker(redis.port)]);
    let diff = Diff::of_wirings(&running.wirings().await, &wirings(&t1));
    let started = std::time::Instant::now();
    let failures = timeout(LIMIT, apply(&mut running, &diff, 1)).await.unwrap();
    let took = started.elapsed();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].node, "b");
    let expected = format!("cannot reach redis {}", t1.brokers[0].url);
    assert!(failures[0].error.contains(&expected), "{failures:?}");
    assert!(took < Duration::from_secs(3), "refused after {took:?}");
    running.shutdown().await;
}
