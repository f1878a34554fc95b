//! topo: one YAML file describes a set of WebSocket chat servers and how they
//! are wired (Redis pub/sub, ZeroMQ PUB/SUB, relays).
//!
//! - `config` reads the file (spanned YAML → spec → validated [`model::Topology`]);
//! - `graph` builds the petgraph of links and predicts who receives whose
//!   messages (reach and deliveries), and renders it;
//! - `cli` is the command line.
//!
//! A [`model::Topology`] is only made by `config::compile`; everything after
//! it trusts it without checking again.

pub mod bench;
pub mod check;
pub mod cli;
pub mod config;
pub mod graph;
pub mod logging;
pub mod model;
pub mod node;
pub mod probe;
pub mod runtime;
pub mod transport;
