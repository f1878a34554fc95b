//! The YAML document as a tree of values, each with the position it was
//! written at. serde-saphyr parses and enforces the resource budget; common
//! files take a fast path (`yaml::fast`) that builds the same tree from the
//! parser's events and hands anything unusual back to serde-saphyr. The
//! decoder in `spec.rs` walks this tree so that it can report every problem
//! of a file at once instead of stopping at the first.

#[cfg(test)]
mod differential;
mod fast;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

pub use crate::span::Span;

/// One YAML value and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub span: Span,
    pub kind: Kind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Value>),
    /// Entries in file order; duplicate keys are kept so the decoder can name both places.
    Map(Vec<(Value, Value)>),
}

impl Kind {
    /// How a type error names what was found instead.
    pub fn describe(&self) -> &'static str {
        match self {
            Kind::Null => "nothing (null)",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<Kind>::deserialize(deserializer)?;
        let at = spanned.referenced;
        Ok(Value {
            span: Span::new(to_u32(at.line()), to_u32(at.column())),
            kind: spanned.value,
        })
    }
}

fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(KindVisitor)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Kind, E> {
        Ok(i128::try_from(v).map_or(Kind::Float(v as f64), Kind::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Kind, E> {
        Ok(Kind::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Value>()? {
            let value = map.next_value::<Value>()?;
            entries.push((key, value));
        }
        Ok(Kind::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KindVisitor)
    }
}

/// A parse failure: where, and what.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseError {
    pub span: Span,
    pub message: String,
}

/// Files bigger than this are refused before parsing.
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;

/// Parses a whole document into a spanned tree, within a budget that keeps
/// alias bombs and pathological nesting to a few MiB and milliseconds.
pub fn parse(text: &str) -> Result<Value, ParseError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(ParseError {
            span: Span::new(1, 1),
            message: format!(
                "file is {} bytes; topology files are limited to {} bytes (8 MiB)",
                text.len(),
                MAX_FILE_BYTES
            ),
        });
    }
    if text.trim().is_empty() {
        return Ok(Value {
            span: Span::new(1, 1),
            kind: Kind::Null,
        });
    }
    match fast::parse(text, allowance(text)) {
        Some(value) => Ok(value),
        None => parse_with_serde_saphyr(text),
    }
}

/// Without aliases a document has no more events than it has bytes (plus a
/// few), so this never refuses an honest file but stops alias expansion early.
pub(super) fn allowance(text: &str) -> usize {
    (text.len() * 2).max(20_000)
}

/// The reference reader: every file the fast path leaves, and every error
/// message, come from here.
pub(super) fn parse_with_serde_saphyr(text: &str) -> Result<Value, ParseError> {
    let mut budget = serde_saphyr::Budget::default();
    let allowance = allowance(text);
    budget.max_events = allowance;
    budget.max_nodes = allowance;
    budget.max_total_scalar_bytes = allowance.max(64 * 1024);
    budget.max_aliases = 10_000;
    budget.max_anchors = 10_000;
    budget.max_recorded_anchor_events = 20_000;
    budget.flow_nesting_limit = 24;
    // A topology is six levels deep, and the tree is built recursively:
    // keep the recursion far from the stack limit of any thread.
    budget.max_depth = 24;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = 20_000;
    options.alias_limits.max_replay_stack_depth = 16;
    // Duplicates reach the tree (`Kind::Map` keeps them): the decoder names
    // both places, in topo's words, and goes on to find the other errors.
    options.duplicate_keys = serde_saphyr::options::DuplicateKeyPolicy::PassThrough;
    options.with_snippet = false;
    // YAML 1.1 read `y`, `no` and `on` as booleans: a node named `y` must stay `y`.
    options.strict_booleans = true;
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|error| {
        let span = error
            .location()
            .map(|at| Span::new(to_u32(at.line()).max(1), to_u32(at.column()).max(1)))
            .unwrap_or(Span::new(1, 1));
        ParseError {
            span,
            message: clean_message(&error.without_snippet().to_string()),
        }
    })
}

