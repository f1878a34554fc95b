//! All integration tests, one binary (see STYLE.md).

mod glob_redis;
#[allow(dead_code)]
mod util;
