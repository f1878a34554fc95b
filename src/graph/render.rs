//! Drawing the topology: Graphviz DOT, Mermaid, and JSON. ZeroMQ links are
//! drawn node to node; Redis links go through their broker, one edge per
//! publish channel and per subscription, so a 100-node island stays legible.
//! A node's links come from [`NodeLinks`], as in the ready table and the
//! admin view; the graph only says which ZeroMQ subscriptions messages
//! cross. The JSON is the graph itself: its `links` are the graph's edges.
//! AMQP links are drawn like Redis ones, through their exchange.

use super::build::{Link, LinkGraph};
use crate::health::PATTERN_PREFIX;
use crate::model::{BrokerId, Endpoint, NatsBrokerId, NodeId, NodeLinks, Topology};
use crate::printable::{escape_controls, is_unsafe};
use petgraph::visit::EdgeRef;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write;

/// Brokers that name the same server are drawn once.
pub(crate) fn used_brokers(topology: &Topology) -> Vec<BrokerId> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for node in &topology.nodes {
        if let Some(redis) = &node.redis
            && seen.insert(topology.broker(redis.broker).url.server())
        {
            out.push(redis.broker);
        }
    }
    out
}

/// A ZeroMQ link as drawn: publisher to subscriber, the endpoint the
/// subscriber dials, and its label.
pub(crate) struct ZmqEdge<'a> {
    pub from: NodeId,
    pub to: NodeId,
    pub endpoint: &'a Endpoint,
    pub label: String,
}

/// Every node's ZeroMQ subscriptions to a node of the file ([`NodeLinks`],
/// in file order) that messages cross: the graph decides which (the
/// subscriber's filter matches the publisher's topic).
pub(crate) fn zmq_edges<'a>(topology: &'a Topology, graph: &LinkGraph) -> Vec<ZmqEdge<'a>> {
    let crossed: HashSet<(usize, usize)> = graph
        .edge_references()
        .filter(|e| e.weight().is_zmq())
        .map(|e| (e.source().index(), e.target().index()))
        .collect();
    let mut out = Vec::new();
    for to in topology.node_ids() {
        for sub in NodeLinks::of(topology, to).subscribe {
            let Some(from) = sub.publisher else { continue };
            if crossed.contains(&(from.0, to.0)) {
                out.push(ZmqEdge {
                    from,
                    to,
                    endpoint: sub.endpoint,
                    label: Link::Zmq.label(topology, from, to),
                });
            }
        }
    }
    out
}

/// NATS links, drawn node to node with the subject (and the filter and
/// queue group when they say more): one per edge of the graph.
pub(crate) fn nats_edges(topology: &Topology, graph: &LinkGraph) -> Vec<(NodeId, NodeId, String)> {
    graph
        .edge_references()
        .filter(|e| e.weight().via() == super::build::Via::Nats)
        .map(|e| {
            let (from, to) = (NodeId(e.source().index()), NodeId(e.target().index()));
            (from, to, e.weight().label(topology, from, to))
        })
        .collect()
}

/// A node's NATS link drawn through its subject space's vertex (the first
/// broker of the file in that space): the spaces used, in file order,
/// (node, vertex, subject) per publisher, (vertex, node, filter, queue)
/// per subscription.
pub(crate) struct NatsLinks {
    pub spaces: Vec<NatsBrokerId>,
    pub publish: Vec<(NodeId, NatsBrokerId, String)>,
    pub subscribe: Vec<(NatsBrokerId, NodeId, String, Option<String>)>,
}

pub(crate) fn nats_links(topology: &Topology) -> NatsLinks {
    let space = super::build::nats_spaces(topology);
    let vertex =
        |b: NatsBrokerId| NatsBrokerId(space.iter().position(|s| *s == space[b.0]).unwrap_or(b.0));
    let mut links = NatsLinks {
        spaces: Vec::new(),
        publish: Vec::new(),
        subscribe: Vec::new(),
    };
    for id in topology.node_ids() {
        let Some(nats) = &topology.node(id).nats else {
            continue;
        };
        let broker = vertex(nats.broker);
        if !links.spaces.contains(&broker) {
            links.spaces.push(broker);
        }
        links.publish.push((id, broker, nats.publish.clone()));
        for filter in &nats.subscribe {
            links
                .subscribe
                .push((broker, id, filter.clone(), nats.queue.clone()));
        }
    }
    links
}

/// (node, broker vertex, channel) for publishing, and (broker vertex, node, channel or pattern) for subscriptions.
pub(crate) type RedisEdges = (
    Vec<(NodeId, BrokerId, String)>,
    Vec<(BrokerId, NodeId, String)>,
);

