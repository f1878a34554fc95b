//! Logging for the long-running commands: `tracing` to stderr, `RUST_LOG`
//! sets the level (default `info`); every node's lines carry `node=<name>`.
//! Colour only on a terminal, never with `NO_COLOR` (no-color.org), so a log
//! redirected to a file holds no escape sequences. The binary installs the
//! subscriber; the library only emits events.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

use topo::runtime::process::FORCE_COLOUR;

/// Whether to colour a stream, given whether it is a terminal.
pub(crate) fn colour(is_terminal: bool) -> bool {
    let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let forced = std::env::var_os(FORCE_COLOUR).is_some_and(|v| !v.is_empty() && v != "0");
    !no_colour && (is_terminal || forced)
}

pub(crate) fn init() {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
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
        .with_ansi(colour(std::io::stderr().is_terminal()))
        .with_target(false)
        .try_init();
}

/// `topo test`: nodes log only errors (`RUST_LOG` may ask for more); the
/// report is the output.
pub(crate) fn init_quiet() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
