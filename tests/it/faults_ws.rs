//! WebSocket clients that misbehave, against a real node: every limit of
//! `limits:`/`origins:` hit by a real client, the close code or HTTP status
//! asserted, and the node still serving its other clients afterwards.

use crate::chat::*;
use crate::util::wait_until;
use std::time::{Duration, Instant};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use topo::node::close::CloseCode;

/// The node still delivers between two fresh clients.
async fn still_serving(http: u16) {
    let mut a = Client::connect(http).await;
    let mut b = Client::connect(http).await;
    a.send("still here").await;
    assert_eq!(a.recv().await, "still here");
    assert_eq!(b.recv().await, "still here");
}

async fn clients(http: u16) -> u64 {
    let (_, body) = http_get(http, "/healthz").await;
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    health["clients"].as_u64().unwrap()
}

async fn wait_clients(http: u16, n: u64) {
    wait_until(&format!("{n} clients"), LIMIT, || async {
        let now = clients(http).await;
        if now == n { Ok(()) } else { Err(now) }
    })
    .await
}

#[tokio::test]
async fn a_message_over_the_limit_closes_with_1009() {
    let http = port();
    let yaml = "limits: { max_message_bytes: 1024 }\nnodes:\n  a: { http: PORT }\n";
    let running = start_yaml(yaml, http).await;
    let mut other = Client::connect(http).await;
    let mut big = Client::connect(http).await;
    big.send(&"y".repeat(1024)).await; // at the limit: fine
    assert_eq!(big.recv().await.len(), 1024);
    big.send(&"x".repeat(100_000)).await;
    let frame = big.close_frame().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), u16::from(CloseCode::TooBig));
    other.send("after").await;
    // The other client got the 1 KiB message, never the big one.
    assert_eq!(other.recv().await.len(), 1024);
    assert_eq!(other.recv().await, "after");
    still_serving(http).await;
    running.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007_and_binary_with_1003() {
    let http = port();
    let running = start_yaml("nodes:\n  a: { http: PORT }\n", http).await;
    let mut bad = Client::connect(http).await;
    let frame = Frame::message(vec![b'h', 0xff, 0xfe], OpCode::Data(Data::Text), true);
    bad.send_message(Message::Frame(frame)).await;
    let frame = bad.close_frame().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), u16::from(CloseCode::InvalidData));
    let mut binary = Client::connect(http).await;
    binary.send_binary().await;
    assert_eq!(
        u16::from(binary.close_frame().await.unwrap().code),
        u16::from(CloseCode::Unsupported)
    );
    still_serving(http).await;
    running.shutdown().await;
}

#[tokio::test]
async fn beyond_max_connections_the_upgrade_gets_503() {
    let http = port();
    let yaml = "nodes:\n  a:\n    http: PORT\n    limits: { max_connections: 2 }\n";
    let running = start_yaml(yaml, http).await;
    let first = Client::connect(http).await;
    let _second = Client::connect(http).await;
    let url = format!("ws://127.0.0.1:{http}/ws");
    match timeout(LIMIT, tokio_tungstenite::connect_async(url))
        .await
        .unwrap()
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    // The page and /healthz are not WebSocket connections: still served.
    assert_eq!(http_get(http, "/healthz").await.0, 200);
    drop(first);
    wait_clients(http, 1).await;
    // A slot is free again.
    let mut third = Client::connect(http).await;
    third.send("third").await;
    assert_eq!(third.recv().await, "third");
    running.shutdown().await;
}

#[tokio::test]
async fn only_listed_origins_may_upgrade() {
    let http = port();
    let yaml = "origins: [\"http://good.example\"]\nnodes:\n  a: { http: PORT }\n";
    let running = start_yaml(yaml, http).await;
    assert_eq!(upgrade_status(http, "http://evil.example").await, 403);
    assert_eq!(upgrade_status(http, "http://good.example").await, 101);
    // Without an Origin header (not a browser): allowed.
    still_serving(http).await;
    running.shutdown().await;
}

