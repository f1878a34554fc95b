//! A running NATS link against its own nats-server: a reload rewires it on
//! its connection (the server sees the same client, the untouched
//! subscription keeps delivering across the change), and a node whose
//! server is down keeps local delivery, reads `down`, and holds what its
//! clients send in the outbox (bounded) until the server is back.

use crate::chat::{Client, LIMIT, health, port};
use crate::nats::{start, valid};
use crate::util::wait_until;
use std::time::Duration;
use topo::check::Valid;
use topo::runtime::Running;
use topo::testing::nats::NatsServer;

/// `(cid, num_connections)` of node `name`'s connection on `server`.
async fn connection_of(server: &NatsServer, name: &str) -> (u64, u64) {
    let wanted = format!("topo {name}");
    wait_until(&format!("{name} in /connz"), LIMIT, || async {
        let addr = format!("127.0.0.1:{}", server.monitor_port);
        let body = topo::http_get::get(addr, "/connz", LIMIT, 1 << 20)
            .await
            .map_err(|e| e.to_string())?;
        let connz: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let cid = connz["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == wanted.as_str())
            .and_then(|c| c["cid"].as_u64())
            .ok_or("not connected")?;
        Ok::<_, String>((cid, connz["num_connections"].as_u64().unwrap_or(0)))
    })
    .await
}

async fn reload(running: &mut Running, to: &Valid) {
    let new = topo::diff::wirings(&to.topology);
    let diff = topo::diff::Diff::of_wirings(&running.wirings().await, &new);
    let failures = topo::runtime::controller::apply(running, &diff, 1).await;
    assert!(failures.is_empty(), "{failures:?}");
}

fn three(url: &str, ports: &[u16], a: &str) -> String {
    format!(
        "brokers:\n  n: {{ url: \"{url}\" }}\nnodes:\n\
         \x20 a: {{ http: {}, nats: {{ broker: n, {a} }} }}\n\
         \x20 b: {{ http: {}, nats: {{ broker: n, publish: chat.b, subscribe: [\"chat.*\"] }} }}\n\
         \x20 c: {{ http: {}, nats: {{ broker: n, publish: chat.c, subscribe: [chat.a] }} }}\n",
        ports[0], ports[1], ports[2]
    )
}

/// a's reload adds a filter and moves its publish subject, then joins a
/// queue group: each time the server still has a's one connection (same
/// cid, same count), b's stream to a, sent across the first change,
/// arrives whole, in order, once; and the new wiring delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rewires_a_nats_link_on_its_connection() {
    let server = NatsServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let ports: Vec<u16> = (0..3).map(|_| port()).collect();
    let yaml = |a: &str| valid(&three(&server.url(), &ports, a));
    let before = yaml("publish: chat.a, subscribe: [chat.b]");
    let mut running = start(&before).await;
    let (mut a, mut b, mut c) = (
        Client::connect(ports[0]).await,
        Client::connect(ports[1]).await,
        Client::connect(ports[2]).await,
    );
    // Every client also gets its own message back from its node (rule 1).
    a.send("hello").await;
    assert_eq!(a.recv().await, "hello");
    assert_eq!(c.recv().await, "hello");
    assert_eq!(b.recv().await, "hello");
    let connection = connection_of(&server, "a").await;

    let stream = tokio::spawn(async move {
        for i in 0..100 {
            b.send(&format!("stream-{i}")).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        b.send("end").await;
        b
    });
    let moved = yaml("publish: chat.x, subscribe: [chat.b, chat.c]");
    reload(&mut running, &moved).await;
    let mut b = tokio::time::timeout(LIMIT, stream).await.unwrap().unwrap();
    let expected: Vec<String> = (0..100).map(|i| format!("stream-{i}")).collect();
    assert_eq!(
        a.until("end").await,
        expected,
        "a lost or doubled b's stream"
    );
    assert_eq!(connection_of(&server, "a").await, connection);
    // The new filter delivers; the new subject reaches b (chat.*), not c.
    c.send("from-c").await;
    assert_eq!(c.recv().await, "from-c");
    assert_eq!(a.recv().await, "from-c");
    a.send("on-x").await;
    assert_eq!(a.recv().await, "on-x");
    // b also has its own stream back and c's message (chat.*) before.
    let seen = b.until("on-x").await;
    assert_eq!(seen.last().map(String::as_str), Some("from-c"));
    assert!(c.drain(Duration::from_millis(100)).await.is_empty());

    let grouped = yaml("publish: chat.x, subscribe: [chat.b, chat.c], queue: q");
    reload(&mut running, &grouped).await;
    assert_eq!(connection_of(&server, "a").await, connection);
    b.send("after-queue").await;
    assert_eq!(a.recv().await, "after-queue");
    assert!(a.drain(Duration::from_millis(100)).await.is_empty());
    assert_eq!(health(ports[0]).await["links"][0]["state"], "up");
    running.shutdown().await;
}

/// The outbox of the outage test: a's clients send `SENT` while its server
/// is down, the oldest `SENT - OUTBOX` are dropped and counted.
const OUTBOX: usize = 20;
const SENT: usize = 30;

/// Node a's server dies: local delivery goes on, the link reads down, what
/// a's clients send waits in the outbox (the oldest dropped and counted
/// beyond it). The server comes back on its port first for a watcher only
/// (a password a lacks), so that the watcher's subscription is in place
/// before a can reconnect (NATS is at-most-once: nothing would wait for a
/// late subscriber); then it lets everyone in (a reload of its
/// configuration), and a's outbox must reach the watcher, in order, within
/// 2 s of that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_nats_server_is_down_holds_its_messages_until_it_returns() {
    let mut server = NatsServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let http = port();
    let yaml = format!(
        "brokers:\n  n: {{ url: \"{}\" }}\nnodes:\n\
         \x20 a: {{ http: {http}, nats: {{ broker: n, publish: chat.a, subscribe: [chat.b] }}, limits: {{ outbox: {OUTBOX} }} }}\n",
        server.url()
    );
    let running = start(&valid(&yaml)).await;
    let (mut a1, mut a2) = (Client::connect(http).await, Client::connect(http).await);
    server.kill().await;
    wait_until("a's link down", LIMIT, || async {
        match health(http).await["links"][0]["state"].as_str() {
            Some("down") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // Local delivery goes on; what leaves the node waits, the oldest
    // dropped beyond the outbox.
    for i in 0..SENT {
        a1.send(&format!("m{i}")).await;
    }
    for i in 0..SENT {
        assert_eq!(a2.recv().await, format!("m{i}"), "local delivery stopped");
    }
    // The publisher takes them in its own task, maybe after the echo.
    let h = wait_until("the outbox full, the oldest dropped", LIMIT, || async {
        let h = health(http).await;
        let outbox = &h["links"][0]["outbox"];
        if outbox["queued"] == OUTBOX && outbox["dropped"] == SENT - OUTBOX {
            Ok(h)
        } else {
            Err(h)
        }
    })
    .await;
    assert_eq!(h["links"][0]["state"], "down");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nats.conf");
    std::fs::write(&config, "authorization { user: w, password: w }\n").unwrap();
    server.restart(Some(&config)).await.expect("restart");
    let watcher = async_nats::ConnectOptions::with_user_and_password("w".into(), "w".into())
        .connect(server.url())
        .await
        .expect("watcher");
    let mut sub = watcher.subscribe("chat.a").await.expect("subscribe");
    watcher.flush().await.expect("flush");
    assert_eq!(health(http).await["links"][0]["state"], "down");
    std::fs::write(&config, "# everyone may connect\n").unwrap();
    assert!(server.reload(), "SIGHUP to nats-server");
    let back = std::time::Instant::now();
    let mut got = Vec::new();
    while got.len() < OUTBOX {
        let message = tokio::time::timeout(LIMIT, futures_util::StreamExt::next(&mut sub))
            .await
            .expect("the outbox never arrived")
            .expect("subscription ended");
        got.push(String::from_utf8_lossy(&message.payload).into_owned());
    }
    let healed = back.elapsed();
    let expected: Vec<String> = (SENT - OUTBOX..SENT).map(|i| format!("m{i}")).collect();
    assert_eq!(got, expected);
    assert!(healed <= Duration::from_secs(2), "healed after {healed:?}");
    eprintln!("nats outage: outbox of {OUTBOX} delivered {healed:?} after the server let a in");
    let h = health(http).await;
    assert_eq!(h["links"][0]["state"], "up");
    assert_eq!(h["links"][0]["outbox"]["flushed"], OUTBOX, "{h}");
    assert_eq!(h["links"][0]["outbox"]["queued"], 0, "{h}");
    running.shutdown().await;
}

/// The admin page's switches on a NATS link: a cut filter is the node
/// rewired without it (same connection, the other filter still delivers,
/// restored on its button); "broker down" holds the link down (it reads
/// down, what a's clients send waits in the outbox, then goes out in order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_switches_cut_a_nats_filter_and_hold_the_link_down() {
    use topo::runtime::faults::{Fault, FaultCommand, Faults};
    let server = NatsServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let ports: Vec<u16> = (0..3).map(|_| port()).collect();
    let valid = valid(&format!(
        "brokers:\n  n: {{ url: \"{}\" }}\nnodes:\n\
         \x20 a: {{ http: {}, nats: {{ broker: n, publish: chat.a, subscribe: [chat.b, chat.c] }} }}\n\
         \x20 b: {{ http: {}, nats: {{ broker: n, publish: chat.b, subscribe: [chat.a] }} }}\n\
         \x20 c: {{ http: {}, nats: {{ broker: n, publish: chat.c, subscribe: [] }} }}\n",
        server.url(),
        ports[0],
        ports[1],
        ports[2]
    ));
    let mut running = start(&valid).await;
    let (mut a, mut b, mut c) = (
        Client::connect(ports[0]).await,
        Client::connect(ports[1]).await,
        Client::connect(ports[2]).await,
    );
    let connection = connection_of(&server, "a").await;
    let mut faults = Faults::default();
    let mut set = async |running: &mut Running, fault: Fault, on: bool| {
        let command = FaultCommand::Set { fault, on };
        faults
            .apply(running, &valid.topology, 0, command)
            .await
            .expect("switch");
    };
    let cut = Fault::NatsSubCut {
        node: "a".into(),
        filter: "chat.b".into(),
    };
    set(&mut running, cut.clone(), true).await;
    assert_eq!(connection_of(&server, "a").await, connection);
    b.send("cut").await;
    c.send("kept").await;
    assert_eq!(b.recv().await, "cut");
    assert_eq!(c.recv().await, "kept");
    assert_eq!(a.recv().await, "kept");
    assert!(a.drain(Duration::from_millis(150)).await.is_empty());
    set(&mut running, cut, false).await;
    b.send("back").await;
    assert_eq!(b.recv().await, "back");
    assert_eq!(a.recv().await, "back");

    let down = Fault::BrokerDown { node: "a".into() };
    set(&mut running, down.clone(), true).await;
    assert_eq!(health(ports[0]).await["links"][0]["state"], "down");
    for i in 0..3 {
        a.send(&format!("held-{i}")).await;
        assert_eq!(
            a.recv().await,
            format!("held-{i}"),
            "local delivery stopped"
        );
    }
    // The link's publisher holds them in its own task: the clients' echo
    // may come back before it has taken the last one.
    wait_until("three messages held in the outbox", LIMIT, || async {
        match &health(ports[0]).await["links"][0]["outbox"]["queued"] {
            n if *n == 3 => Ok(()),
            n => Err(n.clone()),
        }
    })
    .await;
    assert!(b.drain(Duration::from_millis(150)).await.is_empty());
    set(&mut running, down, false).await;
    for i in 0..3 {
        assert_eq!(b.recv().await, format!("held-{i}"));
    }
    assert_eq!(health(ports[0]).await["links"][0]["state"], "up");
    assert_eq!(connection_of(&server, "a").await, connection);
    running.shutdown().await;
}
