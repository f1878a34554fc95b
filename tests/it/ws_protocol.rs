//! The node's own WebSocket codec against raw clients on real sockets:
//! framing errors close with 1002, pings are answered with their payload,
//! fragments are joined, a close is echoed, frames sent with the
//! handshake are read, and a frame never finished does not keep a
//! connection alive.

use crate::chat::*;
use crate::hostile_ws::{frame_header, raw_ws};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use topo::node::close::CloseCode;

/// A masked client frame (mask 1, 2, 3, 4) carrying `payload`.
fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = frame_header(fin, opcode, payload.len() as u64);
    let mask = [1, 2, 3, 4];
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// The next server frame: its first byte (FIN and opcode) and payload.
/// Server frames are unmasked.
async fn next_frame(s: &mut (impl AsyncRead + Unpin)) -> Option<(u8, Vec<u8>)> {
    let read = async {
        let mut head = [0u8; 2];
        s.read_exact(&mut head).await.ok()?;
        assert_eq!(head[1] & 0x80, 0, "a server frame must not be masked");
        let len = match head[1] & 0x7F {
            126 => u64::from(s.read_u16().await.ok()?),
            127 => s.read_u64().await.ok()?,
            n => u64::from(n),
        };
        assert!(len <= 1 << 20, "frame of {len} bytes");
        let mut payload = vec![0; len as usize];
        s.read_exact(&mut payload).await.ok()?;
        Some((head[0], payload))
    };
    timeout(LIMIT, read)
        .await
        .expect("no frame within the limit")
}

/// The code of the next close frame, skipping pings; `None` if the
/// connection ended without one.
async fn close_code(s: &mut (impl AsyncRead + Unpin)) -> Option<u16> {
    loop {
        let (first, payload) = next_frame(s).await?;
        match first {
            0x89 => continue,
            0x88 => return Some(u16::from_be_bytes([payload[0], payload[1]])),
            other => panic!("expected a close frame, got {other:#x} {payload:?}"),
        }
    }
}

#[tokio::test]
async fn framing_errors_close_with_1002_and_the_others_carry_on() {
    let http = port();
    let running = start_yaml("nodes:\n  a: { http: PORT }\n", http).await;
    let mut top_bit = frame_header(true, 1, 0);
    top_bit[1] = 0x80 | 127;
    top_bit.splice(2..2, (1u64 << 63 | 5).to_be_bytes());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked", vec![0x81, 0x02, b'h', b'i']),
        ("RSV1 set", {
            let mut f = masked(true, 1, b"hi");
            f[0] |= 0x40;
            f
        }),
        ("opcode 3", masked(true, 3, b"hi")),
        ("opcode 0xB", masked(true, 0xB, b"hi")),
        ("ping of 126 bytes", masked(true, 9, &[b'p'; 126])),
        ("fragmented ping", masked(false, 9, b"p")),
        ("continuation first", masked(true, 0, b"hi")),
        ("64-bit length, top bit set", top_bit),
    ];
    for (what, bytes) in cases {
        let mut s = raw_ws(http).await;
        s.write_all(&bytes).await.unwrap();
        assert_eq!(
            close_code(&mut s).await,
            Some(u16::from(CloseCode::Protocol)),
            "{what}"
        );
    }
    let mut a = Client::connect(http).await;
    a.send("still here").await;
    assert_eq!(a.recv().await, "still here");
    running.shutdown().await;
}

#[tokio::test]
async fn pings_are_answered_fragments_joined_and_a_close_echoed() {
    let http = port();
    let running = start_yaml("nodes:\n  a: { http: PORT }\n", http).await;
    let mut other = Client::connect(http).await;
    let mut s = raw_ws(http).await;
    s.write_all(&masked(true, 9, b"are you there"))
        .await
        .unwrap();
    assert_eq!(
        next_frame(&mut s).await,
        Some((0x8A, b"are you there".to_vec()))
    );
    // A message in three fragments, a ping between them, the pieces cut
    // inside a character and sent in two writes.
    let text = "fragments joined: é€😀";
    let b = text.as_bytes();
    let mut bytes = masked(false, 1, &b[..20]);
    bytes.extend(masked(true, 9, b"mid"));
    bytes.extend(masked(false, 0, &b[20..22]));
    bytes.extend(masked(true, 0, &b[22..]));
    let (first, second) = bytes.split_at(bytes.len() / 2 + 3);
    s.write_all(first).await.unwrap();
    s.flush().await.unwrap();
    tokio::task::yield_now().await;
    s.write_all(second).await.unwrap();
    assert_eq!(next_frame(&mut s).await, Some((0x8A, b"mid".to_vec())));
    assert_eq!(next_frame(&mut s).await, Some((0x81, b.to_vec())));
    assert_eq!(other.recv().await, text);
    // The client closes with 4000: the node answers with the same code
    // and closes the connection.
    let mut bye = 4000u16.to_be_bytes().to_vec();
    bye.extend_from_slice(b"done");
    s.write_all(&masked(true, 8, &bye)).await.unwrap();
    assert_eq!(close_code(&mut s).await, Some(4000));
    assert_eq!(next_frame(&mut s).await, None, "closed after the echo");
    running.shutdown().await;
}

#[tokio::test]
async fn frames_sent_with_the_handshake_are_read() {
    let http = port();
    let running = start_yaml("nodes:\n  a: { http: PORT }\n", http).await;
    let mut other = Client::connect(http).await;
    let mut s = TcpStream::connect(("127.0.0.1", http)).await.unwrap();
    let mut bytes = format!(
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{http}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .into_bytes();
    bytes.extend(masked(true, 1, b"with the handshake"));
    s.write_all(&bytes).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(timeout(LIMIT, s.read_u8()).await.unwrap().unwrap());
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // RFC 6455 §1.3's example key and its answer.
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    assert_eq!(other.recv().await, "with the handshake");
    running.shutdown().await;
}

#[tokio::test]
async fn a_frame_never_finished_does_not_keep_a_client_alive() {
    let http = port();
    let yaml =
        "limits: { ping_interval: 100ms, idle_timeout: 400ms }\nnodes:\n  a: { http: PORT }\n";
    let running = start_yaml(yaml, http).await;
    let (mut reader, mut writer) = raw_ws(http).await.into_split();
    // A 1,000-byte frame, one byte every 20 ms (it would take 20 s).
    let frame = masked(true, 1, &[b'x'; 1000]);
    writer.write_all(&frame[..8]).await.unwrap();
    let trickle = tokio::spawn(async move {
        for byte in &frame[8..] {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
        }
        panic!("the whole frame was sent before the node dropped the client");
    });
    let started = std::time::Instant::now();
    assert_eq!(
        close_code(&mut reader).await,
        Some(u16::from(CloseCode::Policy))
    );
    // The idle timeout (400 ms), not the end of the frame (20 s).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    trickle.abort();
    running.shutdown().await;
}
