//! `expect:` (top level, or a sidecar `NAME.expect.yaml` holding only
//! `deliveries:` and `one_of:`): the deliveries a user asserts, for
//! `topo test`, and the copies NATS queue groups take. Decoding
//! and the check that every name is a node with an HTTP server. It never
//! touches what runs: `topo up` ignores the section.

use super::decode::{Decoder, Named, Spanned};
use super::diagnostic::{Diagnostic, did_you_mean};
use super::keys::{ExpectKey, OneOfKey};
use super::yaml::{Kind, Span, Value};
use schemars::JsonSchema;
use std::collections::BTreeMap;

/// sender -> receiver -> count, as `validate --format json` prints `deliveries`.
pub type Deliveries = BTreeMap<String, BTreeMap<String, u64>>;

/// What `topo test` compares with the prediction (and, with `--run`, with
/// what arrives). `topo up` ignores it.
#[derive(Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ExpectSpec {
    /// sender -> receiver -> how many times the receiver's clients get one
    /// message sent by a client of the sender; a pair not listed expects 0.
    /// Both are nodes with an `http:` port.
    #[schemars(required)]
    pub deliveries: Option<Named<Named<Spanned<u64>>>>,
    /// sender -> the NATS queue groups its messages reach: each copy goes
    /// to exactly one of `among`, as `validate --format json` prints `one_of`.
    pub one_of: Option<Named<Vec<OneOfSpec>>>,
}

/// `count` copies of a sender's message, each to exactly one of `among`.
#[derive(Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OneOfSpec {
    /// The queue group's members whose subscription matches (node names).
    #[schemars(required)]
    pub among: Option<Spanned<Vec<Spanned<String>>>>,
    /// Copies that reach the group; default 1.
    pub count: Option<Spanned<u64>>,
}

/// A queue group's share of a sender's messages, by node names: one entry
/// of `validate --format json`'s `one_of` and of an expectation's.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OneOf {
    /// The members, sorted by name.
    pub among: Vec<String>,
    /// Copies of each message that reach the group; each goes to one member.
    pub count: u64,
}

/// sender -> the queue groups its messages reach (lists sorted).
pub type OneOfs = BTreeMap<String, Vec<OneOf>>;

/// A checked expectation, names resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectations {
    pub deliveries: Deliveries,
    /// Empty when the file expects no queue group.
    pub one_of: OneOfs,
    /// Where the section's key (`expect:`, or `deliveries:` in a sidecar) is.
    pub at: Span,
}

impl Expectations {
    /// The expected count of one cell (0 when not listed).
    pub fn count(&self, from: &str, to: &str) -> u64 {
        self.deliveries
            .get(from)
            .and_then(|row| row.get(to))
            .copied()
            .unwrap_or(0)
    }
}

impl Decoder<'_> {
    pub(super) fn expect(&mut self, value: &Value) -> ExpectSpec {
        let mut spec = ExpectSpec::default();
        for (key, v) in self.fields::<ExpectKey>(value, "expect") {
            match key.value {
                ExpectKey::Deliveries => spec.deliveries = Some(self.deliveries(v)),
                ExpectKey::OneOf => spec.one_of = Some(self.one_of(v)),
            }
        }
        spec
    }

    fn one_of(&mut self, value: &Value) -> Named<Vec<OneOfSpec>> {
        self.named(value, "one_of", |d, row| match &row.kind {
            Kind::Seq(items) => Some(items.iter().map(|item| d.one_of_entry(item)).collect()),
            other => {
                d.error(
                    row.span,
                    format!(
                        "expected a list of {{ among: [nodes], count: N }}, found {}",
                        other.describe()
                    ),
                );
                None
            }
        })
    }

    fn one_of_entry(&mut self, value: &Value) -> OneOfSpec {
        let mut spec = OneOfSpec::default();
        for (key, v) in self.fields::<OneOfKey>(value, "a one_of entry") {
            match key.value {
                OneOfKey::Among => spec.among = self.string_list(v, "node names"),
                OneOfKey::Count => spec.count = self.count(v),
            }
        }
        if spec.among.is_none() {
            self.error(
                value.span,
                "a one_of entry needs `among:` (the queue group's members)",
            );
        }
        spec
    }

    /// A sidecar file: a mapping whose only key is `deliveries:`.
    pub fn sidecar(&mut self, doc: &Value) -> Option<Spanned<ExpectSpec>> {
        let mut found = None;
        let mut one_of = None;
        for (key, v) in self.fields::<ExpectKey>(doc, "an expectations file") {
            match key.value {
                ExpectKey::Deliveries => {
                    found = Some(Spanned {
                        value: ExpectSpec {
                            deliveries: Some(self.deliveries(v)),
                            one_of: None,
                        },
                        span: key.span,
                    })
                }
                ExpectKey::OneOf => one_of = Some(self.one_of(v)),
            }
        }
        if let Some(found) = found.as_mut() {
            found.value.one_of = one_of;
        }
        if found.is_none() && matches!(doc.kind, Kind::Map(_) | Kind::Null) {
            self.error(
                doc.span,
                "an expectations file needs a `deliveries:` section",
            );
        }
        found
    }

    fn deliveries(&mut self, value: &Value) -> Named<Named<Spanned<u64>>> {
        self.named(value, "deliveries", |d, row| {
            Some(d.named(row, "a sender's deliveries", Self::count))
        })
    }

    fn count(&mut self, value: &Value) -> Option<Spanned<u64>> {
        let n = self.integer(value)?;
        match u64::try_from(n.value) {
            Ok(count) => Some(Spanned {
                value: count,
                span: n.span,
            }),
            Err(_) => {
                self.error(
                    n.span,
                    format!(
                        "a delivery count is a whole number 0 or more, found {}",
                        n.value
                    ),
                );
                None
            }
        }
    }
}

