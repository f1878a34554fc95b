//! Drawing the topology: Graphviz DOT, Mermaid, and JSON. ZeroMQ links are
//! drawn node to node; Redis links go through their broker, one edge per
//! publish channel and per subscription, so a 100-node island stays legible.
//! AMQP links are drawn the same way, through their exchange.

use super::build::{Link, LinkGraph};
use crate::health::PATTERN_PREFIX;
use crate::model::{BrokerId, NodeId, Topology};
use crate::printable::{escape_controls, is_unsafe};
use petgraph::visit::EdgeRef;
use serde_json::{Value, json};
use std::collections::BTreeSet;
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

fn broker_vertex(topology: &Topology, id: BrokerId) -> BrokerId {
    let server = topology.broker(id).url.server();
    used_brokers(topology)
        .into_iter()
        .find(|b| topology.broker(*b).url.server() == server)
        .unwrap_or(id)
}

fn zmq_edges(graph: &LinkGraph) -> impl Iterator<Item = (NodeId, NodeId, &Link)> {
    graph
        .edge_references()
        .filter(|e| !e.weight().through_broker())
        .map(|e| {
            (
                NodeId(e.source().index()),
                NodeId(e.target().index()),
                e.weight(),
            )
        })
}

/// (node, broker vertex, channel) for publishing, and (broker vertex, node, channel or pattern) for subscriptions.
pub(crate) type RedisEdges = (
    Vec<(NodeId, BrokerId, String)>,
    Vec<(BrokerId, NodeId, String)>,
);

pub(crate) fn redis_edges(topology: &Topology) -> RedisEdges {
    let mut publish = Vec::new();
    let mut subscribe = Vec::new();
    for id in topology.node_ids() {
        let Some(redis) = &topology.node(id).redis else {
            continue;
        };
        let broker = broker_vertex(topology, redis.broker);
        publish.push((id, broker, redis.publish.clone()));
        for channel in &redis.subscribe {
            subscribe.push((broker, id, channel.clone()));
        }
        for pattern in &redis.patterns {
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
    for (from, to, link) in zmq_edges(graph) {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}, color=\"#1f77b4\"];",
            quote(&topology.node(from).name),
            quote(&topology.node(to).name),
            quote(&link.label(topology, from, to))
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
    for (from, to, link) in zmq_edges(graph) {
        let _ = writeln!(
            out,
            "  {} -->|\"{}\"| {}",
            node_id(from),
            text(&link.label(topology, from, to)),
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
