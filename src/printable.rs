//! What may reach a terminal or a diagram: text from a topology file is
//! hostile. `escape_controls` shows control and bidirectional-override
//! characters as `\u{..}` instead of letting them drive the terminal;
//! `redact_urls` hides the password of every URL in a line of source.

use std::borrow::Cow;
use std::fmt::Write;

/// Characters a terminal or a text renderer would obey rather than show:
/// C0 and C1 controls (ESC, BEL, CR, ...), DEL, and the Unicode direction
/// overrides that reorder what is displayed ("trojan source").
pub fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every unsafe character written as `\u{1b}`; tabs stay.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// Appends `c`, escaped when unsafe; returns how many characters it took.
pub fn push_escaped(out: &mut String, c: char) -> usize {
    if is_unsafe(c) {
        let before = out.len();
        let _ = write!(out, "\\u{{{:x}}}", c as u32);
        out.len() - before
    } else {
        out.push(c);
        1
    }
}

/// `line` with the password of each `scheme://user:password@host` shown
/// as `***`. A Redis URL without `@` whose "port" is not a number is most
/// likely a password missing its host (`redis://:s3cret`): hidden too.
pub fn redact_urls(line: &str) -> Cow<'_, str> {
    if !line.contains("://") {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("://") {
        let scheme_start = rest[..at]
            .char_indices()
            .rev()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let scheme = &rest[scheme_start..at];
        let body = &rest[at + 3..];
        // The URL ends where YAML would end a scalar; its authority at the
        // first `/?#`, unless an `@` follows (a password holding `/`).
        let span = body
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | '}' | ']' | ')'))
            .unwrap_or(body.len());
        let end = match body[..span].rfind('@') {
            Some(at) => {
                at + 1
                    + body[at + 1..span]
                        .find(['/', '?', '#'])
                        .unwrap_or(span - at - 1)
            }
            None => body[..span].find(['/', '?', '#']).unwrap_or(span),
        };
        let authority = &body[..end];
        out.push_str(&rest[..at + 3]);
        out.push_str(&redact_authority(scheme, authority));
        rest = &body[end..];
    }
    out.push_str(rest);
    if out == line {
        Cow::Borrowed(line)
    } else {
        Cow::Owned(out)
    }
}

fn redact_authority(scheme: &str, authority: &str) -> String {
    // NATS puts a bare token where other schemes put a user name.
    let nats = scheme.eq_ignore_ascii_case("nats") || scheme.eq_ignore_ascii_case("tls");
    if let Some((user_info, host)) = authority.rsplit_once('@') {
        return match user_info.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None if nats && !user_info.is_empty() => format!("***@{host}"),
            None => authority.to_owned(),
        };
    }
    let redis =
        nats || scheme.eq_ignore_ascii_case("redis") || scheme.eq_ignore_ascii_case("rediss");
    if authority.ends_with(']') {
        return authority.to_owned(); // a bare IPv6 address
    }
    match authority.rsplit_once(':') {
        Some((host, port))
            if redis
                && !host.ends_with(']')
                && !port.is_empty()
                && port.parse::<u32>().is_err() =>
        {
            format!("{host}:***")
        }
        _ => authority.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_shown_not_obeyed() {
        assert_eq!(escape_controls("a\x1b[31mb\x07"), "a\\u{1b}[31mb\\u{7}");
        assert_eq!(escape_controls("x\u{202e}y\tz"), "x\\u{202e}y\tz");
        assert!(matches!(escape_controls("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn passwords_in_urls_are_hidden() {
        assert_eq!(
            redact_urls(r#"  main: { url: "redis://:s3cret@host:notaport" }"#),
            r#"  main: { url: "redis://:***@host:notaport" }"#
        );
        assert_eq!(
            redact_urls("url: redis://u:p@h:1/2 and rediss://:s3cret"),
            "url: redis://u:***@h:1/2 and rediss://:***"
        );
        assert_eq!(redact_urls("redis://user:s3cret"), "redis://user:***");
        assert_eq!(redact_urls("redis://:s3/cr?et@h:1/2"), "redis://:***@h:1/2");
        assert_eq!(
            redact_urls("(like redis://127.0.0.1:6379)"),
            "(like redis://127.0.0.1:6379)"
        );
        assert_eq!(redact_urls("tcp://host:5555"), "tcp://host:5555");
        assert_eq!(redact_urls("redis://[::1]:6379"), "redis://[::1]:6379");
        assert_eq!(redact_urls("redis://[::1]"), "redis://[::1]");
        assert_eq!(redact_urls("no url"), "no url");
        assert_eq!(
            redact_urls("url: nats://t0ken@h:4222,nats://u:pw@h:4223"),
            "url: nats://***@h:4222,nats://u:***@h:4223"
        );
        assert_eq!(redact_urls("tls://user:s3cret"), "tls://user:***");
        // Found by the fuzzer: a multi-byte character before `://`.
        assert_eq!(redact_urls("tc\u{feff}p://h:1"), "tc\u{feff}p://h:1");
        assert_eq!(redact_urls("é://:pw@h"), "é://:***@h");
    }
}
