//! How a command ends: what the binary makes of the library's outcomes.

/// How a command ended; `main` turns it into the process exit code.
/// Ordered by severity, so the worst of several outcomes is their `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// Done, and what was checked or measured is as it should be.
    Ok,
    /// The file is invalid, or what was checked or measured is not clean.
    Invalid,
    /// The command could not run as asked (a missing file, bad arguments).
    Usage,
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::Invalid => 1,
            Exit::Usage => 2,
        }
    }
}

pub const EXIT_OK: Exit = Exit::Ok;
pub const EXIT_INVALID: Exit = Exit::Invalid;
pub const EXIT_USAGE: Exit = Exit::Usage;
