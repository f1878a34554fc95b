//! Applies a [`Diff`] to the nodes running in this process, piece by piece:
//! removed nodes stop, changed nodes are rewired in place (or restarted when
//! the change's delta says so), added nodes start. A node whose change
//! fails goes back to its previous configuration; the rest of the diff
//! stands. It does not read files or decide what changed: each change's
//! `NodeDelta` (from `diff`) is handed to its node as it is.

use super::Running;
use crate::diff::{Change, Diff};
use crate::model::Wiring;
use crate::node;
use std::fmt;

/// What happened to one node of a diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub node: String,
    /// Why the new configuration could not be applied.
    pub error: String,
    /// What runs now instead.
    pub now: Fallback,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// The previous configuration runs again (or still).
    Previous,
    /// Nothing runs under this name (an added node, or a restart whose
    /// rollback failed too).
    Stopped,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = match self.now {
            Fallback::Previous => "kept its previous configuration",
            Fallback::Stopped => "is not running",
        };
        write!(f, "{}: {}; the node {now}", self.node, self.error)
    }
}

/// Applies `diff` and stamps every node that runs its new (or unchanged)
/// configuration with `generation`. Returns the nodes that failed.
pub async fn apply(running: &mut Running, diff: &Diff, generation: u64) -> Vec<Failure> {
    let mut failures = Vec::new();
    // Removals first: their ports may be what an added or moved node binds.
    for w in &diff.remove {
        running.stop_node(&w.name).await;
        tracing::info!(node = %w.name, generation, "node removed (clients closed with 1001)");
    }
    let mut failed: Vec<&str> = Vec::new();
    for change in &diff.change {
        let name = change.name();
        let outcome = match change.delta.restart {
            Some(_) => restart(running, &change.old, &change.new, generation).await,
            None => rewire(running, change, generation).await,
        };
        match outcome {
            Ok(()) => {
                let how = match change.delta.restart {
                    Some(why) => format!("restarted: {why}"),
                    None => "rewired in place".into(),
                };
                tracing::info!(node = %name, generation, what = %change.what().join("; "), "node {how}");
            }
            Err(failure) => {
                tracing::error!(generation, "reload of node {failure}");
                failed.push(name);
                failures.push(failure);
            }
        }
    }
    // Every added node is bound before any is launched, so their SUBs do
    // not dial a PUB bound a moment later (see `node::start_many`).
    let mut bound = Vec::with_capacity(diff.add.len());
    for w in &diff.add {
        match node::bind(w).await {
            Ok(b) => bound.push(b),
            Err(e) => {
                let failure = Failure {
                    node: w.name.clone(),
                    error: e.to_string(),
                    now: Fallback::Stopped,
                };
                tracing::error!(generation, "reload of node {failure}");
                failed.push(&w.name);
                failures.push(failure);
            }
        }
    }
    for b in bound {
        let name = b.name().to_owned();
        running.launch(b, generation);
        tracing::info!(node = %name, generation, "node added");
    }
    for node in running.nodes() {
        if !failed.contains(&node.name.as_str()) {
            node.router.set_generation(generation);
        }
    }
    failures
}

async fn rewire(running: &Running, change: &Change, generation: u64) -> Result<(), Failure> {
    let name = change.name();
    let Some(node) = running.node(name) else {
        return Err(Failure {
            node: name.to_owned(),
            error: "not running".into(),
            now: Fallback::Stopped,
        });
    };
    node.rewire(change, generation).await.map_err(|e| Failure {
        node: name.to_owned(),
        error: e.to_string(),
        now: Fallback::Previous,
    })
}

/// Stops the node and starts it anew; if the new one cannot start, the old
/// configuration is started again under its old generation.
async fn restart(
    running: &mut Running,
    old: &Wiring,
    new: &Wiring,
    generation: u64,
) -> Result<(), Failure> {
    let before = running.node(&old.name).map(|n| n.router.generation());
    running.stop_node(&old.name).await;
    let Err(e) = running.start_wiring(new, generation).await else {
        return Ok(());
    };
    let back = running
        .start_wiring(old, before.unwrap_or(generation))
        .await;
    Err(Failure {
        node: new.name.clone(),
        error: e.to_string(),
        now: if back.is_ok() {
            Fallback::Previous
        } else {
            Fallback::Stopped
        },
    })
}
