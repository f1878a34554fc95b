//! `limits:` and `origins:` (top level: defaults for every node; per node:
//! overrides, field by field): how much a WebSocket client or a broker
//! outage may cost a node. Decoding, ranges and the merge into
//! [`model::Limits`]; the runtime enforces them (`node::ws`, `transport::redis`,
//! `transport::zmq`).

use super::decode::{Decoder, Spanned};
use super::diagnostic::Diagnostic;
use super::keys::LimitsKey;
use super::yaml::{Kind, Span, Value};
use crate::model::Limits;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use std::borrow::Cow;
use std::time::Duration;

/// Resource limits of a node (or, at the top level, of every node).
#[derive(Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Largest WebSocket message accepted, in bytes (16 B - 16 MiB); a bigger one closes that connection with 1009. Also the largest AMQP body delivered to the node: a bigger one is refused and counted. Default 65536.
    #[schemars(range(min = 16, max = 16777216))]
    pub max_message_bytes: Option<Spanned<u64>>,
    /// WebSocket connections a node accepts at once (1 - 1000000); beyond it the upgrade is answered 503. Default 10000.
    #[schemars(range(min = 1, max = 1000000))]
    pub max_connections: Option<Spanned<u64>>,
    /// Messages a client may fall behind (1 - 65536) before it is disconnected (1008). Default 1024.
    #[schemars(range(min = 1, max = 65536))]
    pub send_queue: Option<Spanned<u64>>,
    /// How often a ping is sent to each client. Default "30s".
    pub ping_interval: Option<Spanned<Millis>>,
    /// A client silent (no frame, no pong) for this long is dropped; longer than ping_interval. Default "75s".
    pub idle_timeout: Option<Spanned<Millis>>,
    /// Messages kept while the Redis link is down (0 - 1000000), published in order on reconnect; beyond it the oldest are dropped (counted). Default 1000.
    #[schemars(range(min = 0, max = 1000000))]
    pub outbox: Option<Spanned<u64>>,
    /// ZeroMQ high-water mark (1 - 1000000): messages queued per subscriber of the PUB, and received but not yet taken per SUB; beyond it new messages are dropped for that peer only (counted). Default 1000.
    #[schemars(range(min = 1, max = 1000000))]
    pub zmq_hwm: Option<Spanned<u64>>,
}

/// A duration: whole seconds, or a string such as "500ms", "30s", "2m".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Millis(pub u64);

impl JsonSchema for Millis {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Whole seconds, or a string such as \"500ms\", \"30s\", \"2m\".",
            "anyOf": [
                { "type": "integer", "minimum": 1 },
                { "type": "string", "pattern": "^[0-9]+ ?(ms|s|m)$" }
            ]
        })
    }
}

const DURATION_MIN: u64 = 10;
const DURATION_MAX: u64 = 3_600_000;

impl Decoder<'_> {
    pub(super) fn limits(&mut self, value: &Value) -> LimitsSpec {
        let mut limits = LimitsSpec::default();
        for (key, v) in self.fields::<LimitsKey>(value, "limits") {
            match key.value {
                LimitsKey::MaxMessageBytes => {
                    limits.max_message_bytes = self.bounded(v, 16, 16 << 20, "max_message_bytes")
                }
                LimitsKey::MaxConnections => {
                    limits.max_connections = self.bounded(v, 1, 1_000_000, "max_connections")
                }
                LimitsKey::SendQueue => {
                    limits.send_queue = self.bounded(v, 1, 65_536, "send_queue")
                }
                LimitsKey::PingInterval => limits.ping_interval = self.duration(v),
                LimitsKey::IdleTimeout => limits.idle_timeout = self.duration(v),
                LimitsKey::Outbox => limits.outbox = self.bounded(v, 0, 1_000_000, "outbox"),
                LimitsKey::ZmqHwm => limits.zmq_hwm = self.bounded(v, 1, 1_000_000, "zmq_hwm"),
            }
        }
        limits
    }

    /// `origins: [..]`: each `http(s)://host[:port]`, as browsers send it.
    pub(super) fn origins(&mut self, value: &Value) -> Option<Spanned<Vec<Spanned<String>>>> {
        let list = self.string_list(value, "origins")?;
        for item in &list.value {
            if let Err(error) = check_origin(&item.value) {
                self.error(item.span, error.to_string());
            }
        }
        Some(list)
    }

    fn bounded(&mut self, value: &Value, min: u64, max: u64, what: &str) -> Option<Spanned<u64>> {
        let n = self.integer(value)?;
        match u64::try_from(n.value) {
            Ok(v) if (min..=max).contains(&v) => Some(Spanned {
                value: v,
                span: n.span,
            }),
            _ => {
                self.error(
                    n.span,
                    format!("{what} {} is out of range: {min}-{max}", n.value),
                );
                None
            }
        }
    }

    fn duration(&mut self, value: &Value) -> Option<Spanned<Millis>> {
        let ms = match &value.kind {
            Kind::Int(n) => u64::try_from(*n).ok().and_then(|s| s.checked_mul(1000)),
            _ => {
                let text = self.string(value)?;
                match parse_duration(&text.value) {
                    Some(ms) => Some(ms),
                    None => {
                        self.error(
                            value.span,
                            format!(
                                "`{}` is not a duration: write seconds (30) or \"500ms\", \"30s\", \"2m\"",
                                text.value
                            ),
                        );
                        return None;
                    }
                }
            }
        };
        match ms {
            Some(ms) if (DURATION_MIN..=DURATION_MAX).contains(&ms) => Some(Spanned {
                value: Millis(ms),
                span: value.span,
            }),
            _ => {
                self.error(
                    value.span,
                    "the duration is out of range: 10ms to 1 hour".to_owned(),
                );
                None
            }
        }
    }
}