/// Every node's Redis links ([`NodeLinks`]), each broker drawn once per
/// server (the first broker of the file that names it).
pub(crate) fn redis_edges(topology: &Topology) -> RedisEdges {
    let used = used_brokers(topology);
    let vertex = |id: BrokerId| {
        let server = topology.broker(id).url.server();
        used.iter()
            .copied()
            .find(|b| topology.broker(*b).url.server() == server)
            .unwrap_or(id)
    };
    let mut publish = Vec::new();
    let mut subscribe = Vec::new();
    for id in topology.node_ids() {
        let Some(redis) = NodeLinks::of(topology, id).redis else {
            continue;
        };
        let broker = vertex(redis.broker_id);
        publish.push((id, broker, redis.publish.to_owned()));
        for channel in redis.subscribe {
            subscribe.push((broker, id, channel.clone()));
        }
        for pattern in redis.patterns {
            subscribe.push((broker, id, format!("{PATTERN_PREFIX}{pattern}")));
        }
    }
    (publish, subscribe)
}

/// One AMQP exchange of one vhost, as drawn: `exchange@broker`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ExchangeVertex {
    pub name: String,
    pub label: String,
    /// The broker's redacted URL.
    pub url: String,
}

/// (node, exchange, routing key) for publishing and (exchange, node, binding
/// and queue) for consuming; exchanges in order of first use.
pub(crate) type AmqpEdges = (
    Vec<ExchangeVertex>,
    Vec<(NodeId, usize, String)>,
    Vec<(usize, NodeId, String)>,
);

pub(crate) fn amqp_edges(topology: &Topology) -> AmqpEdges {
    let mut exchanges: Vec<(ExchangeVertex, (crate::model::ServerKey, String, String))> =
        Vec::new();
    let (mut publish, mut consume) = (Vec::new(), Vec::new());
    for id in topology.node_ids() {
        let Some(link) = &topology.node(id).amqp else {
            continue;
        };
        let broker = topology.amqp_broker(link.broker);
        let (server, vhost) = broker.url.space();
        let key = (server, vhost, link.exchange.clone());
        let index = match exchanges.iter().position(|(_, k)| *k == key) {
            Some(i) => i,
            None => {
                exchanges.push((
                    ExchangeVertex {
                        name: format!("{}@{}", link.exchange, broker.name),
                        label: format!("{} ({})\n{}", link.exchange, link.kind, broker.url),
                        url: broker.url.to_string(),
                    },
                    key,
                ));
                exchanges.len() - 1
            }
        };
        let queue = link
            .queue
            .as_deref()
            .map_or(String::new(), |q| format!(" [{q}]"));
        if link.kind == crate::model::ExchangeKind::Fanout {
            publish.push((id, index, link.exchange.clone()));
            consume.push((index, id, format!("{}{queue}", link.exchange)));
        } else {
            publish.push((id, index, link.publish.clone()));
            for binding in &link.bind {
                consume.push((index, id, format!("{binding}{queue}")));
            }
        }
    }
    (
        exchanges.into_iter().map(|(v, _)| v).collect(),
        publish,
        consume,
    )
}

fn node_label(topology: &Topology, id: NodeId) -> String {
    let node = topology.node(id);
    let mut label = node.name.clone();
    if let Some(http) = node.http {
        let _ = write!(label, " :{}", http.port());
    }
    if node.relay {
        label.push_str(" (relay)");
    }
    label
}

