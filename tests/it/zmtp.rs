//! topo's ZMTP sockets on their own, with short timers: the per-subscriber
//! high-water mark (a subscriber that stops reading loses only its own
//! messages and costs bounded memory), heartbeats both ways, and the
//! handshake deadline. Peers are raw TCP clients speaking the bytes.

use crate::chat::LIMIT;
use crate::hostile_zmq::{frame, hello, read_until_closed, send_until_closed};
use crate::util::wait_until;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use topo::transport::zmtp::{
    Options, Stats, Subscriber, SubscriberEvents, ZmtpError, ZmtpPublisher,
};

fn quick() -> Options {
    Options {
        max_message: 4096,
        hwm: 100,
        handshake_timeout: Duration::from_millis(300),
        heartbeat_interval: Duration::from_millis(100),
        heartbeat_timeout: Duration::from_millis(400),
    }
}

/// A PUB serving on a fresh port; the token stops it.
async fn serve(options: Options) -> (ZmtpPublisher, Arc<Stats>, u16, CancellationToken) {
    let stats = Arc::new(Stats::default());
    let publisher = ZmtpPublisher::new(options, stats.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cancel = CancellationToken::new();
    tokio::spawn(publisher.clone().serve(listener, cancel.clone()));
    (publisher, stats, port, cancel)
}

/// A raw SUB: handshake, subscribe to "t", wait until the PUB counts it.
async fn raw_sub(stream: TcpStream, publisher: &ZmtpPublisher, before: usize) -> TcpStream {
    let mut stream = stream;
    stream.write_all(&hello("SUB")).await.unwrap();
    stream.write_all(&frame(false, b"\x01t")).await.unwrap();
    // The PUB's greeting and READY.
    let mut head = [0u8; 64 + 27];
    timeout(LIMIT, stream.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    wait_until("the PUB counts the SUB", LIMIT, || async {
        match publisher.peers() {
            n if n > before => Ok(()),
            n => Err(n),
        }
    })
    .await;
    stream
}

async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).await.unwrap()
}