/// Milliseconds of "500ms", "30s", "2m" or "30" (seconds).
fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let n: u64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "s" => 1000,
        "ms" => 1,
        "m" => 60_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// Why an `origins:` entry is not an origin a browser sends.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
enum OriginError {
    #[error("origin `{0}` must start with http:// or https:// (like https://chat.example.com)")]
    Scheme(String),
    #[error("origin `{0}` must be scheme://host[:port], without a path")]
    NotBare(String),
}

fn check_origin(origin: &str) -> Result<(), OriginError> {
    // Any origin: the explicit opt-out of the same-origin default.
    if origin == "*" {
        return Ok(());
    }
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .ok_or_else(|| OriginError::Scheme(origin.to_owned()))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ', '@']) {
        return Err(OriginError::NotBare(origin.to_owned()));
    }
    Ok(())
}

/// The limits of one node: the defaults, then the top level, then the node's own.
pub fn resolve(
    top: Option<&LimitsSpec>,
    node: Option<&LimitsSpec>,
    top_origins: Option<&Spanned<Vec<Spanned<String>>>>,
    node_origins: Option<&Spanned<Vec<Spanned<String>>>>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Limits {
    let mut limits = Limits::default();
    // Where the effective ping_interval and idle_timeout were written, for the error.
    let mut ping_at: Option<Span> = None;
    let mut idle_at: Option<Span> = None;
    for spec in [top, node].into_iter().flatten() {
        let size = |v: &Option<Spanned<u64>>| v.as_ref().map(|s| s.value as usize);
        if let Some(v) = size(&spec.max_message_bytes) {
            limits.max_message_bytes = v;
        }
        if let Some(v) = size(&spec.max_connections) {
            limits.max_connections = v;
        }
        if let Some(v) = size(&spec.send_queue) {
            limits.send_queue = v;
        }
        if let Some(v) = size(&spec.outbox) {
            limits.outbox = v;
        }
        if let Some(v) = size(&spec.zmq_hwm) {
            limits.zmq_hwm = v;
        }
        if let Some(v) = &spec.ping_interval {
            limits.ping_interval = Duration::from_millis(v.value.0);
            ping_at = Some(v.span);
        }
        if let Some(v) = &spec.idle_timeout {
            limits.idle_timeout = Duration::from_millis(v.value.0);
            idle_at = Some(v.span);
        }
    }
    if limits.idle_timeout <= limits.ping_interval
        && let Some(span) = idle_at.max(ping_at)
    {
        let error = Diagnostic::error(
            span,
            format!(
                "idle_timeout ({:?}) must be longer than ping_interval ({:?}): a live client answers each ping",
                limits.idle_timeout, limits.ping_interval
            ),
        );
        // Top-level values are merged into every node: report them once.
        if !diagnostics.contains(&error) {
            diagnostics.push(error);
        }
    }
    if let Some(list) = node_origins.or(top_origins) {
        limits.origins = list.value.iter().map(|o| o.value.clone()).collect();
    }
    limits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(500));
        assert_eq!(parse_duration("30s"), Some(30_000));
        assert_eq!(parse_duration("2m"), Some(120_000));
        assert_eq!(parse_duration("7"), Some(7000));
        assert_eq!(parse_duration("1h"), None);
        assert_eq!(parse_duration("ms"), None);
    }

    #[test]
    fn origins() {
        assert!(check_origin("https://chat.example.com").is_ok());
        assert!(check_origin("http://127.0.0.1:8080").is_ok());
        assert_eq!(
            check_origin("chat.example.com"),
            Err(OriginError::Scheme("chat.example.com".into()))
        );
        assert_eq!(
            check_origin("https://x.com/path"),
            Err(OriginError::NotBare("https://x.com/path".into()))
        );
    }
}
