//! Hostile ZeroMQ peers against a running node, with raw TCP: a client of
//! the node's PUB port, and a fake PUB its SUB dials. Each bad stream
//! (oversize frame or message, huge declared length, bad greeting, unknown
//! mechanism, bad flags, truncated frame, wrong socket type, no handshake)
//! must close that one connection, be counted in `/healthz`, and leave
//! every other link delivering.

use crate::chat::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use topo::runtime::Running;

/// A ZMTP 3.1 NULL greeting, byte by byte as RFC 23 draws it.
pub fn greeting_with(mechanism: &[u8]) -> Vec<u8> {
    let mut g = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 1];
    let mut m = mechanism.to_vec();
    m.resize(20, 0);
    g.extend_from_slice(&m);
    g.push(0);
    g.resize(64, 0);
    g
}

pub fn greeting() -> Vec<u8> {
    greeting_with(b"NULL")
}

/// READY with Socket-Type `ty`, as a short command frame.
pub fn ready(ty: &str) -> Vec<u8> {
    let mut body = vec![5];
    body.extend_from_slice(b"READY");
    body.push(11);
    body.extend_from_slice(b"Socket-Type");
    body.extend_from_slice(&(ty.len() as u32).to_be_bytes());
    body.extend_from_slice(ty.as_bytes());
    let mut f = vec![0x04, body.len() as u8];
    f.extend_from_slice(&body);
    f
}

/// The handshake of a peer of type `ty`.
pub fn hello(ty: &str) -> Vec<u8> {
    let mut v = greeting();
    v.extend_from_slice(&ready(ty));
    v
}

/// A data frame, long form when needed.
pub fn frame(more: bool, body: &[u8]) -> Vec<u8> {
    let flags = u8::from(more);
    let mut f = if body.len() > 255 {
        let mut f = vec![flags | 0x02];
        f.extend_from_slice(&(body.len() as u64).to_be_bytes());
        f
    } else {
        vec![flags, body.len() as u8]
    };
    f.extend_from_slice(body);
    f
}

/// Writes `bytes` (ignoring a reset: the node may close mid-stream), then
/// reads until the node closes the connection; panics if it does not
/// within `LIMIT`. Returns what the node sent.
pub async fn send_until_closed(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    let _ = timeout(LIMIT, stream.write_all(bytes)).await;
    read_until_closed(stream).await
}

/// Like [`send_until_closed`], and then ends our side (FIN): a frame cut
/// short is only known to be cut once the stream ends.
async fn send_then_eof(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    let _ = timeout(LIMIT, stream.write_all(bytes)).await;
    let _ = stream.shutdown().await;
    read_until_closed(stream).await
}

/// Everything the peer sends until it closes the connection (within [`LIMIT`]).
pub async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    timeout(LIMIT, read_all)
        .await
        .expect("the peer closes the connection");
    seen
}