#[tokio::test]
async fn keepalive_drops_a_peer_that_never_answers_pings() {
    let http = port();
    let yaml =
        "limits: { ping_interval: 100ms, idle_timeout: 400ms }\nnodes:\n  a: { http: PORT }\n";
    let running = start_yaml(yaml, http).await;
    // Never polled again: it cannot answer pings, like a dead peer.
    let _dead = Client::connect(http).await;
    let mut alive = Client::connect(http).await;
    wait_clients(http, 2).await;
    // Reading answers pings (tungstenite replies with pongs by itself).
    let began = Instant::now();
    while began.elapsed() < Duration::from_millis(1200) {
        alive.drain(Duration::from_millis(50)).await;
    }
    wait_clients(http, 1).await;
    alive.send("alive").await;
    assert_eq!(alive.recv().await, "alive");
    running.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_are_404() {
    let http = port();
    let running = start_yaml("nodes:\n  a: { http: PORT }\n", http).await;
    for path in [
        "/nope",
        "/ws/x",
        "/healthz/",
        "/../etc/passwd",
        "/index.html",
    ] {
        assert_eq!(http_get(http, path).await.0, 404, "{path}");
    }
    let post = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", http))
            .await
            .unwrap();
        s.write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let response = timeout(LIMIT, post).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    still_serving(http).await;
    running.shutdown().await;
}

/// Time for a message from `a` to reach `a` and `b`.
async fn round_trip(a: &mut Client, b: &mut Client, tag: &str) -> Duration {
    let began = Instant::now();
    a.send(tag).await;
    a.wait_for(tag).await;
    b.wait_for(tag).await;
    began.elapsed()
}

async fn worst_round_trip(a: &mut Client, b: &mut Client, round: &str) -> Duration {
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        worst = worst.max(round_trip(a, b, &format!("{round}{i}")).await);
    }
    worst
}

/// `n` messages of 16 KiB from `a`, read by `a` and `b` as they go.
async fn flood(a: &mut Client, b: &mut Client, n: usize, round: &str) {
    let big = "z".repeat(16 * 1024);
    for chunk in 0..n / 25 {
        for _ in 0..25 {
            a.send(&big).await;
        }
        let fence = format!("{round}-fence{chunk}");
        a.send(&fence).await;
        a.wait_for(&fence).await;
        b.wait_for(&fence).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_dropped_and_the_others_latency_does_not_change() {
    let http = port();
    let yaml = "nodes:\n  a:\n    http: PORT\n    limits: { send_queue: 512 }\n";
    let running = start_yaml(yaml, http).await;
    let mut a = Client::connect(http).await;
    let mut b = Client::connect(http).await;
    let baseline = worst_round_trip(&mut a, &mut b, "calm").await;

    // Connected, never reads: its socket buffers fill, then its backlog.
    let _stalled = Client::connect(http).await;
    wait_clients(http, 3).await;
    // 300 x 16 KiB: under the stalled client's 512-message backlog.
    flood(&mut a, &mut b, 300, "one").await;
    assert_eq!(clients(http).await, 3, "dropped before its queue was full");
    let stalled = worst_round_trip(&mut a, &mut b, "busy").await;
    // Generous for a loaded 2-core machine; a blocked fan-out would take seconds.
    assert!(
        stalled < baseline + Duration::from_millis(250),
        "worst round trip {stalled:?} with a stalled client, {baseline:?} without"
    );

    // Past its backlog (and whatever the sockets hold): it is disconnected.
    let pair = tokio::sync::Mutex::new((a, b, 0));
    wait_until("the stalled client dropped", LIMIT, || async {
        match clients(http).await {
            3 => {
                let (a, b, round) = &mut *pair.lock().await;
                flood(a, b, 250, &format!("more{round}")).await;
                *round += 1;
                Err(3)
            }
            n => Ok(n),
        }
    })
    .await;
    let (mut a, mut b, round) = pair.into_inner();
    assert_eq!(clients(http).await, 2);
    let after = worst_round_trip(&mut a, &mut b, "after").await;
    eprintln!("baseline {baseline:?} stalled {stalled:?} after {after:?} rounds {round}");
    assert!(after < baseline + Duration::from_millis(250), "{after:?}");
    running.shutdown().await;
}
