//! Reload latency, debounce included (ignored by default; run with
//! `cargo test --release -- --ignored reload_latency --nocapture`):
//! from the rename of a saved file to (1) an added node answering on its
//! port, (2) a rewired Redis subscription carrying its first message.

use crate::chat::Client;
use crate::reload::{Up, save};
use crate::util::{RedisServer, RespClient, free_port};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const SAVES: usize = 50;

fn file_text(redis: &str, a: u16, b: u16, channel: &str, c: Option<u16>) -> String {
    let mut text = format!(
        "brokers:\n  main: {{ url: \"{redis}\" }}\nnodes:
  a: {{ http: {a} }}
  b: {{ http: {b}, redis: {{ broker: main, publish: out, subscribe: [{channel}] }} }}\n"
    );
    if let Some(c) = c {
        text.push_str(&format!("  c: {{ http: {c} }}\n"));
    }
    text
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!(
        "{label}: n={} p50={:?} p99={:?} max={:?}",
        samples.len(),
        at(0.5),
        at(0.99),
        samples[samples.len() - 1]
    );
}

async fn answers(port: u16) -> bool {
    let Ok(Ok(mut s)) = tokio::time::timeout(
        Duration::from_millis(50),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    else {
        return false;
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if s.write_all(req).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    matches!(tokio::time::timeout(Duration::from_millis(200), s.read_exact(&mut buf)).await, Ok(Ok(_)) if &buf[9..12] == b"200")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: cargo test --release -- --ignored reload_latency --nocapture"]
async fn reload_latency() {
    let redis = RedisServer::start();
    let (a, b, c) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("topo.yaml");
    std::fs::write(&file, file_text(&redis.url(), a, b, "x", None)).unwrap();
    let up = Up::start(&file, &[]);
    up.wait_generation(0).await;
    let mut generation = 0;

    // (1) rename -> the added node answers on its port.
    let mut started = Vec::new();
    for _ in 0..SAVES {
        let t0 = Instant::now();
        save(&file, &file_text(&redis.url(), a, b, "x", Some(c)));
        while !answers(c).await {
            assert!(t0.elapsed() < Duration::from_secs(10), "{}", up.log());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        started.push(t0.elapsed());
        generation += 1;
        up.wait_generation(generation).await;
        save(&file, &file_text(&redis.url(), a, b, "x", None));
        generation += 1;
        up.wait_generation(generation).await;
    }

    // (2) rename -> b's client gets the first message of its new channel.
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (stop, port) = (stop.clone(), redis.port);
        std::thread::spawn(move || {
            let mut resp = RespClient::connect(port);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for ch in ["x", "y"] {
                    resp.send(&[b"PUBLISH", ch.as_bytes(), format!("{ch}-{n}").as_bytes()]);
                    resp.read();
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let mut client = Client::connect(b).await;
    let mut rewired = Vec::new();
    let mut channel = "x";
    for _ in 0..SAVES {
        channel = if channel == "x" { "y" } else { "x" };
        let prefix = format!("{channel}-");
        let t0 = Instant::now();
        save(&file, &file_text(&redis.url(), a, b, channel, None));
        loop {
            match client.next_within(Duration::from_secs(10)).await {
                Some(Message::Text(t)) if t.starts_with(&prefix) => break,
                Some(_) => {}
                None => panic!("no message on {channel}:\n{}", up.log()),
            }
        }
        rewired.push(t0.elapsed());
        generation += 1;
        up.wait_generation(generation).await;
    }
    stop.store(true, Ordering::Relaxed);
    publisher.join().unwrap();
    report("rename -> added node answers", started);
    report("rename -> rewired subscription's first message", rewired);
}
