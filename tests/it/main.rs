//! All integration tests, one binary (see STYLE.md).

mod cli;
mod errors;
mod fuzz;
mod glob_redis;
mod golden;
#[allow(dead_code)]
mod util;
