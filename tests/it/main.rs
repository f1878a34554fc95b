//! All integration tests, one binary (see STYLE.md).

mod admin_live;
mod browser;
mod chat;
mod cli;
mod errors;
mod fuzz;
mod glob_redis;
mod golden;
mod golden_runtime;
mod interop;
mod process;
mod reload;
mod reload_bench;
mod rewire;
mod runtime;
#[allow(dead_code)]
mod util;
