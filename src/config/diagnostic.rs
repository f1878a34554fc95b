//! Errors and warnings about a topology file, each tied to a position.

use super::yaml::Span;
use crate::printable::{escape_controls, push_escaped, redact_urls};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Span,
    pub message: String,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Self {
        Diagnostic::new(Severity::Error, span, message.into())
    }

    pub fn warning(span: Span, message: impl Into<String>) -> Self {
        Diagnostic::new(Severity::Warning, span, message.into())
    }

    /// Messages quote the file (names, keys, values): a URL's password in
    /// them is hidden here, once, for the text and JSON outputs alike.
    fn new(severity: Severity, span: Span, message: String) -> Self {
        let message = match redact_urls(&message) {
            std::borrow::Cow::Borrowed(_) => message,
            std::borrow::Cow::Owned(redacted) => redacted,
        };
        Diagnostic {
            severity,
            span,
            message,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Where each line of a source starts, so that rendering many diagnostics
/// costs one pass over the file instead of one per diagnostic.
pub struct Lines<'a> {
    source: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    pub fn new(source: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        Lines { source, starts }
    }

    /// Line `n` (1-based) without its line break.
    pub fn line(&self, n: u32) -> Option<&'a str> {
        let i = (n as usize).checked_sub(1)?;
        let start = *self.starts.get(i)?;
        if start >= self.source.len() && i > 0 {
            return None; // after the final line break
        }
        let end = self.starts.get(i + 1).map_or(self.source.len(), |e| e - 1);
        Some(&self.source[start..end])
    }
}

/// Renders `file:line:col: error: message`, then the source line and a caret
/// under the column, the way compilers do, so editors and people both read it.
/// The line shown has its URL passwords hidden and its control characters
/// escaped: a file can hold bytes that would drive the terminal.
pub fn render(file: &str, lines: &Lines, diagnostic: &Diagnostic) -> String {
    let Span { line, column } = diagnostic.span;
    let mut out = format!(
        "{}:{line}:{column}: {}: {}\n",
        escape_controls(file),
        diagnostic.severity,
        escape_controls(&diagnostic.message)
    );
    let Some(text) = lines.line(line) else {
        return out;
    };
    let text = text.trim_end_matches('\r');
    let (text, column) = window(text, column.saturating_sub(1) as usize);
    let text = redact_urls(&text);
    let gutter = line.to_string();
    let pad = " ".repeat(gutter.len());
    // The caret line follows the escaped text; tabs are kept in it so the
    // caret lines up under them.
    let mut shown = String::with_capacity(text.len());
    let mut lead = String::new();
    for (i, c) in text.chars().enumerate() {
        let width = push_escaped(&mut shown, c);
        if i < column {
            match c {
                '\t' => lead.push('\t'),
                _ => lead.extend(std::iter::repeat_n(' ', width)),
            }
        }
    }
    out.push_str(&format!("{pad} |\n{gutter} | {shown}\n{pad} | {lead}^\n"));
    out
}

/// At most ~100 characters of a long line, around the 0-based character
/// `column`; returns the excerpt and the column within it.
fn window(text: &str, column: usize) -> (String, usize) {
    const SIDE: usize = 50;
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 2 * SIDE {
        return (text.to_owned(), column);
    }
    let start = column.saturating_sub(SIDE).min(chars.len());
    let end = (column + SIDE).min(chars.len());
    let mut excerpt: String = chars[start..end].iter().collect();
    let mut column = column - start;
    if start > 0 {
        excerpt.insert(0, '…');
        column += 1;
    }
    if end < chars.len() {
        excerpt.push('…');
    }
    (excerpt, column)
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = word.chars().count() / 3;
    candidates
        .into_iter()
        // Optimal string alignment: a swap of two neighbours is one edit
        // (the most common typo: `mian` for `main`).
        .map(|c| {
            (
                strsim::osa_distance(&word.to_lowercase(), &c.to_lowercase()),
                c,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(did_you_mean("hhtp", ["http", "host", "zmq"]), Some("http"));
        assert_eq!(did_you_mean("subscribe", ["subscribe"]), Some("subscribe"));
        assert_eq!(did_you_mean("xyz", ["http", "host"]), None);
        assert_eq!(did_you_mean("mian", ["main", "other"]), Some("main"));
        assert_eq!(did_you_mean("x", ["a"]), None);
        assert_eq!(did_you_mean("mian", ["main", "other"]), Some("main"));
        assert_eq!(did_you_mean("x", ["a"]), None);
    }

    #[test]
    fn renders_caret_under_column() {
        let d = Diagnostic::error(Span::new(2, 5), "bad");
        let text = render("f.yaml", &Lines::new("a:\n  b: c\n"), &d);
        assert_eq!(text, "f.yaml:2:5: error: bad\n  |\n2 |   b: c\n  |     ^\n");
    }

    #[test]
    fn lines_are_found_by_index() {
        let lines = Lines::new("a\nbc\n\nd");
        let got: Vec<_> = (0..=5).map(|n| lines.line(n)).collect();
        assert_eq!(
            got,
            [None, Some("a"), Some("bc"), Some(""), Some("d"), None]
        );
        assert_eq!(Lines::new("a\n").line(2), None);
        assert_eq!(Lines::new("").line(1), Some(""));
    }

    #[test]
    fn the_excerpt_is_escaped_and_redacted_and_the_caret_follows() {
        let d = Diagnostic::error(Span::new(1, 8), "bad \x1b[2J");
        let text = render(
            "f.yaml",
            &Lines::new("a: \x1b]0;x\x07 \"redis://:pw@h:z\""),
            &d,
        );
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text}");
        assert!(!text.contains("pw"), "{text}");
        let caret = text.lines().last().unwrap();
        let excerpt = text.lines().nth(2).unwrap();
        // Column 8 is the `x` after `]0;` once ESC is shown as \u{1b}.
        let at = caret.find('^').unwrap();
        assert_eq!(&excerpt[at..at + 1], "x", "{text}");
    }
}
