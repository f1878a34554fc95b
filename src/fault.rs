//! The fault switches' vocabulary, shared by the admin server (which takes
//! them from the live page) and the runtime (which applies them in
//! `runtime::faults`): what a switch is, the command that flips it, and why
//! one was refused. A leaf, so the admin server need not import the runtime
//! that serves it.

use crate::node::StartError;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// One switch that is on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    /// The node is stopped (its clients were closed with 1001).
    NodeStopped { node: String },
    /// `node`'s ZeroMQ SUB to `endpoint` (`tcp://host:port`) is disconnected.
    SubCut { node: String, endpoint: String },
    /// `node` no longer subscribes `entry` (a channel, or `psubscribe PATTERN`).
    RedisSubCut { node: String, entry: String },
    /// `node`'s broker links (Redis, NATS, AMQP) are held down: messages
    /// wait in their outboxes.
    BrokerDown { node: String },
    /// `node` no longer subscribes the NATS filter `filter`.
    NatsSubCut { node: String, filter: String },
}

impl Fault {
    pub fn node(&self) -> &str {
        match self {
            Fault::NodeStopped { node }
            | Fault::SubCut { node, .. }
            | Fault::RedisSubCut { node, .. }
            | Fault::BrokerDown { node }
            | Fault::NatsSubCut { node, .. } => node,
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::NodeStopped { node } => write!(f, "node {node} stopped"),
            Fault::SubCut { node, endpoint } => write!(f, "node {node}: zmq sub {endpoint} cut"),
            Fault::RedisSubCut { node, entry } => {
                write!(f, "node {node}: redis subscription {entry} cut")
            }
            Fault::BrokerDown { node } => write!(f, "node {node}: broker link held down"),
            Fault::NatsSubCut { node, filter } => {
                write!(f, "node {node}: nats subscription {filter} cut")
            }
        }
    }
}

/// What the admin server asks of the runtime.
#[derive(Clone, Debug)]
pub enum FaultCommand {
    /// Turns one switch on (`on`) or off.
    Set { fault: Fault, on: bool },
    /// Turns every switch off.
    RestoreAll,
}

/// A command and where its answer goes: the switches on afterwards.
pub struct FaultRequest {
    pub command: FaultCommand,
    pub reply: oneshot::Sender<Result<Vec<Fault>, FaultError>>,
}

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error(
        "with --process only Stop and Start work (each node is a process started from the file); cut links and hold brokers down in-process"
    )]
    ProcessMode,
    #[error("no node {0} in the running topology")]
    NoNode(String),
    #[error("node {0} is stopped: start it first")]
    Stopped(String),
    #[error("node {node} has no {what}")]
    NoLink { node: String, what: String },
    #[error("{0} is not on")]
    NotOn(Fault),
    #[error("{0} is on already")]
    AlreadyOn(Fault),
    #[error(transparent)]
    Start(#[from] StartError),
}
