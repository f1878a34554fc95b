//! A Redis outage under traffic, with a real private redis-server killed and
//! restarted on the same port: local delivery never stops, the link reports
//! `down`, the outbox keeps (and overflows) in order, and cross-node delivery
//! resumes within 2 s of the server being back, flushing what was held.

use crate::chat::*;
use crate::util::{RedisServer, wait_until};
use std::time::{Duration, Instant};
use tokio::time::timeout;
use topo::runtime::Running;

/// Polls `/healthz` until the Redis link is in `state`.
async fn redis_state(http: u16, state: &str) -> serde_json::Value {
    wait_until(&format!("redis link {state}"), LIMIT, || async {
        let h = health(http).await;
        if h["links"][0]["state"] == state {
            Ok(h)
        } else {
            Err(h)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_keeps_local_delivery_and_flushes_the_outbox_in_order() {
    let mut redis = RedisServer::start();
    let (a_http, b_http) = (port(), port());
    let mut a_node = with_redis(node("a", Some(a_http)), "chat", &["chat"], &[]);
    a_node.limits.outbox = 10;
    let b_node = with_redis(node("b", Some(b_http)), "chat", &["chat"], &[]);
    let t = topology(vec![a_node, b_node], vec![broker(redis.port)]);
    let running = timeout(LIMIT, Running::start(&t)).await.unwrap().unwrap();
    let mut a = Client::connect(a_http).await;
    let mut b = Client::connect(b_http).await;
    // Traffic before: one message each way.
    a.send("before").await;
    assert_eq!(a.recv().await, "before");
    assert_eq!(b.recv().await, "before");

    redis.kill();
    let h = redis_state(a_http, "down").await;
    assert_eq!(h["links"][0]["outbox"]["queued"], 0);
    // Local delivery never stops: each message reaches a's own client at once.
    for i in 0..12 {
        let text = format!("held-{i}");
        a.send(&text).await;
        let got = a.next_within(Duration::from_millis(500)).await;
        assert!(
            matches!(&got, Some(tokio_tungstenite::tungstenite::Message::Text(t)) if t.as_str() == text),
            "local delivery stalled: {got:?}"
        );
    }
    wait_until("outbox 10/2", LIMIT, || async {
        let outbox = health(a_http).await["links"][0]["outbox"].clone();
        let held = outbox["queued"] == 10 && outbox["dropped"] == 2;
        if held { Ok(()) } else { Err(outbox) }
    })
    .await;

    // Down long enough for the reconnection backoff to reach its cap.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let restarted = Instant::now();
    let _redis = RedisServer::start_on(redis.port);
    // b gets the 10 held messages (the 2 oldest were dropped), in order.
    let first = b.recv().await;
    let resumed = restarted.elapsed();
    assert_eq!(first, "held-2");
    for i in 3..12 {
        assert_eq!(b.recv().await, format!("held-{i}"));
    }
    eprintln!("cross-node delivery resumed {resumed:?} after the restart");
    assert!(
        resumed < Duration::from_secs(2),
        "cross-node delivery resumed after {resumed:?}"
    );
    // The publisher counts a flushed batch once Redis has answered its
    // PUBLISH, which can be a moment after b already got the messages.
    wait_until(
        "outbox settled at 0/2/10",
        Duration::from_secs(5),
        || async {
            let h = redis_state(a_http, "up").await;
            let outbox = &h["links"][0]["outbox"];
            let counts = (&outbox["queued"], &outbox["dropped"], &outbox["flushed"]);
            let settled = counts == (&0.into(), &2.into(), &10.into());
            if settled { Ok(()) } else { Err(h) }
        },
    )
    .await;

    // New traffic both ways; a's client never sees its flushed messages again
    // (the echo filter held across the outage).
    a.send("after").await;
    assert_eq!(b.recv().await, "after");
    b.send("fence").await;
    assert_eq!(a.until("fence").await, ["after"]);
    assert_eq!(b.until("fence").await, Vec::<String>::new());
    running.shutdown().await;
}
