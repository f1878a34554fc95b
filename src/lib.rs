//! topo: one YAML file describes a set of WebSocket chat servers and how they
//! are wired (Redis pub/sub, ZeroMQ PUB/SUB, relays).
//!
//! - `config` reads the file (spanned YAML → spec → validated [`model::Topology`]);
//! - `graph` builds the petgraph of links and predicts who receives whose
//!   messages (reach and deliveries), and renders it;
//! - `node`, `transport` and `runtime` run the nodes (in this process or one
//!   child process each); `diff` + `runtime::controller` + `runtime::watch`
//!   turn every save of the file into an in-place reload; `admin` serves the
//!   applied file to `topo plan`; `probe` checks a running topology;
//!   `bench` loads one and measures throughput, latency and start-up;
//! - `command` is what the commands share (how they end, the output
//!   format, the runtime); the command line itself (`cli`) is the binary's.
//!
//! A [`model::Topology`] is only made by `config::compile`; everything after
//! it trusts it without checking again.

pub mod admin;
pub mod bench;
pub mod check;
pub mod command;
pub mod config;
pub mod diff;
pub mod fault;
pub mod glob;
pub mod graph;
pub mod health;
pub mod http_get;
pub mod import;
pub mod model;
pub mod node;
pub mod plan;
pub mod printable;
pub mod probe;
pub mod runtime;
pub mod serve;
pub mod span;
pub mod subject;
pub mod testing;
pub mod topic;
pub mod transport;