/// Reads frames of `size`-byte bodies, short or long form, counting them
/// until `n` arrived; PINGs (command frames) are skipped.
async fn read_messages(stream: &mut TcpStream, n: usize) -> usize {
    let mut got = 0;
    while got < n {
        let mut flags = [0u8; 1];
        stream.read_exact(&mut flags).await.unwrap();
        let len = if flags[0] & 0x02 != 0 {
            let mut l = [0u8; 8];
            stream.read_exact(&mut l).await.unwrap();
            u64::from_be_bytes(l) as usize
        } else {
            let mut l = [0u8; 1];
            stream.read_exact(&mut l).await.unwrap();
            l[0] as usize
        };
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await.unwrap();
        if flags[0] & 0x04 == 0 {
            got += 1;
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_loses_only_its_own_messages() {
    const N: usize = 20_000;
    const SIZE: usize = 1000;
    const BATCH: usize = 100;
    let options = Options {
        hwm: 200,
        heartbeat_timeout: Duration::from_secs(60),
        heartbeat_interval: Duration::from_secs(30),
        ..Options::default()
    };
    let (publisher, stats, port, cancel) = serve(options).await;
    // The stalled one has a small receive buffer, so the kernel holds little.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stalled = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let stalled = raw_sub(stalled, &publisher, 0).await;
    let mut fast = Vec::new();
    for i in 0..2 {
        fast.push(raw_sub(connect(port).await, &publisher, 1 + i).await);
    }
    let (done_tx, mut done_rx) = mpsc::channel::<usize>(64);
    let mut readers = Vec::new();
    for mut stream in fast {
        let done = done_tx.clone();
        readers.push(tokio::spawn(async move {
            for _ in 0..N / BATCH {
                read_messages(&mut stream, BATCH).await;
                let _ = done.send(BATCH).await;
            }
            stream
        }));
    }
    let body = [b't'; SIZE];
    // Paced by the fast readers, a batch under their HWM at a time, so
    // only the stalled one overflows.
    let mut received = 0;
    for batch in 0..N / BATCH {
        for _ in 0..BATCH {
            publisher.send(&[&body]);
        }
        while received < 2 * BATCH * (batch + 1) {
            received += timeout(LIMIT, done_rx.recv()).await.unwrap().unwrap();
        }
    }
    for r in readers {
        timeout(LIMIT, r).await.unwrap().unwrap();
    }
    assert_eq!(received, 2 * N, "the fast subscribers got everything");
    // What the stalled one was not dropped fits in its queue plus the
    // kernel's socket buffers (the send side's at most tcp_wmem's maximum).
    let wmem: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().last()?.parse().ok())
        .unwrap_or(4 << 20);
    let held = N as u64 - stats.dropped();
    let bound = (200 + (wmem + 64 * 1024) / SIZE) as u64;
    eprintln!(
        "stalled subscriber: {} dropped, {held} held (bound {bound})",
        stats.dropped()
    );
    assert!(held <= bound, "held {held} > {bound}");
    assert!(stats.dropped() > 0);
    drop(stalled);
    cancel.cancel();
}

#[tokio::test]
async fn the_pub_drops_a_subscriber_that_stops_answering_pings() {
    let (publisher, _stats, port, cancel) = serve(quick()).await;
    let mut silent = raw_sub(connect(port).await, &publisher, 0).await;
    // A live one answers every PING with a PONG and stays.
    let mut live = raw_sub(connect(port).await, &publisher, 1).await;
    let answer = tokio::spawn(async move {
        let mut buf = [0u8; 256];
        loop {
            match live.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if buf[..n].windows(4).any(|w| w == b"PING") {
                        let pong = [0x04, 5, 4, b'P', b'O', b'N', b'G'];
                        if live.write_all(&pong).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    // The silent one reads (so TCP is fine) but never answers.
    let seen = read_until_closed(&mut silent).await;
    assert!(seen.windows(4).any(|w| w == b"PING"), "it was pinged first");
    assert_eq!(publisher.peers(), 1, "the answering one stays");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(publisher.peers(), 1, "the answering one still stays");
    cancel.cancel();
    answer.abort();
}

struct Collect;

impl SubscriberEvents<bytes::Bytes> for Collect {
    fn up(&mut self) {}
    fn convert(&mut self, frame: bytes::Bytes) -> Option<bytes::Bytes> {
        Some(frame)
    }
}

#[tokio::test]
async fn a_sub_notices_a_pub_that_went_silent_without_a_fin() {
    let fake = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = fake.local_addr().unwrap().to_string();
    let sub = Subscriber {
        prefix: bytes::Bytes::from_static(b"t"),
        options: quick(),
        stats: Arc::new(Stats::default()),
    };
    let (tx, mut rx) = mpsc::channel(8);
    let cancel = CancellationToken::new();
    let fake_pub = async {
        let (mut conn, _) = fake.accept().await.unwrap();
        conn.write_all(&hello("PUB")).await.unwrap();
        conn.write_all(&frame(false, b"t one")).await.unwrap();
        // Then silence: the connection stays open, nothing more is sent,
        // what the SUB sends (its PINGs) is read and ignored.
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !seen.windows(4).any(|w| w == b"PING") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0);
            seen.extend_from_slice(&buf[..n]);
        }
        conn
    };
    let session = async {
        let stream = Subscriber::dial(&addr, LIMIT).await.unwrap();
        sub.session(stream, &tx, &mut Collect, &cancel).await
    };
    let (conn, result) = timeout(LIMIT, async { tokio::join!(fake_pub, session) })
        .await
        .expect("the SUB gives up on the silent PUB");
    assert!(matches!(result, Err(ZmtpError::Silent(_))), "{result:?}");
    assert_eq!(&rx.recv().await.unwrap()[..], b"t one");
    drop(conn);
}

#[tokio::test]
async fn the_pub_closes_a_peer_that_does_not_finish_the_handshake_in_time() {
    let (_publisher, stats, port, cancel) = serve(quick()).await;
    let mut raw = connect(port).await;
    let started = std::time::Instant::now();
    send_until_closed(&mut raw, &hello("SUB")[..30]).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert_eq!(stats.rejected(), 1);
    cancel.cancel();
}

/// Counts what the SUB hands on.
struct Count(Arc<std::sync::atomic::AtomicU64>);

impl SubscriberEvents<()> for Count {
    fn up(&mut self) {}
    fn convert(&mut self, _: bytes::Bytes) -> Option<()> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        None
    }
}

/// The transport alone: one PUB, one SUB, over loopback in one process,
/// 100-byte messages, at most 20,000 in flight (under its HWM, so nothing
/// is dropped). A benchmark:
/// `cargo test --release --test it zmtp_throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn zmtp_throughput_one_pub_one_sub() {
    use std::sync::atomic::Ordering;
    const N: u64 = 2_000_000;
    const WINDOW: u64 = 20_000;
    let options = Options {
        hwm: 2 * WINDOW as usize,
        ..Options::default()
    };
    let (publisher, stats, port, cancel) = serve(options.clone()).await;
    let got = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sub = Subscriber {
        prefix: bytes::Bytes::from_static(b"t"),
        options,
        stats: Arc::new(Stats::default()),
    };
    let (tx, _rx) = mpsc::channel::<()>(1);
    let stream = Subscriber::dial(&format!("127.0.0.1:{port}"), LIMIT)
        .await
        .unwrap();
    let counter = got.clone();
    let stop = cancel.clone();
    let session =
        tokio::spawn(async move { sub.session(stream, &tx, &mut Count(counter), &stop).await });
    wait_until("the PUB counts the SUB", LIMIT, || async {
        match publisher.peers() {
            0 => Err(0),
            n => Ok(n),
        }
    })
    .await;
    // The subscription travels after the handshake: wait until one arrives.
    wait_until("a warm-up message arrives", LIMIT, || async {
        publisher.send(&[b"t warm-up"]);
        match got.load(Ordering::Relaxed) {
            0 => Err(0),
            n => Ok(n),
        }
    })
    .await;
    let base = got.load(Ordering::Relaxed);
    let body = [b't'; 100];
    let started = std::time::Instant::now();
    let mut sent = 0;
    while sent < N {
        for _ in 0..1000 {
            publisher.send(&[&body]);
        }
        sent += 1000;
        while got.load(Ordering::Relaxed) - base + WINDOW < sent {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    while got.load(Ordering::Relaxed) - base < N {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(stats.dropped(), 0);
    let took = started.elapsed();
    eprintln!(
        "zmtp: {N} messages of 100 B in {took:?}: {:.2} M msg/s",
        N as f64 / took.as_secs_f64() / 1e6
    );
    cancel.cancel();
    let _ = session.await;
}
