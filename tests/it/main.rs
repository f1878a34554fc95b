//! All integration tests, one binary (see STYLE.md).

mod chat;
mod interop;
mod runtime;
mod util;
