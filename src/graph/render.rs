//! Drawing the topology: Graphviz DOT, Mermaid, and JSON. ZeroMQ links are
//! drawn node to node; Redis links go through their broker, one edge per
//! publish channel and per subscription, so a 100-node island stays legible.

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
        .filter(|e| !e.weight().is_redis())
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
            })
        })
        .collect();
    let brokers: Vec<Value> = topology
        .brokers
        .iter()
        .map(|b| json!({"name": b.name, "url": b.url.to_string(), "server": b.url.server().to_string()}))
        .collect();
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
