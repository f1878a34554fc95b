//! What every command shares and nothing else: the output format it was
//! asked for, the tokio runtime it runs on and the signal that stops it.
//! A leaf: commands (the binary's `cli`, `bench`, `testing`) use it, and it
//! uses none of them, so no command module depends on another. How a
//! command ends (its exit code) is the binary's.

use clap::ValueEnum;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// The multi-threaded runtime of `up`, `node`, `plan` and `probe`.
pub fn runtime() -> tokio::runtime::Runtime {
    build(tokio::runtime::Builder::new_multi_thread())
}

/// A runtime on the calling thread only: each load generator thread of
/// `bench` runs one, so that its measurements stay on that thread.
pub fn thread_runtime() -> tokio::runtime::Runtime {
    build(tokio::runtime::Builder::new_current_thread())
}

fn build(mut builder: tokio::runtime::Builder) -> tokio::runtime::Runtime {
    // Fails only when the OS refuses threads or an epoll instance at start,
    // before anything runs: nothing to recover.
    builder.enable_all().build().expect("a tokio runtime")
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is
/// called (inside the runtime), not when first polled: a SIGTERM sent right
/// after the ready line must stop topo cleanly, not kill it.
#[cfg(unix)]
pub fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).expect("a SIGINT handler");
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
}

#[cfg(not(unix))]
pub fn shutdown_signal() -> impl Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
