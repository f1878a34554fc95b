//! All integration tests, one binary (see STYLE.md).

mod chat;
mod runtime;
mod util;
