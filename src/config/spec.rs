//! The file as written: the serde-free shape of a topology file, with the
//! position of every value, decoded from the YAML tree. Names are not yet
//! resolved and defaults not yet applied (that is `compile.rs`).
//!
//! The JSON Schema (`topo schema`) is generated from these same types.

pub use super::decode::{Decoder, NAME_PATTERN, Named, Spanned, valid_name};
use super::expect::ExpectSpec;
use super::keys::{AmqpKey, BrokerKey, NatsKey, NodeKey, RedisKey, TopologyKey, ZmqKey};
use super::limits::LimitsSpec;
use super::yaml::{Kind, Value};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use std::borrow::Cow;

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

/// A topo topology file (see docs/topology-format.md).
#[derive(Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(title = "topo topology", deny_unknown_fields)]
pub struct TopologySpec {
    /// Format version; only 1 exists.
    #[schemars(range(min = 1, max = 1))]
    pub version: Option<Spanned<u64>>,
    /// Defaults to the file name without its extension.
    pub name: Option<Spanned<String>>,
    /// Named Redis and AMQP (RabbitMQ) servers that nodes refer to.
    /// Named Redis servers and NATS servers or clusters that nodes refer to.
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

/// A Redis or AMQP (RabbitMQ) server.
/// A Redis server, or a NATS server or cluster.
#[derive(Clone, Debug, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct BrokerSpec {
    /// `redis://[user[:password]@]host[:port][/db]` or `rediss://…` (TLS);
    /// a Redis Cluster: `redis+cluster://[user[:password]@]host:port,host:port,…`
    /// (its seed nodes) or `rediss+cluster://…`;
    /// `amqp://[user[:password]@]host[:port][/vhost]` or `amqps://…` (TLS);
    /// or NATS: `nats://[user:password@|token@]host[:port]`, `tls://…` (TLS),
    /// several servers of one cluster separated by commas.
    pub url: Spanned<String>,
    /// For `rediss://`, `rediss+cluster://`, `amqps://` and `tls://`: a PEM file of the certificate authority to trust
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
    /// An AMQP (RabbitMQ) exchange and this node's queue on it.
    pub amqp: Option<Spanned<AmqpSpec>>,
    /// NATS subjects and queue groups.
    pub nats: Option<Spanned<NatsSpec>>,
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
    /// Glob patterns (PSUBSCRIBE); default []. Not with `sharded`.
    pub patterns: Option<Spanned<Vec<Spanned<String>>>>,
    /// Sharded pub/sub on a Redis Cluster broker: SPUBLISH and SSUBSCRIBE
    /// instead of PUBLISH and SUBSCRIBE; default false.
    pub sharded: Option<Spanned<bool>>,
}

/// A node's link to an AMQP exchange: it publishes there and consumes its own queue bound to it.
#[derive(Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct AmqpSpec {
    /// A name from `brokers:` (an amqp:// URL), or an amqp:// URL.
    pub broker: Option<Spanned<String>>,
    /// The exchange, declared by topo if absent; default "chat".
    pub exchange: Option<Spanned<String>>,
    /// The exchange type; default fanout.
    #[schemars(rename = "type")]
    pub kind: Option<Spanned<ExchangeType>>,
    /// Routing key of what this node's clients send (topic and direct only); default "chat".
    pub publish: Option<Spanned<String>>,
    /// Binding keys of this node's queue (topic and direct only); default [<publish>].
    pub bind: Option<Spanned<Vec<Spanned<String>>>>,
    /// A named durable queue: messages wait there while the node is down or has no client.
    /// Absent: an exclusive queue that is deleted with the node's connection.
    pub queue: Option<Spanned<String>>,
    /// A durable queue's bound (RabbitMQ's x-max-length); beyond, the oldest are dropped. Default 100000.
    #[schemars(range(min = 1, max = 100_000_000))]
    pub max_length: Option<Spanned<u64>>,
    /// Unacknowledged messages in flight to this node (basic.qos); default 100.
    #[schemars(range(min = 1, max = 65535))]
    pub prefetch: Option<Spanned<u64>>,
}

