//! The file as written: the serde-free shape of a topology file, with the
//! position of every value, decoded from the YAML tree. Names are not yet
//! resolved and defaults not yet applied (that is `compile.rs`).
//!
//! The JSON Schema (`topo schema`) is generated from these same types.

use super::diagnostic::{Diagnostic, did_you_mean};
use super::expect::ExpectSpec;
use super::interpolate::interpolate;
use super::limits::LimitsSpec;
use super::yaml::{Kind, Span, Value};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use std::borrow::Cow;

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

/// A TCP port, or a `${VAR}` string that interpolates to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port(pub u16);

impl JsonSchema for Port {
    fn schema_name() -> Cow<'static, str> {
        "Port".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A TCP port (1-65535), or a string such as \"${PORT:-8080}\".",
            "anyOf": [
                { "type": "integer", "minimum": 1, "maximum": 65535 },
                { "type": "string" }
            ]
        })
    }
}

/// `pub:` is a port (bound on the node's host) or a full `tcp://host:port` endpoint.
#[derive(Clone, Debug, PartialEq)]
pub enum Listen {
    Port(u16),
    Endpoint(String),
}

impl JsonSchema for Listen {
    fn schema_name() -> Cow<'static, str> {
        "Listen".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A port bound on the node's host, or an endpoint such as \"tcp://0.0.0.0:5000\".",
            "anyOf": [
                { "type": "integer", "minimum": 1, "maximum": 65535 },
                { "type": "string" }
            ]
        })
    }
}

/// A topo topology file (see SPEC.md).
#[derive(Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(title = "topo topology", deny_unknown_fields)]
pub struct TopologySpec {
    /// Format version; only 1 exists.
    #[schemars(range(min = 1, max = 1))]
    pub version: Option<Spanned<u64>>,
    /// Defaults to the file name without its extension.
    pub name: Option<Spanned<String>>,
    /// Named Redis servers that nodes refer to.
    pub brokers: Option<Named<BrokerSpec>>,
    /// The chat servers, in order.
    pub nodes: Named<NodeSpec>,
    /// Defaults for every node's limits (a node's own `limits:` overrides them field by field).
    pub limits: Option<Spanned<LimitsSpec>>,
    /// Browser origins allowed to open a WebSocket on every node (a node's own list replaces it); absent: only the node's own origin; ["*"]: any.
    pub origins: Option<Spanned<Vec<Spanned<String>>>>,
    /// Deliveries `topo test` asserts; `topo up` ignores this section.
    pub expect: Option<Spanned<ExpectSpec>>,
}

/// A Redis server.
#[derive(Clone, Debug, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct BrokerSpec {
    /// `redis://[user[:password]@]host[:port][/db]` or `rediss://…` (TLS).
    pub url: Spanned<String>,
    /// For `rediss://`: a PEM file of the certificate authority to trust
    /// instead of the system's (relative to the topology file).
    pub ca: Option<Spanned<String>>,
}

