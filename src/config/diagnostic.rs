//! Errors and warnings about a topology file, each tied to a position.

use super::yaml::Span;
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
        Diagnostic {
            severity: Severity::Error,
            span,
            message: message.into(),
        }
    }

    pub fn warning(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            span,
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Renders `file:line:col: error: message`, then the source line and a caret
/// under the column, the way compilers do, so editors and people both read it.
pub fn render(file: &str, source: &str, diagnostic: &Diagnostic) -> String {
    let Span { line, column } = diagnostic.span;
    let mut out = format!(
        "{file}:{line}:{column}: {}: {}\n",
        diagnostic.severity, diagnostic.message
    );
    let Some(text) = source.lines().nth(line.saturating_sub(1) as usize) else {
        return out;
    };
    let text = text.trim_end_matches('\r');
    let (text, column) = window(text, column.saturating_sub(1) as usize);
    let gutter = line.to_string();
    let pad = " ".repeat(gutter.len());
    // Tabs are kept in the caret line so the caret lines up under them.
    let lead: String = text
        .chars()
        .take(column)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    out.push_str(&format!("{pad} |\n{gutter} | {text}\n{pad} | {lead}^\n"));
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

/// Edit distance counting a swap of two neighbours as one edit (the most
/// common typo: `mian` for `main`), for "did you mean" suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            d[i * width + j] = if i == 0 || j == 0 {
                i + j
            } else {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut best = (d[(i - 1) * width + j] + 1)
                    .min(d[i * width + j - 1] + 1)
                    .min(d[(i - 1) * width + j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(d[(i - 2) * width + j - 2] + 1);
                }
                best
            };
        }
    }
    d[a.len() * width + b.len()]
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = word.chars().count() / 3;
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word.to_lowercase(), &c.to_lowercase()), c))
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
        let text = render("f.yaml", "a:\n  b: c\n", &d);
        assert_eq!(text, "f.yaml:2:5: error: bad\n  |\n2 |   b: c\n  |     ^\n");
    }
}