/// serde-saphyr appends "at line X column Y" to its messages; we print the
/// position ourselves in front of the message.
fn clean_message(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message).trim();
    let first = match first.find(" at line ") {
        Some(cut) => first[..cut].trim_end_matches(',').to_owned(),
        None => first.to_owned(),
    };
    if first.starts_with("budget breached") || first.contains("alias replay") {
        return format!(
            "refused: the document expands beyond topo's limits ({first}); \
             aliases that multiply (a \"billion laughs\" file) are not accepted"
        );
    }
    in_our_words(&first).unwrap_or(first)
}

/// The parser's messages that speak to a programmer using the library
/// (its function and option names), said to the user of topo instead.
fn in_our_words(message: &str) -> Option<String> {
    if message.starts_with("multiple YAML documents") {
        return Some(
            "a second YAML document: a topology file holds exactly one \
             (remove the `---` or `...` above this line)"
                .to_owned(),
        );
    }
    if let Some(rest) = message.strip_prefix("duplicate mapping key") {
        let key = rest
            .strip_prefix(": ")
            .and_then(|r| r.split(", set DuplicateKeyPolicy").next())
            .map_or(String::new(), |k| format!(" `{k}`"));
        return Some(format!(
            "duplicate key{key}: a key may appear only once in a mapping"
        ));
    }
    if message.starts_with("alias references unknown anchor") {
        return Some("`*name` refers to an anchor `&name` that is not defined above it".to_owned());
    }
    if message.contains("from_str") || message.contains("Options") || message.contains("serde") {
        // Another message meant for programmers: keep only what it says
        // before the advice.
        let said = message.split([';', ',']).next().unwrap_or(message).trim();
        return Some(format!("the YAML cannot be read: {said}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_positions() {
        let doc = parse("nodes:\n  a:\n    sub: [b, x]\n").unwrap();
        let Kind::Map(top) = &doc.kind else { panic!() };
        let Kind::Map(nodes) = &top[0].1.kind else {
            panic!()
        };
        let Kind::Map(a) = &nodes[0].1.kind else {
            panic!()
        };
        let Kind::Seq(items) = &a[0].1.kind else {
            panic!()
        };
        assert_eq!(items[1].span, Span::new(3, 14));
        assert_eq!(items[1].kind, Kind::Str("x".into()));
    }

    #[test]
    fn library_advice_is_said_in_topos_words() {
        for (text, expect) in [
            ("a: 1\n---\nb: 2\n", "a second YAML document"),
            ("a: *nope\n", "not defined above it"),
        ] {
            let message = parse(text).unwrap_err().message;
            assert!(message.contains(expect), "{message}");
            assert!(!message.contains("from_str") && !message.contains("Options"));
        }
        assert_eq!(
            in_our_words(
                "duplicate mapping key: x, set DuplicateKeyPolicy in Options if acceptable"
            ),
            Some("duplicate key `x`: a key may appear only once in a mapping".to_owned())
        );
        // Duplicates reach the tree for the decoder to report.
        let doc = parse("a: 1\na: 2\n").unwrap();
        let Kind::Map(entries) = doc.kind else {
            panic!()
        };
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn alias_bomb_is_refused_quickly() {
        let mut doc = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
        let mut prev = "a";
        for name in names {
            doc.push_str(&format!(
                "{name}: &{name} [{}]\n",
                vec![format!("*{prev}"); 9].join(",")
            ));
            prev = name;
        }
        let started = std::time::Instant::now();
        let error = parse(&doc).unwrap_err();
        // Debug builds are ~10x slower than release (60 ms there).
        assert!(started.elapsed() < std::time::Duration::from_millis(2000));
        assert!(error.message.contains("refused"), "{}", error.message);
    }
}
