//! A bounded fuzz run of the ZeroMQ wire in every test run: random and
//! mutated ZMTP streams against a real `topo up` process's PUB port and,
//! from a fake PUB, against its SUB. Afterwards the process must still run,
//! have printed no panic, and deliver both ways. Seeded, so a failure
//! repeats; `TOPO_FUZZ_SECS` runs it longer (CI's fuzz step).

use crate::chat::*;
use crate::fuzz::{Rng, budget};
use crate::hostile_zmq::{frame, hello};
use crate::util::{Spawned, TestCommand};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Command frames built by hand: name length, name, data.
fn command(name: &str, data: &[u8]) -> Vec<u8> {
    let mut body = vec![name.len() as u8];
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(data);
    let mut f = vec![0x04, body.len() as u8];
    f.extend_from_slice(&body);
    f
}

/// A valid session of a peer of type `ty`, to mutate.
fn seed(rng: &mut Rng, ty: &str) -> Vec<u8> {
    let mut v = hello(ty);
    for _ in 0..rng.below(6) {
        match rng.below(6) {
            0 => v.extend_from_slice(&frame(false, b"\x01chat")),
            1 => v.extend_from_slice(&command("PING", &[0, 10, b'c', b'x'])),
            2 => v.extend_from_slice(&command("SUBSCRIBE", b"ch")),
            3 => v.extend_from_slice(&command("CANCEL", b"ch")),
            4 => {
                v.extend_from_slice(&frame(true, b"chat part"));
                v.extend_from_slice(&frame(false, b"two"));
            }
            _ => v.extend_from_slice(&frame(false, &vec![b'c'; rng.below(600)])),
        }
    }
    v
}

fn mutate(rng: &mut Rng, mut data: Vec<u8>) -> Vec<u8> {
    if rng.below(10) == 0 {
        return (0..rng.below(300)).map(|_| rng.next() as u8).collect();
    }
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(6) {
            0 => data.truncate(at),
            1 if at < data.len() => data[at] ^= 1 << rng.below(8),
            2 if at < data.len() => data[at] = rng.next() as u8,
            3 => {
                // A long-form header with a random length.
                let mut h = vec![0x02 | (rng.next() as u8 & 0x05)];
                h.extend_from_slice(&rng.next().to_be_bytes());
                data.splice(at..at, h).for_each(drop);
            }
            4 => {
                let end = (at + rng.below(100)).min(data.len());
                let chunk = data[at..end].to_vec();
                data.splice(at..at, chunk).for_each(drop);
            }
            _ => data.extend((0..rng.below(32)).map(|_| rng.next() as u8)),
        }
    }
    data
}

/// Writes `bytes`, half-closes, and gives the peer a moment to answer.
async fn play(mut stream: TcpStream, bytes: &[u8]) {
    let _ = timeout(Duration::from_secs(1), stream.write_all(bytes)).await;
    let _ = stream.shutdown().await;
    let mut buf = [0u8; 1024];
    let _ = timeout(Duration::from_millis(50), async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

async fn until_listening(http: u16, up: &mut Spawned) {
    crate::util::wait_until(&format!("a listener on {http}"), LIMIT, || {
        assert!(up.running(), "topo up exited\n{up}");
        async move { TcpStream::connect(("127.0.0.1", http)).await.map(drop) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmtp_survives_hostile_streams_on_pub_and_sub() {
    let budget = budget();
    let (a_http, a_pub, b_http) = (port(), port(), port());
    let fake = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_port = fake.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fuzz.yaml");
    std::fs::write(
        &file,
        format!(
            "nodes:\n  a: {{ http: {a_http}, zmq: {{ pub: {a_pub}, sub: [\"tcp://127.0.0.1:{fake_port}\"] }} }}\n  b: {{ http: {b_http}, zmq: {{ sub: [a] }} }}\n"
        ),
    )
    .unwrap();
    let mut up = TestCommand::new()
        .args(["up", "--no-admin"])
        .arg(&file)
        .env("RUST_LOG", "warn")
        .topology(&file)
        .spawn();
    until_listening(a_http, &mut up).await;
    until_listening(b_http, &mut up).await;
    let mut clients = vec![Client::connect(a_http).await, Client::connect(b_http).await];
    probe_links(&mut clients, &[(0, 1)]).await;

    let started = Instant::now();
    // The fake PUB: every connection of a's SUB gets one hostile stream.
    let sub_side = async {
        let mut rng = Rng(0x5ab_f022);
        let mut runs = 0u64;
        while started.elapsed() < budget {
            let Ok(Ok((conn, _))) = timeout(Duration::from_millis(200), fake.accept()).await else {
                continue;
            };
            let stream = seed(&mut rng, "PUB");
            play(conn, &mutate(&mut rng, stream)).await;
            runs += 1;
        }
        runs
    };
    let pub_side = async {
        let mut rng = Rng(0x9ab_f022);
        let mut runs = 0u64;
        while started.elapsed() < budget {
            let conn = TcpStream::connect(("127.0.0.1", a_pub)).await.unwrap();
            let stream = seed(&mut rng, "SUB");
            play(conn, &mutate(&mut rng, stream)).await;
            runs += 1;
        }
        runs
    };
    let (sub_runs, pub_runs) = tokio::join!(sub_side, pub_side);
    eprintln!("zmtp fuzz: {pub_runs} streams to the PUB, {sub_runs} from the fake PUB");
    assert!(pub_runs > 20 && sub_runs > 2, "{pub_runs} / {sub_runs}");
    assert!(up.running(), "topo up died\n{up}");

    // Still delivering: a → b over a's PUB, and a well-behaved PUB → a.
    clients[0].send("after the fuzz").await;
    clients[1].wait_for("after the fuzz").await;
    let valid = async {
        loop {
            let (mut conn, _) = fake.accept().await.unwrap();
            let mut v = hello("PUB");
            v.extend_from_slice(&frame(false, b"chat from a good pub"));
            if conn.write_all(&v).await.is_ok() {
                return conn;
            }
        }
    };
    let _conn = timeout(LIMIT, valid).await.expect("a's SUB dials again");
    clients[0].wait_for("from a good pub").await;
    assert!(!up.stderr().contains("panicked"), "{up}");
}
