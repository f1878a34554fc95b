//! Redis's glob matching (PSUBSCRIBE patterns), byte for byte as Redis 7.0's
//! `stringmatchlen` decides it, quirks included, so that predicted deliveries
//! agree with what a real server does — but without its recursion. A leaf:
//! the compiler, the graph and the in-process broker all match with it.

/// Since the CVE-2024-31228 fix (upstream 7.2.6+, and Debian's patched
/// 7.0.15, checked against the real server) Redis fails the rest of a
/// pattern past this many nested `*` groups; unpatched 7.0 has no limit.
const MAX_STAR_NESTING: usize = 1000;

/// True when `pattern` matches `text` the way Redis matches a PSUBSCRIBE pattern.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Redis's loop never runs for an empty text, so not even `*` matches it.
    if text.is_empty() {
        return pattern.is_empty();
    }
    if too_deep(pattern) {
        return false;
    }
    // Every token but `*` consumes exactly one byte, so the classic
    // "retry from the last star" walk finds a match iff Redis's recursion
    // does, in O(pattern × text) instead of exponential time.
    let (mut p, mut t) = (0, 0);
    let mut retry: Option<(usize, usize)> = None;
    while t < text.len() {
        if pattern.get(p) == Some(&b'*') {
            while pattern.get(p) == Some(&b'*') {
                p += 1;
            }
            if p == pattern.len() {
                return true;
            }
            retry = Some((p, t));
            continue;
        }
        if p < pattern.len() {
            let (hit, next) = token(pattern, p, text[t]);
            if hit {
                p = next;
                t += 1;
                continue;
            }
        }
        match retry {
            // Let the last star swallow one more byte and try again.
            Some((after_star, start)) => {
                retry = Some((after_star, start + 1));
                p = after_star;
                t = start + 1;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Whether Redis's nesting guard would fire: it fails every text once the
/// 1001st star group is reached with text left, which any match must do
/// unless that group ends the pattern (a trailing star matches without
/// recursing).
fn too_deep(pattern: &[u8]) -> bool {
    let mut groups = 0;
    let mut p = 0;
    while p < pattern.len() {
        if pattern[p] == b'*' {
            while pattern.get(p) == Some(&b'*') {
                p += 1;
            }
            groups += 1;
            if groups > MAX_STAR_NESTING {
                return p < pattern.len();
            }
        } else {
            p = token_end(pattern, p);
        }
    }
    false
}

/// Where the non-star token at `p` ends (its extent never depends on the text).
fn token_end(pattern: &[u8], p: usize) -> usize {
    token(pattern, p, 0).1
}

/// Matches the non-star token starting at `p` against one byte `c`;
/// returns whether it matched and where the next token starts.
fn token(pattern: &[u8], p: usize, c: u8) -> (bool, usize) {
    match pattern[p] {
        b'?' => (true, p + 1),
        // A lone trailing backslash is compared as itself.
        b'\\' => match pattern.get(p + 1) {
            Some(&escaped) => (escaped == c, p + 2),
            None => (c == b'\\', p + 1),
        },
        b'[' => class(pattern, p, c),
        literal => (literal == c, p + 1),
    }
}

/// A `[...]` class starting at `p`. Redis's parser has no error path: an
/// unterminated class runs to the end of the pattern, `[]` is an empty
/// class, and a range may swallow the `]` as its upper bound.
fn class(pattern: &[u8], p: usize, c: u8) -> (bool, usize) {
    let n = pattern.len();
    let mut i = p + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut hit = false;
    let end = loop {
        let left = n - i;
        if left == 0 {
            break n;
        }
        let b = pattern[i];
        if b == b'\\' && left >= 2 {
            hit |= pattern[i + 1] == c;
            i += 2;
        } else if b == b']' {
            break i + 1;
        } else if left >= 3 && pattern[i + 1] == b'-' {
            // Redis compares `char`s, signed on x86-64: bytes >= 0x80 sort
            // below ASCII, so `[a-\xff]` means 0xff..=a, not a..=0xff.
            let (a, z) = (pattern[i] as i8, pattern[i + 2] as i8);
            let (lo, hi) = if a <= z { (a, z) } else { (z, a) };
            hit |= (lo..=hi).contains(&(c as i8));
            i += 3;
        } else {
            hit |= b == c;
            i += 1;
        }
    };
    (hit != negate, end)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    fn m(pattern: &str, text: &str) -> bool {
        glob_match(pattern.as_bytes(), text.as_bytes())
    }

    #[test]
    fn literals_and_empty() {
        assert!(m("chat", "chat"));
        assert!(!m("chat", "chats"));
        assert!(!m("chats", "chat"));
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(!m("a", ""));
    }

    #[test]
    fn star_never_matches_the_empty_text() {
        assert!(!m("*", ""));
        assert!(!m("**", ""));
        assert!(m("*", "x"));
    }

    #[test]
    fn star() {
        assert!(m("chat.*", "chat.room1"));
        assert!(m("chat.*", "chat."));
        assert!(!m("chat.*", "chat"));
        assert!(m("*.room", "chat.room"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(m("a*b*c", "abc"));
        assert!(!m("a*b*c", "acb"));
        assert!(m("a***b", "ab"));
        assert!(m("a*", "a"));
        assert!(m("a**", "a"));
        assert!(m("*a", "aaa"));
        assert!(!m("*a", "aab"));
        assert!(m("*ab", "aab"));
    }

    #[test]
    fn question_mark() {
        assert!(m("?", "x"));
        assert!(!m("?", ""));
        assert!(!m("?", "xy"));
        assert!(m("a?c", "abc"));
        assert!(m("??", "\u{e9}")); // two UTF-8 bytes
    }

    #[test]
    fn escapes() {
        assert!(m(r"\*", "*"));
        assert!(!m(r"\*", "a"));
        assert!(m(r"\?", "?"));
        assert!(!m(r"\?", "x"));
        assert!(m(r"\[a]", "[a]"));
        assert!(m(r"\a", "a"));
        assert!(m(r"\\", "\\"));
        assert!(m(r"a\\b", "a\\b"));
    }

    #[test]
    fn trailing_backslash_is_literal() {
        assert!(m("\\", "\\"));
        assert!(m("a\\", "a\\"));
        assert!(!m("a\\", "a"));
        assert!(m("*\\", "x\\"));
    }

    #[test]
    fn classes() {
        assert!(m("[abc]", "b"));
        assert!(!m("[abc]", "d"));
        assert!(!m("[abc]", "ab"));
        assert!(m("[^abc]", "d"));
        assert!(!m("[^abc]", "a"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[a-c]", "d"));
        assert!(m("[z-a]", "m"));
        assert!(!m("[z-a]", "A"));
        assert!(m("[^a-c]", "d"));
        assert!(m(r"[\]]", "]"));
        assert!(m(r"[\-]", "-"));
        assert!(!m(r"[\-]", "\\"));
        assert!(m("[a^]", "^"));
    }

    #[test]
    fn class_edges() {
        // `[]` is empty: nothing matches; `[^]` matches any byte.
        assert!(!m("[]", "]"));
        assert!(!m("[]]", "]"));
        assert!(m("[^]", "x"));
        assert!(m("[^]]", "x]"));
        // A trailing `-` is literal; `a-]` is a range that eats the `]`.
        assert!(m("[a-", "-"));
        assert!(m("[a-", "a"));
        assert!(!m("[a-", "b"));
        assert!(m("[a-]", "_")); // ']'..='a'
        assert!(m("[a-]", "a"));
        assert!(!m("[a-]", "-"));
        assert!(m("[a-]x]", "x")); // class continues to the next `]`
        assert!(m("[-a]", "-"));
        // A trailing backslash in a class is literal.
        assert!(m("[\\", "\\"));
    }

    #[test]
    fn unterminated_class_runs_to_the_end() {
        assert!(m("[abc", "b"));
        assert!(!m("[abc", "bc"));
        assert!(m("x[ab", "xa"));
        assert!(!m("[", "["));
        assert!(!m("[", "x"));
        assert!(m("[^", "x")); // negated empty class
        assert!(m("x[^", "xy"));
        assert!(m("[*", "*"));
        assert!(!m("[*", "ab"));
    }

    #[test]
    fn high_bytes_and_signed_ranges() {
        assert!(glob_match(b"\xff", b"\xff"));
        assert!(glob_match(b"[\xe9]", b"\xe9"));
        assert!(glob_match(b"?", b"\x80"));
        assert!(glob_match(b"[\x80-\xff]", b"\x90"));
        // Signed: 0xff is -1, so this is -1..=97.
        assert!(!glob_match(b"[a-\xff]", b"b"));
        assert!(!glob_match(b"[a-\xff]", b"\x80"));
        assert!(glob_match(b"[a-\xff]", b"A"));
        assert!(glob_match(b"[a-\xff]", b"\xff"));
        assert!(glob_match(b"a\0b", b"a\0b"));
        assert!(!glob_match(b"[\0]", b"x"));
    }

    #[test]
    fn no_exponential_blowup() {
        let pattern = "*a".repeat(30) + "*b";
        let text = "a".repeat(5000);
        assert!(!m(&pattern, &text));
        let big = "*".repeat(100_000) + "x";
        assert!(m(&big, "yyx"));
    }

    #[test]
    fn nesting_guard() {
        let text = "a".repeat(1100);
        let ok = "*a".repeat(1000);
        assert!(m(&ok, &text));
        let too_deep = "*a".repeat(1001);
        assert!(!m(&too_deep, &text));
        // The 1001st group trailing matches without recursing.
        let trailing = "*a".repeat(1000) + "*";
        assert!(m(&trailing, &text));
    }
}