/// A zmq link's counter from `/healthz`.
pub async fn link_counter(http: u16, kind: &str, key: &str) -> u64 {
    let (status, body) = http_get(http, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    health["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == kind)
        .and_then(|l| l[key].as_u64())
        .unwrap_or_else(|| panic!("no {kind} {key} in {body}"))
}

/// Node a (PUB, SUB to a fake PUB the test owns) and node b (SUB to a).
pub struct Pair {
    pub running: Running,
    pub a_http: u16,
    pub a_pub: u16,
    pub fake: TcpListener,
    pub clients: Vec<Client>,
}

pub async fn pair() -> Pair {
    let (a_http, a_pub, b_http) = (port(), port(), port());
    let fake = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_port = fake.local_addr().unwrap().port();
    let t = topology(
        vec![
            with_zmq(node("a", Some(a_http)), Some(a_pub), &[fake_port]),
            with_zmq(node("b", Some(b_http)), None, &[a_pub]),
        ],
        vec![],
    );
    let running = timeout(LIMIT, Running::start(&t)).await.unwrap().unwrap();
    let mut clients = vec![Client::connect(a_http).await, Client::connect(b_http).await];
    probe_links(&mut clients, &[(0, 1)]).await;
    Pair {
        running,
        a_http,
        a_pub,
        fake,
        clients,
    }
}

impl Pair {
    /// a's clients still reach b's over ZeroMQ.
    pub async fn still_delivers(&mut self, tag: &str) {
        self.clients[0].send(tag).await;
        self.clients[1].wait_for(tag).await;
    }
}

/// Sends `attack` to a's PUB port: the connection is closed, counted as
/// rejected, and a → b keeps delivering.
async fn attack_pub(attack: Vec<u8>) {
    let mut p = pair().await;
    let mut raw = TcpStream::connect(("127.0.0.1", p.a_pub)).await.unwrap();
    send_then_eof(&mut raw, &attack).await;
    assert_eq!(link_counter(p.a_http, "zmq-pub", "rejected").await, 1);
    p.still_delivers("after the attack").await;
    p.running.shutdown().await;
}

/// Plays `attack` as the PUB a's SUB dialled: the SUB closes, counts it as
/// rejected, dials again, and a → b keeps delivering.
async fn attack_sub(attack: Vec<u8>) {
    let mut p = pair().await;
    let (mut conn, _) = timeout(LIMIT, p.fake.accept()).await.unwrap().unwrap();
    send_then_eof(&mut conn, &attack).await;
    assert_eq!(link_counter(p.a_http, "zmq-sub", "rejected").await, 1);
    // It dials again (after a pause), and keeps delivering meanwhile.
    p.still_delivers("after the attack").await;
    let again = timeout(LIMIT, p.fake.accept()).await;
    assert!(again.is_ok(), "the SUB dials its PUB again");
    p.running.shutdown().await;
}

fn huge_length(ty: &str) -> Vec<u8> {
    let mut v = hello(ty);
    v.push(0x02);
    v.extend_from_slice(&(1u64 << 62).to_be_bytes());
    v
}

fn oversize_frame(ty: &str) -> Vec<u8> {
    // The default limit is 64 KiB plus room for a topic.
    let mut v = hello(ty);
    v.extend_from_slice(&frame(false, &vec![b'x'; 200 * 1024]));
    v
}

fn oversize_multipart(ty: &str) -> Vec<u8> {
    let mut v = hello(ty);
    for _ in 0..5 {
        v.extend_from_slice(&frame(true, &vec![b'x'; 30 * 1024]));
    }
    v.extend_from_slice(&frame(false, b"end"));
    v
}

fn bad_flags(ty: &str) -> Vec<u8> {
    let mut v = hello(ty);
    v.extend_from_slice(&[0x10, 1, b'x']);
    v
}

fn truncated(ty: &str) -> Vec<u8> {
    let mut v = hello(ty);
    v.extend_from_slice(&[0x00, 200, b'c', b'h']);
    v
}

fn garbage_greeting() -> Vec<u8> {
    let mut v = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    v.resize(64, b' ');
    v
}

#[tokio::test]
async fn pub_huge_declared_length_closes_only_that_peer() {
    attack_pub(huge_length("SUB")).await;
}

#[tokio::test]
async fn pub_oversize_frame_closes_only_that_peer() {
    attack_pub(oversize_frame("SUB")).await;
}

#[tokio::test]
async fn pub_oversize_multipart_message_closes_only_that_peer() {
    attack_pub(oversize_multipart("SUB")).await;
}

#[tokio::test]
async fn pub_bad_flags_close_only_that_peer() {
    attack_pub(bad_flags("SUB")).await;
}

#[tokio::test]
async fn pub_truncated_frame_closes_only_that_peer() {
    attack_pub(truncated("SUB")).await;
}

#[tokio::test]
async fn pub_malformed_greeting_closes_only_that_peer() {
    attack_pub(garbage_greeting()).await;
}

#[tokio::test]
async fn pub_unknown_mechanism_closes_only_that_peer() {
    let mut v = greeting_with(b"CURVE");
    v.extend_from_slice(&ready("SUB"));
    attack_pub(v).await;
}

#[tokio::test]
async fn pub_wrong_socket_type_closes_only_that_peer() {
    attack_pub(hello("PUB")).await;
}

#[tokio::test]
async fn pub_drops_a_peer_that_never_completes_the_handshake() {
    let mut p = pair().await;
    let mut raw = TcpStream::connect(("127.0.0.1", p.a_pub)).await.unwrap();
    let started = Instant::now();
    // Half a greeting, then nothing.
    send_until_closed(&mut raw, &greeting()[..20]).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(4), "closed too early: {took:?}");
    assert_eq!(link_counter(p.a_http, "zmq-pub", "rejected").await, 1);
    p.still_delivers("after the silent peer").await;
    p.running.shutdown().await;
}

#[tokio::test]
async fn sub_huge_declared_length_closes_only_that_connection() {
    attack_sub(huge_length("PUB")).await;
}

#[tokio::test]
async fn sub_oversize_frame_closes_only_that_connection() {
    attack_sub(oversize_frame("XPUB")).await;
}

#[tokio::test]
async fn sub_oversize_multipart_message_closes_only_that_connection() {
    attack_sub(oversize_multipart("PUB")).await;
}

#[tokio::test]
async fn sub_bad_flags_close_only_that_connection() {
    attack_sub(bad_flags("PUB")).await;
}

#[tokio::test]
async fn sub_truncated_frame_closes_only_that_connection() {
    attack_sub(truncated("PUB")).await;
}

#[tokio::test]
async fn sub_malformed_greeting_closes_only_that_connection() {
    attack_sub(garbage_greeting()).await;
}

#[tokio::test]
async fn sub_unknown_mechanism_closes_only_that_connection() {
    let mut v = greeting_with(b"PLAIN");
    v.extend_from_slice(&ready("PUB"));
    attack_sub(v).await;
}

#[tokio::test]
async fn sub_wrong_socket_type_closes_only_that_connection() {
    attack_sub(hello("SUB")).await;
}

#[tokio::test]
async fn a_fake_pub_s_messages_reach_the_node_and_a_big_legit_one_is_accepted() {
    let mut p = pair().await;
    let (mut conn, _) = timeout(LIMIT, p.fake.accept()).await.unwrap().unwrap();
    conn.write_all(&hello("PUB")).await.unwrap();
    // The SUB's greeting, READY and subscription come first.
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !seen.windows(5).any(|w| w == b"\x01chat") {
        let n = timeout(LIMIT, conn.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "the SUB closed: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    // A message as large as a WebSocket client may send, plus the topic.
    let big = format!("chat {}", "y".repeat(64 * 1024));
    conn.write_all(&frame(false, big.as_bytes())).await.unwrap();
    conn.write_all(&frame(false, b"chat from the fake"))
        .await
        .unwrap();
    assert_eq!(p.clients[0].recv().await.len(), 64 * 1024);
    p.clients[0].wait_for("from the fake").await;
    assert_eq!(link_counter(p.a_http, "zmq-sub", "rejected").await, 0);
    p.running.shutdown().await;
}

#[tokio::test]
async fn pub_too_many_subscriptions_close_only_that_peer() {
    // Each distinct prefix stays in memory: their number and size are capped.
    let mut v = hello("SUB");
    for i in 0..2000u32 {
        let mut body = vec![1u8];
        body.extend_from_slice(format!("prefix-{i}").as_bytes());
        v.extend_from_slice(&frame(false, &body));
    }
    attack_pub(v).await;
}
