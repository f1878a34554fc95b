//! All integration tests, one binary (see STYLE.md).

mod util;
