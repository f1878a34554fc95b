//! The decoder's primitives: a value with its position ([`Spanned`]), and
//! the scalar, list and mapping readers that collect every problem instead
//! of stopping at the first. The sections of a file (`spec.rs`,
//! `limits.rs`) are decoded on top of these; this module knows none of them.

use super::diagnostic::{Diagnostic, did_you_mean};
use super::interpolate::interpolate;
use super::keys::Keys;
use super::yaml::{Kind, Span, Value};
use schemars::json_schema;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use std::borrow::Cow;
use std::collections::HashMap;

/// A value and the position it was written at.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

impl<T: JsonSchema> JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A YAML mapping from names to `T`, in file order, with the names' positions.
#[derive(Clone, Debug, PartialEq)]
pub struct Named<T>(pub Vec<(Spanned<String>, T)>);

impl<T> Default for Named<T> {
    fn default() -> Self {
        Named(Vec::new())
    }
}

impl<T: JsonSchema> JsonSchema for Named<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        format!("Named_{}", T::schema_name()).into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let item = generator.subschema_for::<T>();
        json_schema!({
            "type": "object",
            "propertyNames": { "pattern": NAME_PATTERN },
            "additionalProperties": item,
        })
    }
}

/// What a node or broker name may look like (so it is safe in URLs, DOT and Mermaid).
pub const NAME_PATTERN: &str = "^[A-Za-z0-9_][A-Za-z0-9_.-]*$";

/// Walks the YAML tree into a `spec::TopologySpec`, collecting every problem.
pub struct Decoder<'e> {
    pub diagnostics: Vec<Diagnostic>,
    env: &'e dyn Fn(&str) -> Option<String>,
}

impl<'e> Decoder<'e> {
    pub fn new(env: &'e dyn Fn(&str) -> Option<String>) -> Self {
        Decoder {
            diagnostics: Vec::new(),
            env,
        }
    }

