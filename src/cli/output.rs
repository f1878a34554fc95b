//! Writing what commands print: the binary's alone (the library prints
//! nothing; it returns or reports what there is to say). A closed stdout
//! (`topo graph | head -1`) is the reader saying it has read enough: output
//! commands end quietly with exit 0; running ones (`topo up`) keep their
//! nodes and stop writing there. `print!` would panic instead (exit 101).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// For commands whose only job is their output: a closed pipe ends the
/// process with exit 0; any other write error with exit 1.
pub(crate) fn print_or_exit(text: &str) {
    if let Err(e) = write_stdout(text) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprint_quiet(&format!("topo: cannot write the output: {e}\n"));
        std::process::exit(1);
    }
}

/// For running commands: a stdout that cannot be written is said once on
/// stderr, then left alone; the process carries on.
pub(crate) fn print_lossy(text: &str) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = write_stdout(text)
        && !STDOUT_CLOSED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(error = %e, "stdout is closed: only the log (stderr) is written from now on");
    }
}

/// Diagnostics and messages: a stderr that cannot be written is ignored
/// (`2>&1 | head -1` closes it too, and there is nowhere left to say so).
pub(crate) fn eprint_quiet(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `print!` for output commands (see [`print_or_exit`]).
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::output::print_or_exit(&format!($($arg)*)) };
}

/// `println!` for output commands (see [`print_or_exit`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        let mut text = format!($($arg)*);
        text.push('\n');
        $crate::cli::output::print_or_exit(&text)
    }};
}

/// `eprint!` that never panics.
macro_rules! eout {
    ($($arg:tt)*) => { $crate::cli::output::eprint_quiet(&format!($($arg)*)) };
}

/// `eprintln!` that never panics.
macro_rules! eoutln {
    ($($arg:tt)*) => {{
        let mut text = format!($($arg)*);
        text.push('\n');
        $crate::cli::output::eprint_quiet(&text)
    }};
}
