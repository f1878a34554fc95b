//! AMQP links while they run: `/healthz` follows a durable queue's depth
//! (not only as of the last connection), and a reload rewires a node's
//! bindings and routing key on its live link. Each test uses its own
//! exchange and queues on the shared RabbitMQ.

use crate::amqp::{cleanup, file, node, start};
use crate::chat::{Client, LIMIT, health, port};
use crate::rabbit;
use crate::util::wait_until;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use topo::runtime::Running;

/// The state and queue depth of the AMQP link in `port`'s `/healthz`.
pub async fn amqp_link(port: u16) -> (String, Option<u64>) {
    let h = health(port).await;
    let links = h["links"].as_array().cloned().unwrap_or_default();
    let link = links
        .into_iter()
        .find(|l| l["kind"] == "amqp")
        .expect("an amqp link");
    let state = link["state"].as_str().unwrap_or_default().to_owned();
    (state, link["queue_depth"].as_u64())
}

async fn depth_is(port: u16, wanted: u64) {
    wait_until(&format!("queue depth {wanted}"), LIMIT, || async {
        match amqp_link(port).await {
            (_, Some(d)) if d == wanted => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

/// Durable `b` has no client: what `a` sends waits in b's queue, and b's
/// `/healthz` says how much while it waits; b's first client empties it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depth_follows_what_waits_for_a_durable_node() {
    let exchange = rabbit::unique("depth");
    let queue = rabbit::unique("depth-b");
    let (pa, pb) = (port(), port());
    let x = format!("exchange: {exchange}");
    let yaml = file(&[
        node("a", pa, &x),
        node("b", pb, &format!("{x}, queue: {queue}")),
    ]);
    let (running, _) = start(&yaml).await;
    depth_is(pb, 0).await;
    let mut a = Client::connect(pa).await;
    for i in 0..5 {
        a.send(&format!("m{i}")).await;
    }
    depth_is(pb, 5).await;
    let mut b = Client::connect(pb).await;
    for i in 0..5 {
        assert_eq!(b.recv().await, format!("m{i}"));
    }
    depth_is(pb, 0).await;
    running.shutdown().await;
    cleanup(&[&exchange], &[&queue]).await;
}

async fn reload(running: &mut Running, yaml: &str) {
    let to = topo::check::check_bytes("t.yaml", "t", yaml.as_bytes(), &|_| None)
        .valid
        .expect("valid");
    let new = topo::diff::wirings(&to.topology);
    let diff = topo::diff::Diff::of_wirings(&running.wirings().await, &new);
    let failures = topo::runtime::controller::apply(running, &diff, 1).await;
    assert!(failures.is_empty(), "{failures:?}");
}

fn rooms(exchange: &str, ports: &[u16], room: &str) -> String {
    let x = format!("exchange: {exchange}, type: topic");
    file(&[
        node(
            "a",
            ports[0],
            &format!("{x}, publish: {room}, bind: [to.a]"),
        ),
        node(
            "b",
            ports[1],
            &format!("{x}, publish: to.c, bind: [{room}]"),
        ),
        node(
            "c",
            ports[2],
            &format!("{x}, publish: room.x, bind: [to.c]"),
        ),
    ])
}

/// b listens to room x, then is rewired to room y while a moves its
/// routing key to room y: before, b gets what a and c publish to room x;
/// after, a's room y only, c's room x no more. The links of a and b read
/// `up` all along (rewired on their connections, not replaced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rewires_bindings_and_routing_key_on_the_live_link() {
    let exchange = rabbit::unique("rewire");
    let ports: Vec<u16> = (0..3).map(|_| port()).collect();
    let (mut running, _) = start(&rooms(&exchange, &ports, "room.x")).await;
    let mut clients = Vec::new();
    for p in &ports {
        clients.push(Client::connect(*p).await);
    }
    let [a, b, c] = &mut clients[..] else {
        unreachable!()
    };
    let quiet = Duration::from_millis(300);
    a.send("a before").await;
    c.send("c before").await;
    let mut seen = vec![b.recv().await, b.recv().await];
    seen.extend(b.drain(quiet).await);
    seen.sort();
    assert_eq!(seen, ["a before", "c before"]);

    let stop = Arc::new(AtomicBool::new(false));
    let watch = {
        let (stop, watched) = (stop.clone(), [ports[0], ports[1]]);
        tokio::spawn(async move {
            let mut states = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for p in watched {
                    states.push(amqp_link(p).await.0);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            states
        })
    };
    reload(&mut running, &rooms(&exchange, &ports, "room.y")).await;
    c.send("c after").await;
    a.send("a after").await;
    // c still publishes to room x: b must hear nothing more than a.
    assert_eq!(b.recv().await, "a after");
    assert_eq!(b.drain(quiet).await, Vec::<String>::new());
    stop.store(true, Ordering::Relaxed);
    let states = tokio::time::timeout(LIMIT, watch).await.unwrap().unwrap();
    assert!(!states.is_empty());
    assert!(states.iter().all(|s| s == "up"), "{states:?}");
    assert_eq!(health(ports[1]).await["generation"], 1);
    running.shutdown().await;
    cleanup(&[&exchange], &[]).await;
}
