//! The "broker down" fault switch on AMQP links, on the shared RabbitMQ:
//! the switch closes a's session and holds its link down (its clients still
//! hear it, what it sends waits in the outbox), then lets it reconnect and
//! flush in order; b's link never notices. And the admin API takes the
//! switch for an AMQP node as for a Redis or NATS one.

use crate::amqp::{cleanup, file, node, start};
use crate::amqp_live::amqp_link;
use crate::chat::{Client, LIMIT, health, port};
use crate::rabbit;
use crate::util::wait_until;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use topo::runtime::faults::{Fault, FaultCommand, Faults};

const HELD: usize = 5;

async fn amqp_state_is(port: u16, wanted: &str) {
    wait_until(&format!("amqp link {wanted}"), LIMIT, || async {
        match amqp_link(port).await.0 {
            s if s == wanted => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

/// The AMQP link's outbox in `port`'s `/healthz`.
async fn outbox(port: u16) -> serde_json::Value {
    let h = health(port).await;
    let links = h["links"].as_array().cloned().unwrap_or_default();
    let link = links.into_iter().find(|l| l["kind"] == "amqp");
    link.expect("an amqp link")["outbox"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_holds_an_amqp_link_until_let_go_then_flushes_in_order() {
    let exchange = rabbit::unique("fault");
    let queue = rabbit::unique("fault-b");
    let (pa, pb) = (port(), port());
    let x = format!("exchange: {exchange}");
    let yaml = file(&[
        node("a", pa, &x),
        node("b", pb, &format!("{x}, queue: {queue}")),
    ]);
    let (mut running, topology) = start(&yaml).await;
    let (mut a, mut b) = (Client::connect(pa).await, Client::connect(pb).await);
    a.send("before").await;
    assert_eq!(a.recv().await, "before");
    assert_eq!(b.recv().await, "before");

    // b's link state, sampled all through a's fault.
    let stop = Arc::new(AtomicBool::new(false));
    let watch = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut states = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                states.push(amqp_link(pb).await.0);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            states
        })
    };
    let mut faults = Faults::default();
    let down = Fault::BrokerDown { node: "a".into() };
    let mut set = async |fault: &Fault, on: bool| {
        let command = FaultCommand::Set {
            fault: fault.clone(),
            on,
        };
        faults
            .apply(&mut running, &topology, 0, command)
            .await
            .expect("switch")
    };
    assert_eq!(set(&down, true).await, std::slice::from_ref(&down));
    // The switch answers once the session is closed: down at once.
    assert_eq!(amqp_link(pa).await.0, "down");
    for i in 0..HELD {
        a.send(&format!("held-{i}")).await;
        assert_eq!(
            a.recv().await,
            format!("held-{i}"),
            "local delivery stopped"
        );
    }
    wait_until("a's messages in its outbox", LIMIT, || async {
        let o = outbox(pa).await;
        if o["queued"] == HELD { Ok(()) } else { Err(o) }
    })
    .await;
    // Held, not sent: b hears nothing while the switch is on, however long.
    assert_eq!(
        b.drain(Duration::from_millis(300)).await,
        Vec::<String>::new()
    );
    assert_eq!(amqp_link(pa).await.0, "down");

    let let_go = std::time::Instant::now();
    assert_eq!(set(&down, false).await, []);
    for i in 0..HELD {
        assert_eq!(b.recv().await, format!("held-{i}"));
    }
    let flushed = let_go.elapsed();
    eprintln!("amqp broker up: the outbox of {HELD} reached b {flushed:?} after the switch");
    assert!(
        flushed <= Duration::from_secs(2),
        "flushed after {flushed:?}"
    );
    amqp_state_is(pa, "up").await;
    stop.store(true, Ordering::Relaxed);
    let states = tokio::time::timeout(LIMIT, watch).await.unwrap().unwrap();
    assert!(!states.is_empty());
    assert!(states.iter().all(|s| s == "up"), "b's link: {states:?}");
    // Counted once each publication returned, which may be a moment after b got it.
    wait_until("a's outbox flushed", LIMIT, || async {
        let o = outbox(pa).await;
        let flushed = o["queued"] == 0 && o["flushed"] == HELD && o["dropped"] == 0;
        if flushed { Ok(()) } else { Err(o) }
    })
    .await;

    // Both ways again, and nothing held came twice.
    a.send("after").await;
    assert_eq!(b.recv().await, "after");
    b.send("fence").await;
    assert_eq!(a.until("fence").await, ["after"]);
    assert_eq!(b.until("fence").await, Vec::<String>::new());
    running.shutdown().await;
    cleanup(&[&exchange], &[&queue]).await;
}

/// `POST /api/fault` on a `topo up` of AMQP nodes: broker down and up, stop
/// and start are taken (200), the page's view offers the switch (the
/// node's publishing edge), and the link follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_api_takes_broker_down_for_an_amqp_node() {
    use crate::hostile_admin::raw_status;
    let exchange = rabbit::unique("api");
    let queue = rabbit::unique("api-b");
    let (pa, pb) = (port(), port());
    let x = format!("exchange: {exchange}");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("amqp.yaml");
    let yaml = file(&[
        node("a", pa, &x),
        node("b", pb, &format!("{x}, queue: {queue}")),
    ]);
    std::fs::write(&path, yaml).unwrap();
    let up = crate::reload::Up::start(&path, &[]);
    wait_until("an admin server at generation 0", LIMIT, || async {
        match up.generation().await {
            Some(0) => Ok(()),
            _ => Err(up.log()),
        }
    })
    .await;
    let post = |body: &str| {
        format!(
            "POST /api/fault HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            up.admin,
            body.len()
        )
    };
    let (status, view) = crate::chat::http_get(up.admin, "/api/view").await;
    assert_eq!(status, 200);
    // The page shows "Broker down" for a node with a publishing edge.
    assert!(view.contains(r#""id":"apub:a""#), "{view}");
    for (body, check) in [
        (r#"{"action":"broker-down","node":"a"}"#, Some("down")),
        (r#"{"action":"broker-up","node":"a"}"#, Some("up")),
        (r#"{"action":"stop","node":"b"}"#, None),
        (r#"{"action":"start","node":"b"}"#, None),
        (r#"{"action":"broker-down","node":"b"}"#, None),
        (r#"{"action":"restore-all"}"#, None),
    ] {
        assert_eq!(
            raw_status(up.admin, &post(body)).await,
            200,
            "{body}\n{}",
            up.log()
        );
        if let Some(state) = check {
            amqp_state_is(pa, state).await;
        }
    }
    amqp_state_is(pb, "up").await;
    let (_, view) = crate::chat::http_get(up.admin, "/api/view").await;
    assert!(view.contains(r#""faults":[]"#), "{view}");
    // a's and b's, each logged before the switch answered.
    up.wait_log("amqp link held down (fault switch)", 2).await;
    let log = up.log();
    assert_eq!(
        log.matches("amqp link held down (fault switch)").count(),
        2,
        "{log}"
    );
    assert!(!log.contains("guest:guest"), "{log}");
    drop(up);
    cleanup(&[&exchange], &[&queue]).await;
}
