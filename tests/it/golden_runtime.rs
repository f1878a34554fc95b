//! Golden reachability over real sockets: every golden case and example is
//! started in-process on free ports (each Redis server of the file becomes a
//! private `redis-server`), probed, and the observed deliveries must equal
//! the prediction cell by cell, counts included.

use crate::golden::golden_cases;
use crate::util::{RedisServer, free_port};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use topo::check::{Valid, check_bytes};
use topo::model::ServerKey;
use topo::probe::{ProbeOptions, probe};
use topo::runtime::Running;

/// Moves every listener of the topology to a free loopback port and every
/// Redis server onto a private one; returns the servers (killed on drop).
pub fn relocate(valid: &mut Valid) -> Vec<RedisServer> {
    let topology = &mut valid.topology;
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut pub_binds: HashMap<usize, SocketAddr> = HashMap::new();
    for (i, node) in topology.nodes.iter_mut().enumerate() {
        if let Some(http) = node.http.as_mut() {
            *http = SocketAddr::new(loopback, free_port());
        }
        if let Some(publish) = node.zmq.as_mut().and_then(|z| z.publish.as_mut()) {
            publish.bind = SocketAddr::new(loopback, free_port());
            pub_binds.insert(i, publish.bind);
        }
    }
    for node in &mut topology.nodes {
        for sub in node.zmq.iter_mut().flat_map(|z| z.subscribe.iter_mut()) {
            let from = sub
                .from
                .expect("golden cases subscribe to nodes of their file");
            sub.endpoint.host = "127.0.0.1".into();
            sub.endpoint.port = pub_binds[&from.0].port();
        }
    }
    let mut servers: HashMap<ServerKey, RedisServer> = HashMap::new();
    for broker in &mut topology.brokers {
        let server = servers
            .entry(broker.url.server())
            .or_insert_with(RedisServer::start);
        broker.url.host = "127.0.0.1".into();
        broker.url.port = server.port;
    }
    servers.into_values().collect()
}

async fn run_case(file: &Path) -> Result<(), String> {
    let bytes = std::fs::read(file).unwrap();
    let checked = check_bytes(&file.display().to_string(), "case", &bytes, &|_| None);
    let mut valid = checked.valid.expect("golden cases are valid");
    let _servers = relocate(&mut valid);
    let running = Running::start(&valid.topology)
        .await
        .map_err(|e| format!("{}: start: {e}", file.display()))?;
    let outcome = async {
        running
            .wait_links_up(Duration::from_secs(10))
            .await
            .map_err(|e| format!("{}: links not up: {:?}", file.display(), e.0))?;
        // ZeroMQ's slow joiner can lose the very first frames after a SUB
        // connects; a probe may be repeated only while messages are missing.
        // An extra (duplicate) delivery fails at once.
        let options = ProbeOptions {
            timeout: Duration::from_secs(3),
            settle: Duration::from_millis(250),
        };
        let mut last = String::new();
        for _ in 0..3 {
            let report = probe(&valid, options).await;
            if report.agrees() {
                return Ok(());
            }
            last = report.to_text();
            if report.cells.iter().any(|c| c.observed > c.predicted) {
                break;
            }
        }
        Err(format!("{}:\n{last}", file.display()))
    }
    .await;
    running.shutdown().await;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_golden_case_delivers_exactly_as_predicted() {
    let cases: Vec<_> = golden_cases().into_iter().map(|(file, _)| file).collect();
    assert!(cases.len() >= 27);
    let mut failures = Vec::new();
    // A few at a time: each case is mostly waiting on sockets.
    for batch in cases.chunks(4) {
        let results = futures_util::future::join_all(batch.iter().map(|f| run_case(f))).await;
        failures.extend(results.into_iter().filter_map(Result::err));
    }
    assert!(
        failures.is_empty(),
        "observed != predicted:\n{}",
        failures.join("\n")
    );
}
