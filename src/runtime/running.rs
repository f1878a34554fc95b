//! Nodes of one topology running in this process: start them all (or none),
//! wait for their links, stop them within a deadline.
//! It does not watch files or compute diffs; a controller drives it.

use crate::model::{NodeId, Topology, Wiring};
use crate::node::{self, NodeHandle, StartError};
use crate::transport::{LinkKind, LinkState};
use std::fmt;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `shutdown` gives up waiting for tasks after this long (and logs which node).
pub const SHUTDOWN_LIMIT: Duration = Duration::from_millis(1800);

pub struct Running {
    root: CancellationToken,
    nodes: Vec<NodeHandle>,
}

/// Links still not up when `wait_links_up` gave up.
#[derive(Debug)]
pub struct LinksNotUp(pub Vec<String>);

impl fmt::Display for LinksNotUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "links not up: {}", self.0.join(", "))
    }
}

impl std::error::Error for LinksNotUp {}

impl Running {
    /// Starts every node of `topology`, in file order. Ready means: HTTP
    /// listener and PUB bound, Redis subscriptions confirmed. ZeroMQ SUBs
    /// connect in the background (peers may start in any order).
    pub async fn start(topology: &Topology) -> Result<Running, StartError> {
        Self::start_nodes(topology, topology.node_ids()).await
    }

    /// Starts only `ids` (what `topo node FILE NAME` runs): binds every
    /// listener of them all, then launches them. On the first failure
    /// nothing runs and the error is returned.
    pub async fn start_nodes(
        topology: &Topology,
        ids: impl IntoIterator<Item = NodeId>,
    ) -> Result<Running, StartError> {
        let wirings: Vec<Wiring> = ids.into_iter().map(|id| Wiring::of(topology, id)).collect();
        let root = CancellationToken::new();
        let nodes = node::start_many(&wirings, &root, 0).await?;
        Ok(Running { root, nodes })
    }

    /// Starts the node `wiring` describes.
    pub async fn start_wiring(
        &mut self,
        wiring: &Wiring,
        generation: u64,
    ) -> Result<(), StartError> {
        let handle = node::start(wiring, &self.root, generation).await?;
        self.nodes.push(handle);
        Ok(())
    }

    /// Launches a node bound by [`node::bind`] (hot reload: the added
    /// nodes are all bound before any is launched).
    pub fn launch(&mut self, bound: node::Bound, generation: u64) {
        self.nodes.push(bound.launch(&self.root, generation));
    }

    /// Stops the node called `name` (its clients get a 1001 close frame);
    /// `false` if no such node runs.
    pub async fn stop_node(&mut self, name: &str) -> bool {
        let Some(i) = self.nodes.iter().position(|n| n.name == name) else {
            return false;
        };
        let node = self.nodes.remove(i);
        if tokio::time::timeout(SHUTDOWN_LIMIT, node.stop())
            .await
            .is_err()
        {
            tracing::warn!(node = %name, "node tasks did not stop in time");
        }
        true
    }

    /// What every running node runs now.
    pub async fn wirings(&self) -> Vec<Wiring> {
        let mut all = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            all.push(node.wiring().await);
        }
        all
    }

    pub fn nodes(&self) -> &[NodeHandle] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeHandle> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Waits until every ZeroMQ SUB of every node is connected to its PUB and
    /// has written its subscription. The PUB applies a subscription a moment
    /// after reading it, so a frame published in that instant can still be
    /// missed (ZeroMQ's slow joiner); callers needing certainty send a probe
    /// message until it arrives.
    pub async fn wait_links_up(&self, timeout: Duration) -> Result<(), LinksNotUp> {
        let all = async {
            for node in &self.nodes {
                node.wait_links_up().await;
            }
        };
        if tokio::time::timeout(timeout, all).await.is_ok() {
            return Ok(());
        }
        let down = self
            .nodes
            .iter()
            .flat_map(|n| {
                n.links()
                    .into_iter()
                    .filter(|l| l.kind == LinkKind::ZmqSub && l.state() != LinkState::Up)
                    .map(move |l| {
                        format!(
                            "node {}: {} {} {}",
                            n.name,
                            l.kind.as_str(),
                            l.address,
                            l.state()
                        )
                    })
            })
            .collect();
        Err(LinksNotUp(down))
    }

    /// Stops every node: clients get a close frame (1001), sockets close.
    /// Returns within [`SHUTDOWN_LIMIT`] even if a task does not stop.
    pub async fn shutdown(self) {
        self.root.cancel();
        // Dropping `self` afterwards cancels again: harmless.
        let all = futures_util::future::join_all(self.nodes.iter().map(|n| n.stop()));
        if tokio::time::timeout(SHUTDOWN_LIMIT, all).await.is_err() {
            tracing::warn!("some node tasks did not stop in time");
        }
    }
}

/// A `Running` dropped without `shutdown` still stops its nodes (without
/// waiting for them), so no task outlives its owner.
impl Drop for Running {
    fn drop(&mut self) {
        self.root.cancel();
    }
}
