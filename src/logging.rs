//! Logging for the long-running commands: `tracing` to stderr, `RUST_LOG`
//! sets the level (default `info`); every node's lines carry `node=<name>`.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,zeromq=warn"));
    // notify traces every inotify event of a watched directory; with the log
    // written into that directory (`RUST_LOG=trace topo up t.yaml 2> up.log`)
    // each line is an event that logs a line. Only an explicit
    // `RUST_LOG=notify=…` turns those back on.
    let asked = std::env::var("RUST_LOG").is_ok_and(|v| v.contains("notify"));
    if !asked && let Ok(quiet) = "notify=info".parse() {
        filter = filter.add_directive(quiet);
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
