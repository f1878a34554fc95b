//! A fast path for the common topology file: builds the same spanned tree
//! as `yaml::parse` straight from granit-parser's events, skipping
//! serde-saphyr's event layer and the serde round trip per value.
//!
//! It only takes files it is sure to read exactly as serde-saphyr does, and
//! answers `None` ("not mine") for anything else: anchors, aliases, tags,
//! merge keys, directives, a second document, deep nesting, any parse error
//! and any plain scalar whose typing it does not know for certain. The
//! caller then runs the serde-saphyr path, so error messages and odd cases
//! keep a single source. `yaml::differential` checks that both agree.

use super::{Kind, Span, Value};
use granit_parser::{Event, Parser, ScalarStyle};

/// Collections nested deeper than this are left to serde-saphyr, whose
/// budget refuses depth 24 (a topology is six levels deep).
const MAX_DEPTH: usize = 20;

/// Parses `text` when it is in the common subset; `allowance` is the event,
/// node and scalar-byte budget the serde-saphyr path is given.
pub(super) fn parse(text: &str, allowance: usize) -> Option<Value> {
    let mut parser = Parser::new_from_str_with_options(text, parser_options());
    let mut builder = Builder {
        stack: Vec::new(),
        root: None,
    };
    // Half the serde-saphyr allowance: a file near its limits is left to it,
    // so that its refusal (and message) stays the only one.
    let limit = allowance / 2;
    let (mut events, mut scalar_bytes) = (0usize, 0usize);
    let mut documents = 0;
    let mut in_document = false;
    for item in parser.by_ref() {
        let (event, span) = item.ok()?;
        events += 1;
        if events > limit {
            return None;
        }
        let at = Span::new(to_u32(span.start.line()), to_u32(span.start.col() + 1));
        match event {
            Event::StreamStart | Event::StreamEnd | Event::Comment(..) => {}
            Event::DocumentStart(_, version) => {
                documents += 1;
                if version.is_some() || documents > 1 {
                    return None;
                }
                in_document = true;
            }
            Event::DocumentEnd => in_document = false,
            Event::Scalar(text, style, anchor, tag) => {
                if anchor != 0 || tag.is_some() || !in_document {
                    return None;
                }
                scalar_bytes += text.len();
                if scalar_bytes > limit {
                    return None;
                }
                let kind = match style {
                    ScalarStyle::Plain => resolve_plain(&text)?,
                    _ => Kind::Str(text.into_owned()),
                };
                builder.finish(Value { span: at, kind })?;
            }
            Event::SequenceStart(_, anchor, ref tag) | Event::MappingStart(_, anchor, ref tag) => {
                if anchor != 0 || tag.is_some() || !in_document {
                    return None;
                }
                if builder.stack.len() >= MAX_DEPTH {
                    return None;
                }
                let is_map = matches!(event, Event::MappingStart(..));
                builder.stack.push(Open {
                    span: at,
                    items: Vec::new(),
                    entries: if is_map { Some(Vec::new()) } else { None },
                    key: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let open = builder.stack.pop()?;
                let kind = match open.entries {
                    Some(entries) if open.key.is_none() => Kind::Map(entries),
                    None => Kind::Seq(open.items),
                    Some(_) => return None,
                };
                builder.finish(Value {
                    span: open.span,
                    kind,
                })?;
            }
            // Aliases, anchor names and any event a later parser adds.
            _ => return None,
        }
    }
    if documents != 1 || in_document || !builder.stack.is_empty() {
        return None;
    }
    builder.root
}

/// The options serde-saphyr gives the parser for topo's budget, so that both
/// paths accept and refuse the same texts.
fn parser_options() -> granit_parser::Options {
    let mut options = granit_parser::Options::default();
    options.simple_key_max_lookahead = 1024;
    options.flow_nesting_limit = 24;
    options.block_nesting_limit = options.block_nesting_limit.max(25);
    options.emit_comments = true;
    options.max_buffered_comment_events = 32;
    options.strict_indentation = false;
    options.bom_inside_document_as_content = false;
    options
}

/// A collection being read: a sequence (`entries` is `None`) or a mapping
/// with its pending key.
struct Open {
    span: Span,
    items: Vec<Value>,
    entries: Option<Vec<(Value, Value)>>,
    key: Option<Value>,
}

struct Builder {
    stack: Vec<Open>,
    root: Option<Value>,
}

impl Builder {
    /// Places a complete value in its parent; `None` for what the fast path
    /// leaves to serde-saphyr (a collection or merge key as a mapping key).
    fn finish(&mut self, value: Value) -> Option<()> {
        let Some(open) = self.stack.last_mut() else {
            if self.root.is_some() {
                return None;
            }
            self.root = Some(value);
            return Some(());
        };
        match &mut open.entries {
            None => open.items.push(value),
            Some(entries) => match open.key.take() {
                Some(key) => entries.push((key, value)),
                None => {
                    match &value.kind {
                        Kind::Seq(_) | Kind::Map(_) => return None,
                        Kind::Str(s) if s == "<<" => return None,
                        _ => {}
                    }
                    open.key = Some(value);
                }
            },
        }
        Some(())
    }
}

/// The type serde-saphyr gives a plain scalar under topo's options (YAML
/// 1.2 core schema, strict booleans), for the spellings known to match;
/// `None` for the rest.
fn resolve_plain(text: &str) -> Option<Kind> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Kind::Null),
        "true" | "True" | "TRUE" => return Some(Kind::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Kind::Bool(false)),
        _ => {}
    }
    let bytes = text.as_bytes();
    // serde-saphyr trims these before typing; a plain scalar never carries
    // them, but if one did the typing would differ from ours.
    let padded = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    if bytes.first().is_some_and(padded) || bytes.last().is_some_and(padded) {
        return None;
    }
    match bytes[0] {
        b'0'..=b'9' | b'-' | b'+' | b'.' => resolve_numeric(text),
        // Neither an integer nor a float can start with anything else: Rust's
        // float syntax also reads `inf` and `nan`, but those are not finite,
        // and serde-saphyr keeps them as strings.
        _ => Some(Kind::Str(text.to_owned())),
    }
}

/// Plain decimal integers and `digits.digits` floats; text with a character
/// no number can hold (an address with a port, a path) is a string.
fn resolve_numeric(text: &str) -> Option<Kind> {
    let bytes = text.as_bytes();
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let digits = unsigned.as_bytes();
    if !digits.is_empty() && digits.len() <= 18 && digits.iter().all(u8::is_ascii_digit) {
        if digits[0] == b'0' && digits.len() > 1 {
            return None;
        }
        return text.parse::<i64>().ok().map(|n| Kind::Int(n.into()));
    }
    if let Some((whole, fraction)) = unsigned.split_once('.') {
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if all_digits(whole) && all_digits(fraction) && unsigned.len() <= 30 {
            let value = text.parse::<f64>().ok()?;
            return value.is_finite().then_some(Kind::Float(value));
        }
    }
    let numeric_char = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-');
    if bytes[0].is_ascii_digit() && !bytes.iter().all(numeric_char) {
        return Some(Kind::Str(text.to_owned()));
    }
    None
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
