//! The `/healthz` contract: what a node answers, and what the admin view and
//! `bench --startup` read back. One set of types for the producer and every
//! consumer, so that a link's kind and state cross the wire as enums.
//! A leaf: `transport` re-exports the link enums, `node::ws` serves them.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A node's `/healthz`. A field missing from an answer reads as empty or 0.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Health {
    pub node: String,
    /// The reload generation that started or last rewired the node.
    pub generation: u64,
    /// WebSocket clients connected now.
    pub clients: u64,
    pub links: Vec<HealthLink>,
    /// See `transport::Counters`.
    pub messages: Messages,
    /// The process serving the node: `topo up`'s own, or under `--process`
    /// the node's child (how tests and scripts find the child to signal).
    pub pid: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Messages {
    #[serde(rename = "in")]
    pub incoming: u64,
    #[serde(rename = "out")]
    pub outgoing: u64,
}

/// One link of a node (see `transport::LinkStatus`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthLink {
    pub kind: LinkKind,
    /// ZeroMQ links: the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Redis and NATS links: the redacted broker URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    pub state: LinkState,
    #[serde(default)]
    pub sent: u64,
    #[serde(default)]
    pub received: u64,
    /// ZeroMQ only: subscribers connected now (PUB) or connections up (SUB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<u64>,
    /// ZeroMQ: peers refused for a protocol violation. AMQP: deliveries
    /// refused (body over `limits.max_message_bytes`, or not UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<u64>,
    /// ZeroMQ: messages a full per-subscriber queue (HWM) dropped. AMQP:
    /// messages `max_length` dropped from the node's durable queue (0 for
    /// an exclusive queue, whose drops are not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
    /// Redis and NATS: `received` by the subscription that delivered it
    /// (`chan`, `psubscribe pat*`; a NATS filter), in subscription order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<IndexMap<String, u64>>,
    /// Redis and NATS: messages held while the link is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox: Option<OutboxHealth>,
    /// AMQP only: messages ready in the node's queue, as RabbitMQ last
    /// reported it (re-read every second while the link is up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<u64>,
    /// AMQP only: messages handed to RabbitMQ and not yet confirmed by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unconfirmed: Option<u64>,
    /// AMQP only: deliveries dropped as repeats of one already handed on
    /// (published again after a lost confirmation, or delivered again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeated: Option<u64>,
}

/// How a Redis subscription is named in `via` and in the drawing's edge
/// labels: a channel by its name, a pattern after this prefix.
pub const PATTERN_PREFIX: &str = "psubscribe ";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutboxHealth {
    pub queued: u64,
    pub dropped: u64,
    pub flushed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkKind {
    ZmqPub,
    ZmqSub,
    Redis,
    Amqp,
    Nats,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::ZmqPub => "zmq-pub",
            LinkKind::ZmqSub => "zmq-sub",
            LinkKind::Redis => "redis",
            LinkKind::Amqp => "amqp",
            LinkKind::Nats => "nats",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    Connecting,
    Up,
    Down,
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkState::Connecting => "connecting",
            LinkState::Up => "up",
            LinkState::Down => "down",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire format the pages and scripts read: names, order and the
    /// per-kind fields exactly as before the types existed.
    #[test]
    fn the_wire_format_is_stable() {
        let health = Health {
            node: "a".into(),
            generation: 2,
            clients: 3,
            links: vec![
                HealthLink {
                    kind: LinkKind::ZmqSub,
                    endpoint: Some("tcp://127.0.0.1:5001".into()),
                    broker: None,
                    state: LinkState::Connecting,
                    sent: 0,
                    received: 4,
                    peers: Some(1),
                    rejected: Some(2),
                    dropped: Some(3),
                    via: None,
                    outbox: None,
                    queue_depth: None,
                    unconfirmed: None,
                    repeated: None,
                },
                HealthLink {
                    kind: LinkKind::Redis,
                    endpoint: None,
                    broker: Some("redis://127.0.0.1:6379/0".into()),
                    state: LinkState::Up,
                    sent: 5,
                    received: 6,
                    peers: None,
                    rejected: None,
                    dropped: None,
                    via: Some(
                        [("z".to_owned(), 1), ("a".to_owned(), 2)]
                            .into_iter()
                            .collect(),
                    ),
                    outbox: Some(OutboxHealth {
                        queued: 7,
                        dropped: 8,
                        flushed: 9,
                    }),
                    queue_depth: None,
                    unconfirmed: None,
                    repeated: None,
                },
                HealthLink {
                    kind: LinkKind::Amqp,
                    endpoint: None,
                    broker: Some("amqp://127.0.0.1:5672".into()),
                    state: LinkState::Down,
                    sent: 13,
                    received: 14,
                    peers: None,
                    rejected: Some(15),
                    dropped: Some(16),
                    via: None,
                    outbox: Some(OutboxHealth::default()),
                    queue_depth: Some(17),
                    unconfirmed: Some(18),
                    repeated: Some(19),
                },
            ],
            messages: Messages {
                incoming: 10,
                outgoing: 11,
            },
            pid: 12,
        };
        let text = serde_json::to_string(&health).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"node":"a","generation":2,"clients":3,"links":["#,
                r#"{"kind":"zmq-sub","endpoint":"tcp://127.0.0.1:5001","state":"connecting","sent":0,"received":4,"#,
                r#""peers":1,"rejected":2,"dropped":3},"#,
                r#"{"kind":"redis","broker":"redis://127.0.0.1:6379/0","state":"up","sent":5,"received":6,"#,
                r#""via":{"z":1,"a":2},"outbox":{"queued":7,"dropped":8,"flushed":9}},"#,
                r#"{"kind":"amqp","broker":"amqp://127.0.0.1:5672","state":"down","sent":13,"received":14,"#,
                r#""rejected":15,"dropped":16,"outbox":{"queued":0,"dropped":0,"flushed":0},"#,
                r#""queue_depth":17,"unconfirmed":18,"repeated":19}],"#,
                r#""messages":{"in":10,"out":11},"pid":12}"#
            )
        );
        assert_eq!(serde_json::from_str::<Health>(&text).unwrap(), health);
        for kind in [
            LinkKind::ZmqPub,
            LinkKind::ZmqSub,
            LinkKind::Redis,
            LinkKind::Amqp,
            LinkKind::Nats,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }
}
