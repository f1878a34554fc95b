//! An AMQP broker outage on a RabbitMQ of the test's own: local delivery
//! goes on, the link turns `down`, what is sent meanwhile waits in the
//! outbox, and the link heals within 2 s of the broker's return.

use crate::chat::*;
use crate::rabbit::PrivateRabbit;
use crate::util::wait_until;
use std::time::{Duration, Instant};
use tokio::time::timeout;

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
    let checked = topo::check::check_bytes("t.yaml", "t", yaml.as_bytes(), &|_| None);
    let valid = checked
        .valid
        .clone()
        .unwrap_or_else(|| panic!("{}", checked.render()));
    let running = timeout(LIMIT, topo::runtime::Running::start(&valid.topology))
        .await
        .expect("start timed out")
        .expect("start failed");
    let (mut a, mut b) = (Client::connect(pa).await, Client::connect(pb).await);
    a.send("before").await;
    assert_eq!(b.recv().await, "before");
    assert_eq!(a.recv().await, "before");

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