    pub(super) fn error(&mut self, span: Span, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::error(span, message));
    }

    /// The entries of a mapping whose keys are among `K`, each with its key
    /// as a `K`; reports the rest (unknown, duplicate, not a string) and a
    /// mapping of the wrong type.
    pub(super) fn fields<'v, K: Keys>(
        &mut self,
        value: &'v Value,
        what: &str,
    ) -> Vec<(Spanned<K>, &'v Value)> {
        let entries = match &value.kind {
            Kind::Map(entries) => entries,
            Kind::Null => return Vec::new(),
            other => {
                self.error(
                    value.span,
                    format!("{what} must be a mapping, found {}", other.describe()),
                );
                return Vec::new();
            }
        };
        let mut seen: Vec<Spanned<String>> = Vec::new();
        let mut out = Vec::new();
        for (key, v) in entries {
            let Some(name) = self.key(key) else { continue };
            let Some(parsed) = K::parse(&name.value) else {
                let hint = match did_you_mean(&name.value, K::names()) {
                    Some(s) => format!("; did you mean `{s}`?"),
                    None => format!(
                        "; expected one of: {}",
                        K::names().collect::<Vec<_>>().join(", ")
                    ),
                };
                self.error(
                    name.span,
                    format!("unknown key `{}` in {what}{hint}", name.value),
                );
                continue;
            };
            if let Some(first) = seen.iter().find(|s| s.value == name.value) {
                let at = first.span;
                self.error(
                    name.span,
                    format!("duplicate key `{}` (first at line {})", name.value, at.line),
                );
                continue;
            }
            out.push((
                Spanned {
                    value: parsed,
                    span: name.span,
                },
                v,
            ));
            seen.push(name);
        }
        out
    }

    pub(super) fn key(&mut self, key: &Value) -> Option<Spanned<String>> {
        match &key.kind {
            Kind::Str(s) => Some(Spanned {
                value: s.clone(),
                span: key.span,
            }),
            Kind::Int(n) => Some(Spanned {
                value: n.to_string(),
                span: key.span,
            }),
            Kind::Bool(b) => Some(Spanned {
                value: b.to_string(),
                span: key.span,
            }),
            other => {
                self.error(
                    key.span,
                    format!("a key must be a name, found {}", other.describe()),
                );
                None
            }
        }
    }

    /// A string scalar, after `${VAR}` interpolation. Numbers and booleans
    /// are taken as their text (`topic: 42` is the topic "42").
    pub(super) fn string(&mut self, value: &Value) -> Option<Spanned<String>> {
        let raw = match &value.kind {
            Kind::Str(s) => s.clone(),
            Kind::Int(n) => n.to_string(),
            Kind::Bool(b) => b.to_string(),
            Kind::Float(f) => f.to_string(),
            other => {
                self.error(
                    value.span,
                    format!("expected a string, found {}", other.describe()),
                );
                return None;
            }
        };
        match interpolate(&raw, self.env) {
            Ok(text) => Some(Spanned {
                value: text,
                span: value.span,
            }),
            Err(error) => {
                self.error(value.span, error.to_string());
                None
            }
        }
    }

    pub(super) fn integer(&mut self, value: &Value) -> Option<Spanned<i128>> {
        match &value.kind {
            Kind::Int(n) => Some(Spanned {
                value: *n,
                span: value.span,
            }),
            Kind::Str(_) => {
                let text = self.string(value)?;
                match text.value.trim().parse::<i128>() {
                    Ok(n) => Some(Spanned {
                        value: n,
                        span: value.span,
                    }),
                    Err(_) => {
                        self.error(
                            value.span,
                            format!("expected an integer, found \"{}\"", text.value),
                        );
                        None
                    }
                }
            }
            other => {
                self.error(
                    value.span,
                    format!("expected an integer, found {}", other.describe()),
                );
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, value: &Value) -> Option<Spanned<bool>> {
        match &value.kind {
            Kind::Bool(b) => Some(Spanned {
                value: *b,
                span: value.span,
            }),
            other => {
                self.error(
                    value.span,
                    format!("expected true or false, found {}", other.describe()),
                );
                None
            }
        }
    }

    pub(super) fn string_list(
        &mut self,
        value: &Value,
        what: &str,
    ) -> Option<Spanned<Vec<Spanned<String>>>> {
        match &value.kind {
            Kind::Seq(items) => {
                let list = items.iter().filter_map(|item| self.string(item)).collect();
                Some(Spanned {
                    value: list,
                    span: value.span,
                })
            }
            Kind::Null => Some(Spanned {
                value: Vec::new(),
                span: value.span,
            }),
            other => {
                self.error(
                    value.span,
                    format!(
                        "expected a list of {what} (like [a, b]), found {}",
                        other.describe()
                    ),
                );
                None
            }
        }
    }

    pub(super) fn named<T>(
        &mut self,
        value: &Value,
        section: &str,
        decode: fn(&mut Self, &Value) -> Option<T>,
    ) -> Named<T> {
        let mut out = Named(Vec::new());
        let entries = match &value.kind {
            Kind::Map(entries) => entries,
            Kind::Null => return out,
            other => {
                self.error(
                    value.span,
                    format!(
                        "`{section}:` must be a mapping of names, found {}",
                        other.describe()
                    ),
                );
                return out;
            }
        };
        // Where each name was first seen: a section can hold 100,000 names.
        let mut first_at: HashMap<String, u32> = HashMap::with_capacity(entries.len());
        for (key, v) in entries {
            let Some(name) = self.key(key) else { continue };
            if let Some(&line) = first_at.get(&name.value) {
                self.error(
                    name.span,
                    format!(
                        "duplicate key `{}` in {section} (first at line {line})",
                        name.value
                    ),
                );
                continue;
            }
            if !valid_name(&name.value) {
                self.error(
                    name.span,
                    format!(
                        "`{}` is not a valid name: use letters, digits, `_`, `.` and `-`",
                        name.value
                    ),
                );
            }
            if let Some(item) = decode(self, v) {
                first_at.insert(name.value.clone(), name.span.line);
                out.0.push((name, item));
            }
        }
        out
    }
}

pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}
