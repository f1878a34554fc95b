//! The soak benchmark (ignored: not a CI test). A Redis trio and a ZeroMQ
//! mesh in this process under steady load, the redis-server restarted every
//! minute, 100 client connects per second; RSS, file descriptors and tokio
//! tasks are sampled before and after, and every message sent while all
//! links were up must arrive exactly once at each other node.
//!
//!     TOPO_SOAK_SECS=600 cargo test --release --test it soak -- --ignored --nocapture

use crate::chat::*;
use crate::util::RedisServer;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use topo::model::Topology;
use topo::runtime::Running;
use topo::transport::LinkState;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn sample(what: &str) -> (u64, usize, usize) {
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let s = (rss_kib(), fds(), tasks);
    eprintln!("{what}: rss {} KiB, fds {}, tasks {}", s.0, s.1, s.2);
    s
}

fn trio(redis_port: u16) -> Topology {
    let nodes = ["ra", "rb", "rc"]
        .iter()
        .map(|n| with_redis(node(n, Some(port())), "chat", &["chat"], &[]))
        .collect();
    topology(nodes, vec![broker(redis_port)])
}

fn mesh() -> Topology {
    let pubs = [port(), port(), port()];
    let nodes = ["za", "zb", "zc"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let subs: Vec<u16> = (0..3).filter(|&j| j != i).map(|j| pubs[j]).collect();
            with_zmq(node(n, Some(port())), Some(pubs[i]), &subs)
        })
        .collect();
    topology(nodes, vec![])
}

fn all_up(running: &Running) -> bool {
    running
        .nodes()
        .iter()
        .all(|n| n.links().iter().all(|l| l.state() == LinkState::Up))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a 10-minute benchmark; run by hand"]
async fn soak() {
    let secs: u64 = std::env::var("TOPO_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let mut redis = RedisServer::start();
    let (t_redis, t_zmq) = (trio(redis.port), mesh());
    let running = [
        Running::start(&t_redis).await.unwrap(),
        Running::start(&t_zmq).await.unwrap(),
    ];
    running[1].wait_links_up(LIMIT).await.unwrap();
    let http = |t: &Topology, i: usize| t.nodes[i].http.unwrap().port();
    let mut groups = Vec::new();
    for t in [&t_redis, &t_zmq] {
        let mut clients = Vec::new();
        for i in 0..3 {
            clients.push(Client::connect(http(t, i)).await);
        }
        probe_links(&mut clients, &[(0, 1), (0, 2), (1, 0), (2, 0)]).await;
        groups.push(clients);
    }
    // Warm-up, then the baseline.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = sample("before");

    let began = Instant::now();
    let mut next_restart = began + Duration::from_secs(60);
    let mut seq = 0u64;
    // Per group: tags sent while every link was up, and what arrived.
    let mut sent_up: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
    let mut seen: Vec<HashMap<String, [u32; 2]>> = vec![HashMap::new(), HashMap::new()];
    let mut churned = 0u64;
    while began.elapsed() < Duration::from_secs(secs) {
        let tick = Instant::now();
        if tick >= next_restart {
            let port = redis.port;
            redis.kill();
            redis = RedisServer::start_on(port);
            next_restart += Duration::from_secs(60);
        }
        for (g, clients) in groups.iter_mut().enumerate() {
            seq += 1;
            let tag = format!("m{seq}");
            let up = all_up(&running[g]);
            clients[0].send(&tag).await;
            if up {
                sent_up[g].push(tag);
            }
            for (r, client) in clients.iter_mut().enumerate().skip(1) {
                for text in client.drain(Duration::from_millis(1)).await {
                    seen[g].entry(text).or_default()[r - 1] += 1;
                }
            }
            clients[0].drain(Duration::from_millis(0)).await;
        }
        // Churn: 10 connects per 100 ms tick, closed at once.
        for i in 0..10 {
            let t = if i % 2 == 0 { &t_redis } else { &t_zmq };
            drop(Client::connect(http(t, i % 3)).await);
            churned += 1;
        }
        let spent = tick.elapsed();
        if spent < Duration::from_millis(100) {
            tokio::time::sleep(Duration::from_millis(100) - spent).await;
        }
    }
    // Let the last messages land, then let closed sessions finish.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (g, clients) in groups.iter_mut().enumerate() {
        for (r, client) in clients.iter_mut().enumerate().skip(1) {
            for text in client.drain(Duration::from_millis(50)).await {
                seen[g].entry(text).or_default()[r - 1] += 1;
            }
        }
    }
    let after = sample("after");
    for (g, name) in ["redis-3node", "zmq-3node"].iter().enumerate() {
        let wrong: Vec<_> = sent_up[g]
            .iter()
            .filter(|t| seen[g].get(*t) != Some(&[1, 1]))
            .map(|t| (t.clone(), seen[g].get(t).copied()))
            .collect();
        eprintln!(
            "{name}: {} messages sent with every link up, {} not delivered exactly once to each other node",
            sent_up[g].len(),
            wrong.len()
        );
        if !wrong.is_empty() {
            eprintln!("  first: {:?}", &wrong[..wrong.len().min(5)]);
        }
    }
    eprintln!(
        "{churned} client connects in {:?}; rss {:+} KiB, fds {:+}, tasks {:+}",
        began.elapsed(),
        after.0 as i64 - before.0 as i64,
        after.1 as i64 - before.1 as i64,
        after.2 as i64 - before.2 as i64
    );
    for r in running {
        r.shutdown().await;
    }
}
