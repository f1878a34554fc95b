//! Golden reachability over real sockets, through `topo test --run`'s own
//! entry point: every golden case and example is started in-process on free
//! ports (each Redis server of the file becomes a private `redis-server`),
//! probed, and the observed deliveries must equal its expectations and the
//! prediction cell by cell, counts included. `relocate` serves other tests
//! that start a file themselves.

use crate::golden::golden_cases;
use crate::util::RedisServer;
use std::collections::HashMap;
use std::path::Path;
use tokio_util::sync::CancellationToken;
use topo::check::Valid;
use topo::model::ServerKey;
use topo::testing::discover::discover;
use topo::testing::remap::remap;
use topo::testing::{BrokerMode, TestOptions, Verdict, test_files};

/// Moves every listener of the topology to a free loopback port (as
/// `topo test --run` does) and every Redis server onto a private one of the
/// test's own; returns the servers (killed on drop).
pub fn relocate(valid: &mut Valid) -> Vec<RedisServer> {
    let topology = &mut valid.topology;
    remap(topology).expect("the file's subscriptions point at its own nodes");
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

/// topo's own golden reachability over real sockets runs through the same
/// entry point as `topo test --run tests/golden topologies`: every case and
/// example carries its expectations (a sidecar, or `expect:`), is started
/// on free ports with private redis-servers, probed, and must deliver what
/// it expects, which must be what topo predicts, cell by cell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_golden_case_passes_topo_test_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = discover(&[root.join("tests/golden"), root.join("topologies")]).unwrap();
    let cases: Vec<_> = golden_cases().into_iter().map(|(file, _)| file).collect();
    assert!(cases.len() >= 27);
    assert_eq!(
        files, cases,
        "every golden case and example has expectations"
    );
    let options = TestOptions {
        run: true,
        brokers: BrokerMode::Private,
    };
    let reports = test_files(&files, options, 4, &CancellationToken::new()).await;
    let failed: Vec<_> = reports
        .iter()
        .filter(|r| r.verdict != Verdict::Pass || !r.ran)
        .cloned()
        .collect();
    assert!(
        failed.is_empty(),
        "topo test --run failed:\n{}",
        topo::testing::report::text(&failed)
    );
    // The cells were compared for real: every sender reached itself at least.
    for report in &reports {
        assert!(
            report.cells.iter().any(|c| c.observed.unwrap_or(0) > 0),
            "{}: nothing observed",
            report.file
        );
    }
}
