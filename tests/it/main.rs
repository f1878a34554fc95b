//! All integration tests, one binary (see STYLE.md).

mod bench;
mod chat;
mod cli;
mod errors;
mod fuzz;
mod glob_redis;
mod golden;
mod golden_runtime;
mod interop;
mod runtime;
#[allow(dead_code)]
mod util;
