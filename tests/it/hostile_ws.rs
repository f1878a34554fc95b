//! Chat nodes against hostile clients (issue 11): the same-origin default
//! for WebSockets, close 1009 that reaches a client still sending a huge
//! or fragmented message (20 of 20), invalid `Sec-WebSocket-Key`s, and
//! connections that never finish their request.

use crate::chat::*;
use crate::hostile_admin::raw_status;
use crate::util::wait_until;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use topo::node::close::CloseCode;

#[tokio::test]
async fn without_origins_only_the_nodes_own_origin_may_upgrade() {
    let http = port();
    let running = start_yaml("nodes:\n  a: { http: PORT }\n", http).await;
    assert_eq!(
        upgrade_status(http, &format!("http://127.0.0.1:{http}")).await,
        101
    );
    assert_eq!(upgrade_status(http, "http://evil.example").await, 403);
    assert_eq!(
        upgrade_status(http, &format!("http://evil.example:{http}")).await,
        403
    );
    assert_eq!(upgrade_status(http, "http://127.0.0.1:1").await, 403);
    assert_eq!(upgrade_status(http, "null").await, 403);
    // Not a browser: no Origin, allowed.
    let mut c = Client::connect(http).await;
    c.send("no origin").await;
    assert_eq!(c.recv().await, "no origin");
    running.shutdown().await;

    let http = port();
    let running = start_yaml("origins: [\"*\"]\nnodes:\n  a: { http: PORT }\n", http).await;
    assert_eq!(upgrade_status(http, "http://evil.example").await, 101);
    running.shutdown().await;
}