/// One chat server: an HTTP/WebSocket endpoint and its links.
#[derive(Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct NodeSpec {
    /// Port of the HTTP server (chat page at /, WebSocket at /ws). Absent: no clients.
    pub http: Option<Spanned<Port>>,
    /// Address to bind; default 127.0.0.1.
    pub host: Option<Spanned<String>>,
    /// Forward what this node receives onto its other outbound links.
    pub relay: Option<Spanned<bool>>,
    /// ZeroMQ PUB/SUB links.
    pub zmq: Option<Spanned<ZmqSpec>>,
    /// Redis pub/sub links.
    pub redis: Option<Spanned<RedisSpec>>,
    /// This node's limits, over the top-level ones.
    pub limits: Option<Spanned<LimitsSpec>>,
    /// Browser origins allowed to open a WebSocket here (replaces the top-level list).
    pub origins: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ZmqSpec {
    /// The PUB socket: a port on the node's host, or "tcp://host:port".
    #[schemars(rename = "pub")]
    pub publish: Option<Spanned<Listen>>,
    /// Node names (their PUB endpoint) or endpoints "tcp://host:port" to subscribe to.
    pub sub: Option<Spanned<Vec<Spanned<String>>>>,
    /// Prefix of every published frame; default "chat".
    pub topic: Option<Spanned<String>>,
    /// Subscription prefix of this node's SUB sockets; default "chat".
    pub filter: Option<Spanned<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RedisSpec {
    /// A name from `brokers:`, or a URL.
    pub broker: Option<Spanned<String>>,
    /// Channel this node publishes on; default "chat_messages".
    pub publish: Option<Spanned<String>>,
    /// Exact channels (SUBSCRIBE); default [<publish>].
    pub subscribe: Option<Spanned<Vec<Spanned<String>>>>,
    /// Glob patterns (PSUBSCRIBE); default [].
    pub patterns: Option<Spanned<Vec<Spanned<String>>>>,
}

/// Walks the YAML tree into a [`TopologySpec`], collecting every problem.
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

    pub fn topology(&mut self, doc: &Value) -> TopologySpec {
        let mut spec = TopologySpec::default();
        let mut saw_nodes = false;
        for (key, value) in self.fields(
            doc,
            "the topology",
            &[
                "version", "name", "brokers", "nodes", "limits", "origins", "expect",
            ],
        ) {
            match key.value.as_str() {
                "limits" => {
                    spec.limits = Some(Spanned {
                        value: self.limits(value),
                        span: key.span,
                    })
                }
                "origins" => spec.origins = self.origins(value),
                "version" => {
                    spec.version = self.integer(value).map(|v| Spanned {
                        value: u64::try_from(v.value).unwrap_or(u64::MAX),
                        span: v.span,
                    })
                }
                "name" => spec.name = self.string(value),
                "brokers" => spec.brokers = Some(self.named(value, "brokers", Self::broker)),
                "nodes" => {
                    saw_nodes = true;
                    spec.nodes = self.named(value, "nodes", Self::node);
                }
                "expect" => {
                    spec.expect = Some(Spanned {
                        value: self.expect(value),
                        span: key.span,
                    })
                }
                other => unreachable_key(other),
            }
        }
        if !saw_nodes && matches!(doc.kind, Kind::Map(_) | Kind::Null) {
            self.error(
                doc.span,
                "the file has no `nodes:` section; a topology needs at least one node",
            );
        }
        spec
    }

    fn broker(&mut self, value: &Value) -> Option<BrokerSpec> {
        let (mut url, mut ca) = (None, None);
        for (key, v) in self.fields(value, "a broker", &["url", "ca"]) {
            match key.value.as_str() {
                "url" => url = self.string(v),
                "ca" => ca = self.string(v),
                other => unreachable_key(other),
            }
        }
        match url {
            Some(url) => Some(BrokerSpec { url, ca }),
            None => {
                if matches!(value.kind, Kind::Map(_) | Kind::Null) {
                    self.error(
                        value.span,
                        "a broker needs a `url:` (for example url: \"redis://127.0.0.1:6379\")",
                    );
                }
                None
            }
        }
    }

    fn node(&mut self, value: &Value) -> Option<NodeSpec> {
        let mut node = NodeSpec::default();
        if matches!(value.kind, Kind::Null) {
            return Some(node);
        }
        let allowed = ["http", "host", "relay", "zmq", "redis", "limits", "origins"];
        for (key, v) in self.fields(value, "a node", &allowed) {
            match key.value.as_str() {
                "limits" => {
                    node.limits = Some(Spanned {
                        value: self.limits(v),
                        span: key.span,
                    })
                }
                "origins" => node.origins = self.origins(v),
                "http" => node.http = self.port(v),
                "host" => node.host = self.string(v),
                "relay" => node.relay = self.boolean(v),
                "zmq" => {
                    node.zmq = Some(Spanned {
                        value: self.zmq(v),
                        span: key.span,
                    })
                }
                "redis" => {
                    node.redis = Some(Spanned {
                        value: self.redis(v),
                        span: key.span,
                    })
                }
                other => unreachable_key(other),
            }
        }
        Some(node)
    }

    fn zmq(&mut self, value: &Value) -> ZmqSpec {
        let mut zmq = ZmqSpec::default();
        for (key, v) in self.fields(value, "a zmq section", &["pub", "sub", "topic", "filter"]) {
            match key.value.as_str() {
                "pub" => zmq.publish = self.listen(v),
                "sub" => zmq.sub = self.string_list(v, "node names or endpoints"),
                "topic" => zmq.topic = self.string(v),
                "filter" => zmq.filter = self.string(v),
                other => unreachable_key(other),
            }
        }
        zmq
    }

    fn redis(&mut self, value: &Value) -> RedisSpec {
        let mut redis = RedisSpec::default();
        let allowed = ["broker", "publish", "subscribe", "patterns"];
        for (key, v) in self.fields(value, "a redis section", &allowed) {
            match key.value.as_str() {
                "broker" => redis.broker = self.string(v),
                "publish" => redis.publish = self.string(v),
                "subscribe" => redis.subscribe = self.string_list(v, "channel names"),
                "patterns" => redis.patterns = self.string_list(v, "glob patterns"),
                other => unreachable_key(other),
            }
        }
        redis
    }

    /// The entries of a mapping whose keys are among `allowed`; reports the
    /// rest (unknown, duplicate, not a string) and a mapping of the wrong type.
    pub(super) fn fields<'v>(
        &mut self,
        value: &'v Value,
        what: &str,
        allowed: &[&str],
    ) -> Vec<(Spanned<String>, &'v Value)> {
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
            if !allowed.contains(&name.value.as_str()) {
                let hint = match did_you_mean(&name.value, allowed.iter().copied()) {
                    Some(s) => format!("; did you mean `{s}`?"),
                    None => format!("; expected one of: {}", allowed.join(", ")),
                };
                self.error(
                    name.span,
                    format!("unknown key `{}` in {what}{hint}", name.value),
                );
                continue;
            }
            if let Some(first) = seen.iter().find(|s| s.value == name.value) {
                let at = first.span;
                self.error(
                    name.span,
                    format!("duplicate key `{}` (first at line {})", name.value, at.line),
                );
                continue;
            }
            seen.push(name.clone());
            out.push((name, v));
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
        for (key, v) in entries {
            let Some(name) = self.key(key) else { continue };
            if let Some((first, _)) = out.0.iter().find(|(n, _)| n.value == name.value) {
                let line = first.span.line;
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
                out.0.push((name, item));
            }
        }
        out
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
            Err(message) => {
                self.error(value.span, message);
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

    fn port(&mut self, value: &Value) -> Option<Spanned<Port>> {
        let n = self.integer(value)?;
        match u16::try_from(n.value) {
            Ok(port) if port >= 1 => Some(Spanned {
                value: Port(port),
                span: n.span,
            }),
            _ => {
                self.error(
                    n.span,
                    format!("port {} is out of range: ports are 1-65535", n.value),
                );
                None
            }
        }
    }

    fn listen(&mut self, value: &Value) -> Option<Spanned<Listen>> {
        match &value.kind {
            Kind::Int(_) => self.port(value).map(|p| Spanned {
                value: Listen::Port(p.value.0),
                span: p.span,
            }),
            _ => {
                let text = self.string(value)?;
                match text.value.trim().parse::<i128>() {
                    Ok(n) => match u16::try_from(n) {
                        Ok(port) if port >= 1 => Some(Spanned {
                            value: Listen::Port(port),
                            span: text.span,
                        }),
                        _ => {
                            self.error(
                                text.span,
                                format!("port {n} is out of range: ports are 1-65535"),
                            );
                            None
                        }
                    },
                    Err(_) => Some(Spanned {
                        value: Listen::Endpoint(text.value),
                        span: text.span,
                    }),
                }
            }
        }
    }

    fn boolean(&mut self, value: &Value) -> Option<Spanned<bool>> {
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
}

/// The arm after every key a decoder allows: `fields` returns only allowed
/// keys, so reaching it means a key was allowed without an arm of its own.
/// No catch-all arm decodes a field: a key can never land in the wrong one.
pub(super) fn unreachable_key(key: &str) {
    debug_assert!(false, "key `{key}` is allowed but has no arm");
}

pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}