/// Checks the names of `spec` against the nodes of the file: `nodes` lists
/// every node name and whether it has an HTTP server. Returns the
/// expectations when nothing is wrong.
pub fn resolve(
    spec: &Spanned<ExpectSpec>,
    nodes: &[(&str, bool)],
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Expectations> {
    let before = diagnostics.iter().filter(|d| d.is_error()).count();
    let mut deliveries = Deliveries::new();
    let Some(rows) = &spec.value.deliveries else {
        diagnostics.push(Diagnostic::error(
            spec.span,
            "`expect:` needs a `deliveries:` section (sender -> receiver -> count)",
        ));
        return None;
    };
    for (sender, row) in &rows.0 {
        let sender_ok = check_name(sender, nodes, "sender", diagnostics);
        let mut counts = BTreeMap::new();
        for (receiver, count) in &row.0 {
            if check_name(receiver, nodes, "receiver", diagnostics) {
                counts.insert(receiver.value.clone(), count.value);
            }
        }
        if sender_ok {
            deliveries.insert(sender.value.clone(), counts);
        }
    }
    let mut one_of = OneOfs::new();
    for (sender, list) in spec.value.one_of.iter().flat_map(|o| o.0.iter()) {
        check_name(sender, nodes, "sender", diagnostics);
        let mut groups = Vec::new();
        for entry in list {
            let Some(among) = &entry.among else { continue };
            let mut names = Vec::new();
            for member in &among.value {
                if nodes.iter().any(|(n, _)| *n == member.value) {
                    names.push(member.value.clone());
                } else {
                    diagnostics.push(Diagnostic::error(
                        member.span,
                        format!("`{}` is not a node of this file", member.value),
                    ));
                }
            }
            names.sort();
            let count = entry.count.as_ref().map_or(1, |c| c.value);
            groups.push(OneOf {
                among: names,
                count,
            });
        }
        groups.sort_by(|a, b| a.among.cmp(&b.among));
        one_of.insert(sender.value.clone(), groups);
    }
    let after = diagnostics.iter().filter(|d| d.is_error()).count();
    (after == before).then_some(Expectations {
        deliveries,
        one_of,
        at: spec.span,
    })
}

fn check_name(
    name: &Spanned<String>,
    nodes: &[(&str, bool)],
    role: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> bool {
    let text = name.value.as_str();
    match nodes.iter().find(|(n, _)| *n == text) {
        Some((_, true)) => true,
        Some((_, false)) => {
            diagnostics.push(Diagnostic::error(
                name.span,
                format!(
                    "expected {role} `{text}` has no `http:` port: only nodes with clients send and receive"
                ),
            ));
            false
        }
        None => {
            let hint = match did_you_mean(text, nodes.iter().map(|(n, _)| *n)) {
                Some(s) => format!("; did you mean `{s}`?"),
                None => String::new(),
            };
            diagnostics.push(Diagnostic::error(
                name.span,
                format!("expected {role} `{text}` is not a node of this file{hint}"),
            ));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::parse;

    fn decode(text: &str) -> (Option<Expectations>, Vec<Diagnostic>) {
        let doc = parse(text).unwrap();
        let env = |_: &str| None;
        let mut decoder = Decoder::new(&env);
        let spec = decoder.sidecar(&doc);
        let mut diagnostics = decoder.diagnostics;
        let nodes = [("a", true), ("b", true), ("relay", false)];
        let resolved = spec.and_then(|s| resolve(&s, &nodes, &mut diagnostics));
        (resolved, diagnostics)
    }

    #[test]
    fn counts_resolve_and_missing_pairs_are_zero() {
        let (e, d) = decode("deliveries:\n  a: { a: 1, b: 2 }\n  b: {}\n");
        assert!(d.is_empty(), "{d:?}");
        let e = e.unwrap();
        assert_eq!(e.count("a", "b"), 2);
        assert_eq!(e.count("b", "a"), 0);
        assert_eq!(e.at, Span::new(1, 1));
    }

    #[test]
    fn bad_names_and_counts_are_errors_at_their_place() {
        let (e, d) = decode("deliveries:\n  a: { x: 1, relay: 1, b: -1, a: 1.5 }\n");
        assert!(e.is_none());
        let at: Vec<(u32, u32)> = d.iter().map(|d| (d.span.line, d.span.column)).collect();
        assert!(at.contains(&(2, 8)), "{d:?}");
        assert!(at.contains(&(2, 14)), "{d:?}");
        assert!(at.contains(&(2, 27)), "{d:?}");
        assert!(at.contains(&(2, 34)), "{d:?}");
    }

    #[test]
    fn an_invalid_http_port_is_reported_once() {
        let text = "nodes:\n  a: { http: 80800 }\n  b: {}\nexpect:\n  deliveries:\n    a: { a: 1, b: 1 }\n";
        let checked = crate::check::check_str("t.yaml", "t", text.into(), &|_| None);
        let messages: Vec<&str> = checked.errors().map(|d| d.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].contains("port 80800 is out of range"));
        assert!(messages[1].contains("receiver `b` has no `http:` port"));
    }

    #[test]
    fn a_sidecar_needs_deliveries_and_nothing_else() {
        let (_, d) = decode("deliverys: {}\n");
        assert!(
            d.iter()
                .any(|d| d.message.contains("did you mean `deliveries`"))
        );
        assert!(
            d.iter()
                .any(|d| d.message.contains("needs a `deliveries:`"))
        );
    }
}