/// A DOT string. Topics and names come from the file: a control character
/// is written out as `\u{1b}` (shown, not sent to whatever displays it).
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push('\n'),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn dot(topology: &Topology, graph: &LinkGraph) -> String {
    let mut out = format!(
        "digraph {} {{\n  rankdir=LR;\n  node [fontname=\"sans-serif\"];\n",
        quote(&topology.name)
    );
    for id in topology.node_ids() {
        let shape = if topology.node(id).relay {
            "diamond"
        } else {
            "box"
        };
        let style = if topology.node(id).http.is_some() {
            "solid"
        } else {
            "dashed"
        };
        let _ = writeln!(
            out,
            "  {} [label={}, shape={shape}, style={style}];",
            quote(&topology.node(id).name),
            quote(&node_label(topology, id))
        );
    }
    for b in used_brokers(topology) {
        let broker = topology.broker(b);
        let _ = writeln!(
            out,
            "  {} [label={}, shape=cylinder];",
            quote(&format!("broker:{}", broker.name)),
            quote(&format!("{}\n{}", broker.name, broker.url))
        );
    }
    for edge in zmq_edges(topology, graph) {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}, color=\"#1f77b4\"];",
            quote(&topology.node(edge.from).name),
            quote(&topology.node(edge.to).name),
            quote(&edge.label)
        );
    }
    for (from, to, label) in nats_edges(topology, graph) {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}, color=\"#2ca02c\"];",
            quote(&topology.node(from).name),
            quote(&topology.node(to).name),
            quote(&label)
        );
    }
    let (publish, subscribe) = redis_edges(topology);
    for (node, broker, channel) in publish {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}, color=\"#d62728\"];",
            quote(&topology.node(node).name),
            quote(&format!("broker:{}", topology.broker(broker).name)),
            quote(&channel)
        );
    }
    for (broker, node, channel) in subscribe {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}, color=\"#d62728\", style=dashed];",
            quote(&format!("broker:{}", topology.broker(broker).name)),
            quote(&topology.node(node).name),
            quote(&channel)
        );
    }
    let (exchanges, publish, consume) = amqp_edges(topology);
    let vertex = |i: usize| quote(&format!("exchange:{}", exchanges[i].name));
    for (i, exchange) in exchanges.iter().enumerate() {
        let label = &exchange.label;
        let _ = writeln!(
            out,
            "  {} [label={}, shape=cylinder, color=\"#ff7f0e\"];",
            vertex(i),
            quote(label)
        );
    }
    for (node, exchange, key) in publish {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}, color=\"#ff7f0e\"];",
            quote(&topology.node(node).name),
            vertex(exchange),
            quote(&key)
        );
    }
    for (exchange, node, key) in consume {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}, color=\"#ff7f0e\", style=dashed];",
            vertex(exchange),
            quote(&topology.node(node).name),
            quote(&key)
        );
    }
    out.push_str("}\n");
    out
}

pub fn mermaid(topology: &Topology, graph: &LinkGraph) -> String {
    let node_id = |id: NodeId| format!("n{}", id.0);
    let broker_id = |id: BrokerId| format!("b{}", id.0);
    let text = |s: &str| escape_controls(s).replace('"', "#quot;");
    let mut out = String::from("flowchart LR\n");
    for id in topology.node_ids() {
        let label = text(&node_label(topology, id));
        let shape = if topology.node(id).relay {
            format!("{{{{\"{label}\"}}}}")
        } else {
            format!("[\"{label}\"]")
        };
        let _ = writeln!(out, "  {}{shape}", node_id(id));
    }
    for b in used_brokers(topology) {
        let broker = topology.broker(b);
        let _ = writeln!(
            out,
            "  {}[(\"{} {}\")]",
            broker_id(b),
            text(&broker.name),
            text(&broker.url.to_string())
        );
    }
    for edge in zmq_edges(topology, graph) {
        let _ = writeln!(
            out,
            "  {} -->|\"{}\"| {}",
            node_id(edge.from),
            text(&edge.label),
            node_id(edge.to)
        );
    }
    for (from, to, label) in nats_edges(topology, graph) {
        let _ = writeln!(
            out,
            "  {} -.->|\"{}\"| {}",
            node_id(from),
            text(&label),
            node_id(to)
        );
    }
    let (publish, subscribe) = redis_edges(topology);
    for (node, broker, channel) in publish {
        let _ = writeln!(
            out,
            "  {} ==>|\"{}\"| {}",
            node_id(node),
            text(&channel),
            broker_id(broker)
        );
    }
    for (broker, node, channel) in subscribe {
        let _ = writeln!(
            out,
            "  {} -.->|\"{}\"| {}",
            broker_id(broker),
            text(&channel),
            node_id(node)
        );
    }
    let (exchanges, publish, consume) = amqp_edges(topology);
    for (i, exchange) in exchanges.iter().enumerate() {
        let label = text(&exchange.label.replace('\n', " "));
        let _ = writeln!(out, "  x{i}[(\"{label}\")]");
    }
    for (node, exchange, key) in publish {
        let _ = writeln!(
            out,
            "  {} ==>|\"{}\"| x{exchange}",
            node_id(node),
            text(&key)
        );
    }
    for (exchange, node, key) in consume {
        let _ = writeln!(
            out,
            "  x{exchange} -.->|\"{}\"| {}",
            text(&key),
            node_id(node)
        );
    }
    out
}

