// The same measurement as the zmtp_throughput test (tests/it/zmtp.rs), on the
// zeromq 0.7 crate: one PUB, one SUB, 100-byte messages, 20,000 in flight.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    const N: u64 = 2_000_000;
    const WINDOW: u64 = 20_000;
    let mut publisher = zeromq::PubSocket::new();
    let ep = publisher.bind("tcp://127.0.0.1:0").await.unwrap();
    let mut sub = zeromq::SubSocket::new();
    sub.subscribe("t").await.unwrap();
    sub.connect(&ep.to_string()).await.unwrap();
    let got = Arc::new(AtomicU64::new(0));
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let _m = sub.recv().await.unwrap();
            g.fetch_add(1, Ordering::Relaxed);
        }
    });
    while got.load(Ordering::Relaxed) == 0 {
        publisher.send(ZmqMessage::from("t warm-up")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let base = got.load(Ordering::Relaxed);
    let body = bytes::Bytes::from(vec![b't'; 100]);
    let started = Instant::now();
    let mut sent = 0;
    while sent < N {
        for _ in 0..1000 {
            publisher.send(ZmqMessage::from(body.clone())).await.unwrap();
        }
        sent += 1000;
        while got.load(Ordering::Relaxed) - base + WINDOW < sent {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.load(Ordering::Relaxed) - base < N && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    let n = got.load(Ordering::Relaxed) - base;
    println!("zeromq 0.7: {n} of {N} messages of 100 B in {took:?}: {:.2} M msg/s", n as f64 / took.as_secs_f64() / 1e6);
}
