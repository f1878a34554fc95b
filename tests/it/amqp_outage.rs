//! An AMQP broker outage on a RabbitMQ of the test's own: local delivery
//! goes on, the link turns `down`, what is sent meanwhile waits in the
//! outbox, and the link heals within 2 s of the broker's return.

use crate::chat::*;
use crate::rabbit::PrivateRabbit;
use crate::util::wait_until;
use std::time::{Duration, Instant};

async fn amqp_state(port: u16) -> String {
    let h = health(port).await;
    let links = h["links"].as_array().cloned().unwrap_or_default();
    let link = links.iter().find(|l| l["kind"] == "amqp").cloned();
    link.map_or("none".into(), |l| {
        l["state"].as_str().unwrap_or("").to_owned()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amqp_outage_holds_messages_and_heals_within_two_seconds() {
    let mut rabbit = PrivateRabbit::start();
    rabbit.wait_ready().await;
    let (pa, pb) = (port(), port());
    // b's queue is durable, so it is there for a's outbox whichever node reconnects first.
    let yaml = format!(
        "brokers:\n  r: {{ url: \"{}\" }}\nnodes:\n  a: {{ http: {pa}, amqp: {{ broker: r, exchange: x }} }}\n  b: {{ http: {pb}, amqp: {{ broker: r, exchange: x, queue: qb }} }}\n",
        rabbit.url()
    );
    let (running, _) = crate::amqp::start(&yaml).await;
    let (mut a, mut b) = (Client::connect(pa).await, Client::connect(pb).await);
    a.send("before").await;
    assert_eq!(b.recv().await, "before");
    assert_eq!(a.recv().await, "before");
    // Confirmed, so not published again after the outage (at-least-once:
    // an unconfirmed one would be).
    wait_until("before confirmed", LIMIT, || async {
        match amqp_link(pa).await["sent"].as_u64() {
            Some(1) => Ok(()),
            other => Err(other),
        }
    })
    .await;

    rabbit.kill();
    wait_until("a's amqp link down", LIMIT, || async {
        match amqp_state(pa).await.as_str() {
            "down" => Ok(()),
            other => Err(other.to_owned()),
        }
    })
    .await;
    for i in 0..3 {
        a.send(&format!("during {i}")).await;
        // Local delivery does not wait for the broker.
        assert_eq!(a.recv().await, format!("during {i}"));
    }
    wait_until("three messages in a's outbox", LIMIT, || async {
        let h = health(pa).await;
        let links = h["links"].as_array().cloned().unwrap_or_default();
        let link = links.into_iter().find(|l| l["kind"] == "amqp");
        match link {
            Some(l) if l["outbox"]["queued"] == 3 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    rabbit.restart();
    rabbit.wait_ready().await;
    let back = Instant::now();
    // Not "before" again, though RabbitMQ may bring it back (b's
    // acknowledgement not yet on its disk at the kill): b knows it had it.
    for i in 0..3 {
        assert_eq!(b.recv().await, format!("during {i}"));
    }
    let healed = back.elapsed();
    assert!(
        healed <= Duration::from_secs(2),
        "healed {healed:?} after the broker's return"
    );
    a.send("after").await;
    assert_eq!(b.recv().await, "after");
    running.shutdown().await;
}

/// a's AMQP link as `/healthz` shows it.
async fn amqp_link(port: u16) -> serde_json::Value {
    let h = health(port).await;
    let links = h["links"].as_array().cloned().unwrap_or_default();
    links
        .into_iter()
        .find(|l| l["kind"] == "amqp")
        .unwrap_or_default()
}

/// Publisher confirms: a burst from a's client while the broker is killed
/// (kill -9) mid-way. What RabbitMQ had not confirmed goes out again once
/// it is back, so durable b's first client gets every message, in order;
/// those RabbitMQ had taken without confirming come to b twice, and b
/// drops the repeats (README "AMQP").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_across_a_broker_kill_loses_nothing() {
    const N: usize = 3000;
    const BATCH: usize = 250;
    let mut rabbit = PrivateRabbit::start();
    rabbit.wait_ready().await;
    let (pa, pb) = (port(), port());
    let yaml = format!(
        "brokers:\n  r: {{ url: \"{}\" }}\nnodes:\n  a: {{ http: {pa}, limits: {{ outbox: 10000 }}, amqp: {{ broker: r, exchange: x }} }}\n  b: {{ http: {pb}, amqp: {{ broker: r, exchange: x, queue: qb }} }}\n",
        rabbit.url()
    );
    let (running, _) = crate::amqp::start(&yaml).await;
    let mut a = Client::connect(pa).await;
    let mut at_kill = None;
    for batch in (0..N).collect::<Vec<_>>().chunks(BATCH) {
        for i in batch {
            a.send(&format!("m{i}")).await;
        }
        // a's own copies: local delivery, and a client that keeps up.
        for i in batch {
            assert_eq!(a.recv().await, format!("m{i}"));
        }
        // The kill once some are published and not yet confirmed: watched
        // while a publishes this batch (bounded: until it caught up).
        let so_far = batch[BATCH - 1] as u64 + 1;
        for _ in 0..1000 {
            if at_kill.is_some() {
                break;
            }
            let link = amqp_link(pa).await;
            let in_flight = link["unconfirmed"].as_u64().unwrap_or(0);
            if in_flight > 0 {
                at_kill = Some((so_far, link["sent"].as_u64(), in_flight));
                rabbit.kill();
            } else if link["sent"].as_u64() >= Some(so_far) {
                break;
            }
        }
    }
    let (sent, confirmed, in_flight) = at_kill.expect("never a message in flight to kill");
    wait_until("a's amqp link down", LIMIT, || async {
        match amqp_link(pa).await["state"].as_str() {
            Some("down") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let held = amqp_link(pa).await["outbox"]["queued"].as_u64();
    eprintln!(
        "at the kill: {confirmed:?} confirmed, {in_flight} unconfirmed of {sent} sent by the client; \
         once down, {held:?} wait in the outbox"
    );
    rabbit.restart();
    rabbit.wait_ready().await;
    let back = Instant::now();
    wait_until("a's outbox published and confirmed", LIMIT, || async {
        let link = amqp_link(pa).await;
        let settled =
            link["state"] == "up" && link["outbox"]["queued"] == 0 && link["unconfirmed"] == 0;
        if settled { Ok(()) } else { Err(link) }
    })
    .await;
    eprintln!(
        "outbox published and confirmed {:?} after the broker's return",
        back.elapsed()
    );
    let mut b = Client::connect(pb).await;
    for i in 0..N {
        assert_eq!(
            b.recv().await,
            format!("m{i}"),
            "every message, in order, once"
        );
    }
    assert_eq!(
        b.drain(Duration::from_millis(300)).await,
        Vec::<String>::new(),
        "no repeats"
    );
    let repeated = health(pb).await["links"][0]["repeated"].as_u64();
    eprintln!("repeats dropped by b: {repeated:?}");
    assert_eq!(
        amqp_link(pa).await["sent"].as_u64(),
        Some(N as u64),
        "sent counts each message once, when confirmed"
    );
    running.shutdown().await;
}