/// Nodes, brokers (passwords redacted) and every node-to-node link of the graph.
pub fn json(topology: &Topology, graph: &LinkGraph) -> Value {
    let nodes: Vec<Value> = topology
        .nodes
        .iter()
        .map(|node| {
            json!({
                "name": node.name,
                "http": node.http.map(|a| a.to_string()),
                "relay": node.relay,
                "zmq": node.zmq.as_ref().map(|z| json!({
                    "pub": z.publish.as_ref().map(|p| format!("tcp://{}", p.bind)),
                    "topic": z.publish.as_ref().map(|p| p.topic.clone()),
                    "sub": z.subscribe.iter().map(|s| s.endpoint.to_string()).collect::<Vec<_>>(),
                    "filter": z.filter,
                })),
                "redis": node.redis.as_ref().map(|r| json!({
                    "broker": topology.broker(r.broker).name,
                    "publish": r.publish,
                    "subscribe": r.subscribe,
                    "patterns": r.patterns,
                })),
                "amqp": node.amqp.as_ref().map(|a| json!({
                    "broker": topology.amqp_broker(a.broker).name,
                    "exchange": a.exchange,
                    "type": a.kind.as_str(),
                    "publish": a.publish,
                    "bind": a.bind,
                    "queue": a.queue,
                })),
            })
        })
        .collect();
    let brokers: Vec<Value> = topology
        .brokers
        .iter()
        .map(|b| json!({"name": b.name, "url": b.url.to_string(), "server": b.url.server().to_string()}))
        .chain(topology.amqp_brokers.iter().map(|b| {
            json!({"name": b.name, "url": b.url.to_string(), "server": b.url.space().0.to_string(), "vhost": b.url.vhost})
        }))
        .collect();
    let source_name = |id: NodeId| topology.node(id).name.clone();
    let links: Vec<Value> = graph
        .edge_references()
        .map(|e| {
            let (from, to) = (NodeId(e.source().index()), NodeId(e.target().index()));
            let (source, target) = (topology.node(from), topology.node(to));
            match e.weight() {
                Link::Zmq => json!({
                    "from": source.name, "to": target.name, "kind": "zmq",
                    "topic": source.zmq.as_ref().and_then(|z| z.publish.as_ref()).map(|p| p.topic.clone()),
                    "filter": target.zmq.as_ref().map(|z| z.filter.clone()),
                }),
                Link::Amqp { binding } => {
                    let (Some(source), Some(target_link)) = (&source.amqp, &target.amqp) else {
                        return json!({});
                    };
                    json!({
                        "from": source_name(from), "to": target.name, "kind": "amqp",
                        "broker": topology.amqp_broker(source.broker).name,
                        "exchange": source.exchange,
                        "routing_key": source.publish,
                        "binding": target_link.bind[*binding],
                        "queue": target_link.queue,
                    })
                }
                link => {
                    let redis = target.redis.as_ref().expect("a redis link ends at a redis node");
                    let mut value = json!({
                        "from": source.name, "to": target.name, "kind": "redis",
                        "broker": topology.broker(redis.broker).name,
                        "channel": source.redis.as_ref().map(|r| r.publish.clone()),
                    });
                    if let Link::RedisPattern { pattern } = link {
                        value["pattern"] = json!(redis.patterns[*pattern]);
                    }
                    value
                }
            }
        })
        .collect();
    json!({"name": topology.name, "nodes": nodes, "brokers": brokers, "links": links})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zmq_edges_list_each_subscription_messages_cross_in_file_order() {
        let yaml = "nodes:
  a: { http: 9101, zmq: { pub: 9201, topic: chat } }
  b: { http: 9102, zmq: { pub: 9202, topic: news, sub: [a, 'tcp://10.0.0.9:7000'], filter: ch } }
  c: { http: 9103, zmq: { sub: [a, b], filter: news } }
";
        let valid = crate::check::check_bytes("t.yaml", "t", yaml.as_bytes(), &|_| None)
            .valid
            .expect("valid");
        let t = &valid.topology;
        let edges: Vec<(String, String, String, String)> = zmq_edges(t, &valid.analysis.graph)
            .into_iter()
            .map(|e| {
                let name = |id: NodeId| t.node(id).name.clone();
                (name(e.from), name(e.to), e.endpoint.to_string(), e.label)
            })
            .collect();
        // c's subscription to a is filtered out (`news` is not a prefix of
        // `chat`), b's to an address outside the file is not a node's.
        assert_eq!(
            edges,
            [
                (
                    "a".into(),
                    "b".into(),
                    "tcp://127.0.0.1:9201".into(),
                    "chat ~ \"ch\"".into()
                ),
                (
                    "b".into(),
                    "c".into(),
                    "tcp://127.0.0.1:9202".into(),
                    "news".into()
                ),
            ]
        );
    }
}