/// `type:` of an AMQP exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(rename_all = "lowercase")]
pub enum ExchangeType {
    Fanout,
    Topic,
    Direct,
}

#[derive(Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct NatsSpec {
    /// A NATS broker's name from `brokers:`, or a URL (nats://host:port, several comma-separated).
    pub broker: Option<Spanned<String>>,
    /// Subject this node publishes on (no wildcards); default "chat_messages".
    pub publish: Option<Spanned<String>>,
    /// Subscription filters, `*` for one token and `>` for the rest; default [<publish>].
    pub subscribe: Option<Spanned<Vec<Spanned<String>>>>,
    /// Queue group: each message matching it goes to exactly one of its members.
    pub queue: Option<Spanned<String>>,
}

impl Decoder<'_> {
    pub fn topology(&mut self, doc: &Value) -> TopologySpec {
        let mut spec = TopologySpec::default();
        let mut saw_nodes = false;
        for (key, value) in self.fields::<TopologyKey>(doc, "the topology") {
            match key.value {
                TopologyKey::Limits => {
                    spec.limits = Some(Spanned {
                        value: self.limits(value),
                        span: key.span,
                    })
                }
                TopologyKey::Origins => spec.origins = self.origins(value),
                TopologyKey::Version => {
                    spec.version = self.integer(value).map(|v| Spanned {
                        value: u64::try_from(v.value).unwrap_or(u64::MAX),
                        span: v.span,
                    })
                }
                TopologyKey::Name => spec.name = self.string(value),
                TopologyKey::Brokers => {
                    spec.brokers = Some(self.named(value, "brokers", Self::broker))
                }
                TopologyKey::Nodes => {
                    saw_nodes = true;
                    spec.nodes = self.named(value, "nodes", Self::node);
                }
                TopologyKey::Expect => {
                    spec.expect = Some(Spanned {
                        value: self.expect(value),
                        span: key.span,
                    })
                }
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
        for (key, v) in self.fields::<BrokerKey>(value, "a broker") {
            match key.value {
                BrokerKey::Url => url = self.string(v),
                BrokerKey::Ca => ca = self.string(v),
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
        for (key, v) in self.fields::<NodeKey>(value, "a node") {
            match key.value {
                NodeKey::Limits => {
                    node.limits = Some(Spanned {
                        value: self.limits(v),
                        span: key.span,
                    })
                }
                NodeKey::Origins => node.origins = self.origins(v),
                NodeKey::Http => node.http = self.port(v),
                NodeKey::Host => node.host = self.string(v),
                NodeKey::Relay => node.relay = self.boolean(v),
                NodeKey::Zmq => {
                    node.zmq = Some(Spanned {
                        value: self.zmq(v),
                        span: key.span,
                    })
                }
                NodeKey::Redis => {
                    node.redis = Some(Spanned {
                        value: self.redis(v),
                        span: key.span,
                    })
                }
                NodeKey::Amqp => {
                    node.amqp = Some(Spanned {
                        value: self.amqp(v),
                        span: key.span,
                    })
                }
                NodeKey::Nats => {
                    node.nats = Some(Spanned {
                        value: self.nats(v),
                        span: key.span,
                    })
                }
            }
        }
        Some(node)
    }

    fn zmq(&mut self, value: &Value) -> ZmqSpec {
        let mut zmq = ZmqSpec::default();
        for (key, v) in self.fields::<ZmqKey>(value, "a zmq section") {
            match key.value {
                ZmqKey::Pub => zmq.publish = self.listen(v),
                ZmqKey::Sub => zmq.sub = self.string_list(v, "node names or endpoints"),
                ZmqKey::Topic => zmq.topic = self.string(v),
                ZmqKey::Filter => zmq.filter = self.string(v),
            }
        }
        zmq
    }

    fn redis(&mut self, value: &Value) -> RedisSpec {
        let mut redis = RedisSpec::default();
        for (key, v) in self.fields::<RedisKey>(value, "a redis section") {
            match key.value {
                RedisKey::Broker => redis.broker = self.string(v),
                RedisKey::Publish => redis.publish = self.string(v),
                RedisKey::Subscribe => redis.subscribe = self.string_list(v, "channel names"),
                RedisKey::Patterns => redis.patterns = self.string_list(v, "glob patterns"),
                RedisKey::Sharded => redis.sharded = self.boolean(v),
            }
        }
        redis
    }

    fn amqp(&mut self, value: &Value) -> AmqpSpec {
        let mut amqp = AmqpSpec::default();
        for (key, v) in self.fields::<AmqpKey>(value, "an amqp section") {
            match key.value {
                AmqpKey::Broker => amqp.broker = self.string(v),
                AmqpKey::Exchange => amqp.exchange = self.string(v),
                AmqpKey::Type => amqp.kind = self.exchange_type(v),
                AmqpKey::Publish => amqp.publish = self.string(v),
                AmqpKey::Bind => amqp.bind = self.string_list(v, "binding keys"),
                AmqpKey::Queue => amqp.queue = self.string(v),
                AmqpKey::MaxLength => amqp.max_length = self.whole(v),
                AmqpKey::Prefetch => amqp.prefetch = self.whole(v),
            }
        }
        amqp
    }

    fn exchange_type(&mut self, value: &Value) -> Option<Spanned<ExchangeType>> {
        let text = self.string(value)?;
        let kind = match text.value.as_str() {
            "fanout" => ExchangeType::Fanout,
            "topic" => ExchangeType::Topic,
            "direct" => ExchangeType::Direct,
            other => {
                self.error(
                    text.span,
                    format!("unknown exchange type `{other}`: write fanout, topic or direct"),
                );
                return None;
            }
        };
        Some(Spanned {
            value: kind,
            span: text.span,
        })
    }

    /// A whole number ≥ 0 (range checks are the compiler's).
    fn whole(&mut self, value: &Value) -> Option<Spanned<u64>> {
        let n = self.integer(value)?;
        match u64::try_from(n.value) {
            Ok(v) => Some(Spanned {
                value: v,
                span: n.span,
            }),
            Err(_) => {
                self.error(
                    n.span,
                    format!("{} is negative: write a whole number", n.value),
                );
                None
            }
        }
    }

    fn nats(&mut self, value: &Value) -> NatsSpec {
        let mut nats = NatsSpec::default();
        for (key, v) in self.fields::<NatsKey>(value, "a nats section") {
            match key.value {
                NatsKey::Broker => nats.broker = self.string(v),
                NatsKey::Publish => nats.publish = self.string(v),
                NatsKey::Subscribe => nats.subscribe = self.string_list(v, "subjects"),
                NatsKey::Queue => nats.queue = self.string(v),
            }
        }
        nats
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
}

/// Every node of the file and whether it has an HTTP server. A node whose
/// `http:` is written but invalid counts as having one: its own error says
/// what is wrong, and a second one here would only repeat it.
pub fn http_nodes<'s>(spec: &'s TopologySpec, doc: &Value) -> Vec<(&'s str, bool)> {
    let written = |node: &str| {
        entry(doc, "nodes")
            .and_then(|nodes| entry(nodes, node))
            .is_some_and(|n| entry(n, "http").is_some())
    };
    spec.nodes
        .0
        .iter()
        .map(|(name, node)| {
            let name = name.value.as_str();
            (name, node.http.is_some() || written(name))
        })
        .collect()
}

/// The value of `key` in a mapping.
fn entry<'v>(map: &'v Value, key: &str) -> Option<&'v Value> {
    match &map.kind {
        Kind::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(&k.kind, Kind::Str(s) if s == key))
            .map(|(_, v)| v),
        _ => None,
    }
}
