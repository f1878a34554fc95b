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
mod fuzz_zmtp;
mod glob_redis;
mod golden;
mod golden_runtime;
mod hostile_admin;
mod hostile_disk;
mod hostile_fds;
mod hostile_process;
mod hostile_ws;
mod hostile_zmq;
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
mod topo_test;
#[allow(dead_code)]
mod util;
mod zmtp;
