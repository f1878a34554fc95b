//! All integration tests, one binary (see STYLE.md).

mod admin_live;
mod bench;
mod browser;
mod chat;
mod cli;
mod errors;
mod faults_redis;
mod faults_ws;
mod faults_zmq;
mod fuzz;
mod glob_redis;
mod golden;
mod golden_runtime;
mod hostile_admin;
mod hostile_fds;
mod hostile_process;
mod hostile_ws;
mod interop;
mod live_demo;
mod process;
mod reload;
mod reload_bench;
mod reload_faults;
mod rewire;
mod runtime;
mod secrets;
mod soak;
mod tls;
mod topo_test;
#[allow(dead_code)]
mod util;
