//! What a bench run will do, decided before any socket opens: the URLs, how
//! clients and senders spread over them, how many copies of each message
//! every client should get, and the load. Built from a validated topology
//! (the analysis' prediction) or from raw URLs (`--expect all|node`).

use crate::check::Valid;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Load {
    /// Open loop: this many messages per second from all senders together.
    Rate(f64),
    /// Closed loop: this many unanswered messages per sender.
    Window(u32),
    /// Connections only (memory per idle connection).
    Idle,
}

/// What a client of a raw URL should receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Expect {
    /// Every client gets every message once (one server, or a full mesh).
    All,
    /// Only the clients of the sender's URL get it.
    Node,
}

#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    /// The node's name (topology) or the URL.
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct LoadPlan {
    pub targets: Vec<Target>,
    /// `expected[from][to]`: copies a client of target `to` gets of one
    /// message sent by a client of target `from`.
    pub expected: Vec<Vec<u32>>,
    pub clients: usize,
    /// Clients `0..senders` also send.
    pub senders: usize,
    pub load: Load,
    pub warmup: Duration,
    pub duration: Duration,
    /// How long to wait after the window for messages still in flight.
    pub drain: Duration,
    pub payload: usize,
    pub threads: usize,
    pub connect_timeout: Duration,
}

impl LoadPlan {
    /// Client `i` connects to target `i mod targets` (clients and senders
    /// are spread evenly over the nodes).
    pub fn target_of(&self, client: usize) -> usize {
        client % self.targets.len()
    }

    /// Copies of one message of `sender` that `client` should get.
    pub fn copies(&self, sender: usize, client: usize) -> u32 {
        self.expected[self.target_of(sender)][self.target_of(client)]
    }
}

/// The targets and prediction of a topology: every node with an HTTP server.
pub fn from_topology(valid: &Valid) -> (Vec<Target>, Vec<Vec<u32>>) {
    let topology = &valid.topology;
    let nodes: Vec<_> = topology
        .node_ids()
        .filter(|&id| topology.node(id).http.is_some())
        .collect();
    let targets = nodes
        .iter()
        .map(|&id| {
            let node = topology.node(id);
            let addr = crate::probe::client_address(node.http.expect("filtered"));
            Target {
                url: format!("ws://{addr}/ws"),
                name: node.name.clone(),
            }
        })
        .collect();
    let expected = nodes
        .iter()
        .map(|&from| {
            nodes
                .iter()
                .map(|&to| valid.analysis.expected(from, to) as u32)
                .collect()
        })
        .collect();
    (targets, expected)
}

/// Raw URLs, each its own group, with the expectation given.
pub fn from_urls(urls: &[String], expect: Expect) -> (Vec<Target>, Vec<Vec<u32>>) {
    let targets = urls
        .iter()
        .map(|u| Target {
            url: u.clone(),
            name: u.clone(),
        })
        .collect();
    let n = urls.len();
    let expected = (0..n)
        .map(|from| {
            (0..n)
                .map(|to| match expect {
                    Expect::All => 1,
                    Expect::Node => u32::from(from == to),
                })
                .collect()
        })
        .collect();
    (targets, expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_spread_over_targets_and_expectations_follow() {
        let (targets, expected) = from_urls(&["ws://a".into(), "ws://b".into()], Expect::Node);
        let plan = LoadPlan {
            targets,
            expected,
            clients: 4,
            senders: 2,
            load: Load::Window(1),
            warmup: Duration::ZERO,
            duration: Duration::ZERO,
            drain: Duration::ZERO,
            payload: 64,
            threads: 1,
            connect_timeout: Duration::from_secs(1),
        };
        assert_eq!(plan.target_of(3), 1);
        assert_eq!(plan.copies(0, 2), 1, "same node");
        assert_eq!(plan.copies(0, 3), 0, "other node");
    }
}
