//! The live page's picture of a topology, as values: vertices (nodes,
//! brokers), edges with stable ids and labels (drawn like `topo graph`:
//! ZeroMQ node → node, Redis and NATS through a broker vertex), the reach
//! matrix, and
//! how one sample of every node's `/healthz` becomes node and edge stats.
//! Pure: it neither polls nor serves (`live` does). The types are the wire
//! format of `/api/view` and the event stream, and read back by tests.

use crate::check::Valid;
use crate::fault::Fault;
use crate::graph::render::{nats_links, redis_edges, used_brokers, zmq_edges};
use crate::health::LinkKind;
pub use crate::health::{Health, HealthLink, Messages};
use crate::model::{NodeId, Topology};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

mod amqp;
mod nats;
use amqp::{amqp_view, amqp_wiring};
use nats::nats_view_edges;

/// What the page draws for one applied generation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct View {
    pub name: String,
    pub generation: u64,
    pub nodes: Vec<Vertex>,
    pub brokers: Vec<Vertex>,
    pub edges: Vec<Edge>,
    /// Names of the nodes with an HTTP server, in file order (rows and columns).
    pub matrix_names: Vec<String>,
    /// Predicted deliveries per message (the `deliveries` of `validate --format json`); > 1 is a duplicate.
    pub deliveries: BTreeMap<String, BTreeMap<String, u64>>,
    /// NATS queue groups a sender's messages reach (`validate`'s `one_of`):
    /// each copy goes to exactly one of `among`. Absent when there is none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub one_of: BTreeMap<String, Vec<crate::config::expect::OneOf>>,
    /// Nodes that failed to take the applied configuration.
    pub failed: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Vertex {
    /// `n:<node>` or `b:<broker>`: stable across reloads, so the page can
    /// tell what was added or removed.
    pub id: String,
    pub name: String,
    /// Nodes: the chat page; brokers: the redacted Redis URL.
    pub url: Option<String>,
    pub relay: bool,
    /// The node's wiring in one line, so a rewired node is recognisable.
    pub wiring: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Edge {
    /// `zmq:<from>><to>`, `pub:<node>`, `sub:<node>:<channel or psubscribe pattern>`.
    pub id: String,
    pub kind: EdgeKind,
    pub from: String,
    pub to: String,
    pub label: String,
    /// The message crossing it may be forwarded again (its source is a relay).
    pub relayed: bool,
    /// Server-side only: `None` in a view read back from the wire.
    #[serde(skip)]
    pub tap: Option<Tap>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeKind {
    Zmq,
    RedisPub,
    RedisSub,
    NatsPub,
    NatsSub,
    AmqpPub,
    AmqpSub,
}

/// Where an edge's state and traffic are read in a node's `/healthz`.
#[derive(Clone, Debug, PartialEq)]
pub enum Tap {
    /// `node`'s ZeroMQ SUB link to `endpoint`: its `received`.
    ZmqSub { node: String, endpoint: String },
    /// `node`'s Redis link: its `sent`.
    RedisSent { node: String },
    /// `node`'s Redis link: its `via[key]`.
    RedisVia { node: String, key: String },
    /// `node`'s NATS link: its `sent`.
    NatsSent { node: String },
    /// `node`'s NATS link: its `via[filter]`.
    NatsVia { node: String, key: String },
    /// `node`'s AMQP link: its `sent`.
    AmqpSent { node: String },
    /// `node`'s AMQP link: its `received` (what its queue delivered).
    AmqpReceived { node: String },
}

impl Vertex {
    /// A broker's vertex (Redis server, NATS subject space, AMQP
    /// exchange): `url` redacted, `wiring` what its tooltip says.
    fn broker(name: &str, url: String, wiring: String) -> Vertex {
        Vertex {
            id: format!("b:{name}"),
            name: name.to_owned(),
            url: Some(url),
            relay: false,
            wiring,
        }
    }
}

impl View {
    pub fn of(valid: &Valid, generation: u64, failed: &[String]) -> View {
        let t = &valid.topology;
        let nodes = t.node_ids().map(|id| node_vertex(t, id)).collect();
        let mut brokers: Vec<Vertex> = used_brokers(t)
            .into_iter()
            .map(|b| {
                let broker = t.broker(b);
                let url = broker.url.to_string();
                Vertex::broker(&broker.name, url.clone(), url)
            })
            .collect();
        // One vertex per NATS subject space, named after its first broker.
        brokers.extend(nats_links(t).spaces.into_iter().map(|b| {
            let broker = t.nats_broker(b);
            let url = broker.url.to_string();
            Vertex::broker(&broker.name, url.clone(), url)
        }));
        // One vertex per AMQP exchange (server, vhost, exchange).
        brokers.extend(amqp_view(t).0);
        let deliveries = valid.analysis.deliveries_by_name(t);
        View {
            name: t.name.clone(),
            generation,
            nodes,
            brokers,
            edges: edges(valid),
            matrix_names: valid
                .analysis
                .deliveries_in_file_order(t)
                .into_iter()
                .map(|(name, _)| name)
                .collect(),
            deliveries,
            one_of: valid.analysis.one_of_by_name(t),
            failed: failed.to_vec(),
        }
    }
}

impl View {
    /// The edge a fault switch acts on, by its tap: a cut ZeroMQ SUB or
    /// Redis subscription (`None` for the other switches).
    pub fn edge_of(&self, fault: &Fault) -> Option<String> {
        let tap = match fault {
            Fault::SubCut { node, endpoint } => Tap::ZmqSub {
                node: node.clone(),
                endpoint: endpoint.clone(),
            },
            Fault::RedisSubCut { node, entry } => Tap::RedisVia {
                node: node.clone(),
                key: entry.clone(),
            },
            Fault::NatsSubCut { node, filter } => Tap::NatsVia {
                node: node.clone(),
                key: filter.clone(),
            },
            Fault::NodeStopped { .. } | Fault::BrokerDown { .. } => return None,
        };
        self.edges
            .iter()
            .find(|e| e.tap.as_ref() == Some(&tap))
            .map(|e| e.id.clone())
    }

    /// The switch that cuts edge `id`: its SUB or its subscription.
    pub fn fault_of(&self, id: &str) -> Option<Fault> {
        match self.edges.iter().find(|e| e.id == id)?.tap.as_ref()? {
            Tap::ZmqSub { node, endpoint } => Some(Fault::SubCut {
                node: node.clone(),
                endpoint: endpoint.clone(),
            }),
            Tap::RedisVia { node, key } => Some(Fault::RedisSubCut {
                node: node.clone(),
                entry: key.clone(),
            }),
            Tap::NatsVia { node, key } => Some(Fault::NatsSubCut {
                node: node.clone(),
                filter: key.clone(),
            }),
            // Publications and AMQP queues have no switch.
            _ => None,
        }
    }
}

fn node_vertex(t: &Topology, id: NodeId) -> Vertex {
    let node = t.node(id);
    let links = crate::model::NodeLinks::of(t, id);
    let mut wiring = Vec::new();
    if let Some(p) = links.publish {
        wiring.push(format!("pub {} {:?}", p.bind, p.topic));
    }
    for s in &links.subscribe {
        wiring.push(format!("sub {}", s.endpoint));
    }
    if !links.subscribe.is_empty() {
        wiring.push(format!("filter {:?}", links.filter));
    }
    if let Some(r) = &links.redis {
        wiring.push(format!(
            "redis {} pub {} sub [{}] psub [{}]",
            r.broker.url,
            r.publish,
            r.subscribe.join(","),
            r.patterns.join(",")
        ));
    }
    if let Some(a) = &links.amqp {
        wiring.push(amqp_wiring(a));
    }
    if let Some(n) = &links.nats {
        let queue = n.queue.map(|q| format!(" queue {q}")).unwrap_or_default();
        wiring.push(format!(
            "nats {} pub {} sub [{}]{queue}",
            n.broker.url,
            n.publish,
            n.subscribe.join(",")
        ));
    }
    Vertex {
        id: format!("n:{}", node.name),
        name: node.name.clone(),
        url: node
            .http
            .map(|a| format!("http://{}/", crate::probe::client_address(a))),
        relay: node.relay,
        wiring: wiring.join("; "),
    }
}

fn edges(valid: &Valid) -> Vec<Edge> {
    let t = &valid.topology;
    let mut out: Vec<Edge> = Vec::new();
    for edge in zmq_edges(t, &valid.analysis.graph) {
        let (from, to) = (edge.from, edge.to);
        let (a, b) = (&t.node(from).name, &t.node(to).name);
        let endpoint = edge.endpoint.to_string();
        let mut id = format!("zmq:{a}>{b}");
        if out.iter().any(|x| x.id == id) {
            id = format!("{id}#{}", out.len());
        }
        out.push(Edge {
            id,
            kind: EdgeKind::Zmq,
            from: format!("n:{a}"),
            to: format!("n:{b}"),
            label: edge.label,
            relayed: t.node(from).relay,
            tap: Some(Tap::ZmqSub {
                node: b.clone(),
                endpoint,
            }),
        });
    }
    let (publish, subscribe) = redis_edges(t);
    for (node, broker, channel) in publish {
        let name = &t.node(node).name;
        out.push(Edge {
            id: format!("pub:{name}"),
            kind: EdgeKind::RedisPub,
            from: format!("n:{name}"),
            to: format!("b:{}", t.broker(broker).name),
            label: channel,
            relayed: t.node(node).relay,
            tap: Some(Tap::RedisSent { node: name.clone() }),
        });
    }
    for (broker, node, key) in subscribe {
        let name = &t.node(node).name;
        out.push(Edge {
            id: format!("sub:{name}:{key}"),
            kind: EdgeKind::RedisSub,
            from: format!("b:{}", t.broker(broker).name),
            to: format!("n:{name}"),
            label: key.clone(),
            relayed: false,
            tap: Some(Tap::RedisVia {
                node: name.clone(),
                key,
            }),
        });
    }
    nats_view_edges(t, &mut out);
    out.extend(amqp_view(t).1);
    out
}

/// One sample for the page: every node's state and rates, every edge's
/// state and how many messages crossed it since the previous sample.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    pub nodes: BTreeMap<String, NodeStats>,
    pub edges: BTreeMap<String, EdgeStats>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeStats {
    pub state: NodeState,
    pub clients: u64,
    pub in_per_s: f64,
    pub out_per_s: f64,
    pub generation: Option<u64>,
    /// Messages held in its Redis outbox (its broker link is down).
    pub outbox: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    Up,
    /// No answer to `/healthz`.
    #[default]
    Down,
    /// A reload could not apply.
    Failed,
    /// It has no HTTP server to ask.
    NoHttp,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EdgeStats {
    /// `up`, `connecting`, `down`, or `unknown` (the node did not answer).
    pub state: String,
    pub delta: u64,
}

/// The counters of the previous sample, by node and by edge.
#[derive(Debug, Default)]
pub struct Previous {
    nodes: HashMap<String, (u64, u64)>,
    edges: HashMap<String, u64>,
}

/// Turns one round of `/healthz` answers into [`Stats`]; `health` has an
/// entry (`None`: no answer) for every node with an HTTP server.
pub fn sample(
    view: &View,
    health: &HashMap<String, Option<Health>>,
    previous: &mut Previous,
    seconds: f64,
) -> Stats {
    // A counter that went down belongs to a restarted node: count from 0.
    let delta = |now: u64, before: Option<u64>| match before {
        Some(b) if now >= b => now - b,
        Some(_) => now,
        None => 0,
    };
    let rate = |d: u64| {
        if seconds > 0.0 {
            d as f64 / seconds
        } else {
            0.0
        }
    };
    let mut stats = Stats::default();
    for v in &view.nodes {
        let failed = view.failed.contains(&v.name);
        let s = match health.get(&v.name) {
            None => NodeStats {
                state: if failed {
                    NodeState::Failed
                } else {
                    NodeState::NoHttp
                },
                ..NodeStats::default()
            },
            Some(None) => NodeStats {
                state: if failed {
                    NodeState::Failed
                } else {
                    NodeState::Down
                },
                ..NodeStats::default()
            },
            Some(Some(h)) => {
                let (i, o) = (h.messages.incoming, h.messages.outgoing);
                let before = previous.nodes.insert(v.name.clone(), (i, o));
                NodeStats {
                    state: if failed {
                        NodeState::Failed
                    } else {
                        NodeState::Up
                    },
                    clients: h.clients,
                    in_per_s: rate(delta(i, before.map(|b| b.0))),
                    out_per_s: rate(delta(o, before.map(|b| b.1))),
                    generation: Some(h.generation),
                    outbox: h
                        .links
                        .iter()
                        .filter_map(|l| l.outbox.as_ref())
                        .map(|o| o.queued)
                        .sum(),
                }
            }
        };
        stats.nodes.insert(v.name.clone(), s);
    }
    for e in &view.edges {
        // A view read back from the wire has no taps: nothing to read.
        let Some(tap) = &e.tap else { continue };
        let (node, read) = match tap {
            Tap::ZmqSub { node, endpoint } => (node, Read::Sub(endpoint)),
            Tap::RedisSent { node } => (node, Read::Sent),
            Tap::RedisVia { node, key } => (node, Read::Via(key)),
            Tap::NatsSent { node } => (node, Read::NatsSent),
            Tap::NatsVia { node, key } => (node, Read::NatsVia(key)),
            Tap::AmqpSent { node } => (node, Read::AmqpSent),
            Tap::AmqpReceived { node } => (node, Read::AmqpReceived),
        };
        let link = health.get(node).and_then(|h| h.as_ref()).and_then(|h| {
            h.links.iter().find(|l| match read {
                Read::Sub(endpoint) => {
                    l.kind == LinkKind::ZmqSub && l.endpoint.as_deref() == Some(endpoint)
                }
                Read::Sent | Read::Via(_) => l.kind == LinkKind::Redis,
                Read::NatsSent | Read::NatsVia(_) => l.kind == LinkKind::Nats,
                Read::AmqpSent | Read::AmqpReceived => l.kind == LinkKind::Amqp,
            })
        });
        let s = match link {
            None => EdgeStats {
                state: "unknown".into(),
                delta: 0,
            },
            Some(l) => {
                let now = match read {
                    Read::Sub(_) | Read::AmqpReceived => l.received,
                    Read::Sent | Read::NatsSent | Read::AmqpSent => l.sent,
                    Read::Via(key) | Read::NatsVia(key) => l
                        .via
                        .as_ref()
                        .and_then(|v| v.get(key))
                        .copied()
                        .unwrap_or(0),
                };
                let before = previous.edges.insert(e.id.clone(), now);
                EdgeStats {
                    state: l.state.to_string(),
                    delta: delta(now, before),
                }
            }
        };
        stats.edges.insert(e.id.clone(), s);
    }
    stats
}

enum Read<'a> {
    Sub(&'a str),
    Sent,
    Via(&'a str),
    NatsSent,
    NatsVia(&'a str),
    AmqpSent,
    AmqpReceived,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::check_bytes;
    use crate::health::LinkState;

    /// The valid topology of a file's text (shared by the broker views' tests).
    pub(super) fn valid(yaml: &str) -> Valid {
        let none = |_: &str| None;
        check_bytes("t.yaml", "t", yaml.as_bytes(), &none)
            .valid
            .expect("valid")
    }

    const MIXED: &str = "nodes:
  a: { http: 8080, zmq: { pub: 5000, sub: [b] } }
  b: { http: 8081, zmq: { pub: 5001, sub: [a] }, relay: true, redis: { broker: 'redis://127.0.0.1:6399' } }
  c: { http: 8082, redis: { broker: 'redis://127.0.0.1:6399', patterns: ['chat*'] } }
";

    #[test]
    fn each_node_s_wiring_is_one_line_of_its_links() {
        let view = View::of(&valid(MIXED), 1, &[]);
        let wiring: Vec<&str> = view.nodes.iter().map(|n| n.wiring.as_str()).collect();
        assert_eq!(
            wiring,
            [
                r#"pub 127.0.0.1:5000 "chat"; sub tcp://127.0.0.1:5001; filter "chat""#,
                r#"pub 127.0.0.1:5001 "chat"; sub tcp://127.0.0.1:5000; filter "chat"; redis redis://127.0.0.1:6399 pub chat_messages sub [chat_messages] psub []"#,
                "redis redis://127.0.0.1:6399 pub chat_messages sub [chat_messages] psub [chat*]",
            ]
        );
    }

    #[test]
    fn zmq_edges_go_node_to_node_and_redis_edges_through_the_broker() {
        let view = View::of(&valid(MIXED), 3, &[]);
        let ids: Vec<&str> = view.edges.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "zmq:b>a",
                "zmq:a>b",
                "pub:b",
                "pub:c",
                "sub:b:chat_messages",
                "sub:c:chat_messages",
                "sub:c:psubscribe chat*"
            ]
        );
        assert_eq!(view.brokers.len(), 1);
        assert_eq!(view.edges[2].to, view.brokers[0].id);
        assert!(view.edges[0].relayed && !view.edges[1].relayed);
        assert_eq!(view.nodes[0].url.as_deref(), Some("http://127.0.0.1:8080/"));
        assert_eq!(view.matrix_names, ["a", "b", "c"]);
        assert_eq!(view.generation, 3);
    }

    #[test]
    fn a_sample_turns_counters_into_rates_and_edge_deltas() {
        let view = View::of(&valid(MIXED), 0, &["c".to_owned()]);
        let health = |sub_received: u64, via: u64| -> HashMap<String, Option<Health>> {
            let a = Health {
                clients: 2,
                messages: Messages {
                    incoming: 10 + sub_received,
                    outgoing: 5,
                },
                links: vec![HealthLink {
                    kind: LinkKind::ZmqSub,
                    endpoint: Some("tcp://127.0.0.1:5001".into()),
                    broker: None,
                    state: LinkState::Up,
                    sent: 0,
                    received: sub_received,
                    peers: Some(1),
                    rejected: Some(0),
                    dropped: Some(0),
                    via: None,
                    outbox: None,
                    queue_depth: None,
                    unconfirmed: None,
                    repeated: None,
                }],
                ..Health::default()
            };
            let c = Health {
                links: vec![HealthLink {
                    kind: LinkKind::Redis,
                    endpoint: None,
                    broker: Some("redis://127.0.0.1:6379/0".into()),
                    state: LinkState::Down,
                    sent: 0,
                    received: via,
                    peers: None,
                    rejected: None,
                    dropped: None,
                    via: Some([("psubscribe chat*".to_owned(), via)].into_iter().collect()),
                    outbox: None,
                    queue_depth: None,
                    unconfirmed: None,
                    repeated: None,
                }],
                ..Health::default()
            };
            [
                ("a".into(), Some(a)),
                ("b".into(), None),
                ("c".into(), Some(c)),
            ]
            .into()
        };
        let mut previous = Previous::default();
        let first = sample(&view, &health(100, 7), &mut previous, 0.5);
        assert_eq!(first.edges["zmq:b>a"].delta, 0, "no previous sample");
        let second = sample(&view, &health(150, 9), &mut previous, 0.5);
        assert_eq!(
            second.edges["zmq:b>a"],
            EdgeStats {
                state: "up".into(),
                delta: 50
            }
        );
        assert_eq!(second.edges["sub:c:psubscribe chat*"].delta, 2);
        assert_eq!(second.edges["sub:c:psubscribe chat*"].state, "down");
        assert_eq!(second.edges["zmq:a>b"].state, "unknown");
        assert_eq!(second.nodes["a"].in_per_s, 100.0);
        assert_eq!(second.nodes["a"].clients, 2);
        assert_eq!(second.nodes["b"].state, NodeState::Down);
        assert_eq!(second.nodes["c"].state, NodeState::Failed);
        // A restarted node's counters start again from 0.
        let third = sample(&view, &health(20, 9), &mut previous, 0.5);
        assert_eq!(third.edges["zmq:b>a"].delta, 20);
    }
}