/// A masked client frame header announcing `len` bytes.
pub fn frame_header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut h = vec![if fin { 0x80 } else { 0 } | opcode];
    match len {
        0..=125 => h.push(0x80 | len as u8),
        126..=65535 => {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            h.push(0x80 | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
    }
    h.extend_from_slice(&[1, 2, 3, 4]); // the mask
    h
}

/// A raw WebSocket handshake on `/ws`; the stream after the 101 answer.
pub async fn raw_ws(http: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", http)).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{http}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        timeout(LIMIT, s.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// Sends all of `frames` (header, payload length), then reads, as a
/// client that writes a whole message before it reads does: the close
/// code the server sent, or `None` if the connection was reset first.
async fn close_code_after_sending(http: u16, frames: &[(Vec<u8>, usize)]) -> Option<u16> {
    let mut stream = raw_ws(http).await;
    let chunk = vec![b'x'; 64 * 1024];
    let send = async {
        for (header, len) in frames {
            stream.write_all(header).await?;
            let mut left = *len;
            while left > 0 {
                let n = left.min(chunk.len());
                stream.write_all(&chunk[..n]).await?;
                left -= n;
            }
        }
        Ok::<_, std::io::Error>(())
    };
    // A server that stopped reading and reset the connection fails the
    // write; a client such as Node's `ws` then reports 1006 at once,
    // without reading the close frame that may sit in its buffer.
    let sent = timeout(Duration::from_secs(20), send)
        .await
        .expect("the message could not be sent within 20 s");
    if let Err(e) = sent {
        eprintln!("write failed: {e}");
        return None;
    }
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 256];
        loop {
            // Server frames are unmasked; a close frame is 0x88 LEN CODE.
            if buf.len() >= 4 && buf[0] == 0x88 {
                return Some(u16::from_be_bytes([buf[2], buf[3]]));
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let code = timeout(LIMIT, read).await.expect("no close within 10 s");
    // The client's half of the closing handshake.
    let _ = stream.write_all(&frame_header(true, 8, 0)).await;
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_too_big_message_gets_1009_twenty_times_out_of_twenty() {
    let http = port();
    // The default limit (64 KiB).
    let running = start_yaml("nodes:\n  a: { http: PORT }\n", http).await;
    let whole = |len: usize| vec![(frame_header(true, 1, len as u64), len)];
    let fragmented = || {
        let mut frames = vec![(frame_header(false, 1, 16_384), 16_384)];
        for i in 1..13 {
            frames.push((frame_header(i == 12, 0, 16_384), 16_384));
        }
        frames
    };
    let started = Instant::now();
    for (what, frames) in [
        ("1 MiB", whole(1 << 20)),
        ("16 MiB", whole(16 << 20)),
        ("200 kB in 16 KiB fragments", fragmented()),
    ] {
        for attempt in 0..20 {
            let code = close_code_after_sending(http, &frames).await;
            assert_eq!(
                code,
                Some(u16::from(CloseCode::TooBig)),
                "{what}, attempt {attempt}"
            );
        }
    }
    eprintln!("60 oversize messages refused in {:?}", started.elapsed());
    // The others are not disturbed.
    let mut a = Client::connect(http).await;
    a.send("still here").await;
    assert_eq!(a.recv().await, "still here");
    running.shutdown().await;
}

#[tokio::test]
async fn an_invalid_websocket_key_is_answered_400() {
    let http = port();
    let running = start_yaml("nodes:\n  a: { http: PORT }\n", http).await;
    let long = "A".repeat(4096);
    for (what, key) in [
        ("empty", ""),
        ("not base64", "!!!!not-base64-at-all!=="),
        ("15 bytes", "AAAAAAAAAAAAAAAAAAAA"),
        ("17 bytes", "AAAAAAAAAAAAAAAAAAAAAAA="),
        ("4 KB", long.as_str()),
    ] {
        for path in ["/ws", "/"] {
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{http}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nConnection: close\r\n\r\n"
            );
            assert_eq!(raw_status(http, &request).await, 400, "{what} on {path}");
        }
    }
    // A valid key still upgrades (raw_ws asserts the 101).
    drop(raw_ws(http).await);
    running.shutdown().await;
}

/// How long after connecting the server closed `stream` (reading whatever
/// it answers), while `trickle` sends one header line every 500 ms.
pub async fn closed_after(mut stream: TcpStream, trickle: bool) -> Duration {
    let started = Instant::now();
    if trickle {
        stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    }
    let mut buf = [0u8; 1024];
    let mut line = 0;
    loop {
        let tick = tokio::time::sleep(Duration::from_millis(500));
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            },
            _ = tick => {
                assert!(started.elapsed() < Duration::from_secs(30), "never closed");
                if trickle {
                    line += 1;
                    let header = format!("X-Slow-{line}: 1\r\n");
                    if stream.write_all(header.as_bytes()).await.is_err() {
                        return started.elapsed();
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_trickling_connections_are_closed_and_capped() {
    let http = port();
    let running = start_yaml("nodes:\n  a: { http: PORT }\n", http).await;
    let limit = topo::serve::HEADER_TIMEOUT + Duration::from_secs(2);
    let connect = || TcpStream::connect(("127.0.0.1", http));
    let idle = tokio::spawn(closed_after(connect().await.unwrap(), false));
    let slow = tokio::spawn(closed_after(connect().await.unwrap(), true));

    // A hundred idle connections (under the cap): a real client is served.
    let mut parked = Vec::new();
    for _ in 0..100 {
        parked.push(connect().await.unwrap());
    }
    let mut a = Client::connect(http).await;
    let mut b = Client::connect(http).await;
    a.send("served").await;
    assert_eq!(b.recv().await, "served");
    // WebSockets do not count: the rest of the cap is still there.
    for _ in parked.len()..topo::serve::MAX_PENDING - 2 {
        parked.push(connect().await.unwrap());
    }
    // Over the cap: closed at once, without an answer.
    let mut over = connect().await.unwrap();
    let mut buf = [0u8; 16];
    let n = timeout(Duration::from_secs(2), over.read(&mut buf))
        .await
        .expect("a connection over the cap is closed at once");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");

    let idle = idle.await.unwrap();
    let slow = slow.await.unwrap();
    assert!(idle < limit, "idle connection open for {idle:?}");
    assert!(slow < limit, "trickling connection open for {slow:?}");
    assert!(idle >= topo::serve::HEADER_TIMEOUT - Duration::from_millis(500));
    // Once the idle ones are gone, new connections are served again.
    drop(parked);
    wait_until("/healthz served again", LIMIT, || async {
        match timeout(LIMIT, http_get(http, "/healthz")).await.unwrap() {
            (200, _) => Ok(()),
            other => Err(other),
        }
    })
    .await;
    a.send("still served").await;
    assert_eq!(b.recv().await, "still served");
    running.shutdown().await;
}
