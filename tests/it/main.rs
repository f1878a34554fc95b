//! All integration tests, one binary (see STYLE.md).

mod admin_live;
mod bench;
mod browser;
mod chat;
mod cli;
mod errors;
mod external;
mod faults_redis;
mod faults_ws;
mod faults_zmq;
mod fuzz;
mod glob_redis;
mod golden;
mod golden_runtime;
mod interop;
mod process;
mod reload;
mod reload_bench;
mod reload_faults;
mod rewire;
mod runtime;
mod secrets;
mod soak;
mod standalone;
mod tls;
#[allow(dead_code)]
mod util;
