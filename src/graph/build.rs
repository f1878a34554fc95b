//! The petgraph of links between nodes: one directed edge per way a message
//! of one node reaches another (SPEC rule 3), so parallel edges are real
//! duplicate deliveries.

use super::glob::glob_match;
use crate::model::{BrokerId, NodeId, ServerKey, Topology};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// The target's SUB socket (entry `sub` of the target) hears the source's PUB.
    Zmq { topic: String, filter: String },
    /// The target's SUBSCRIBE of the source's publish channel.
    RedisChannel { broker: BrokerId, channel: String },
    /// The target's PSUBSCRIBE `pattern`, which matches the source's channel.
    RedisPattern {
        broker: BrokerId,
        channel: String,
        pattern: String,
    },
}

impl Link {
    pub fn is_redis(&self) -> bool {
        !matches!(self, Link::Zmq { .. })
    }

    pub fn label(&self) -> String {
        match self {
            Link::Zmq { topic, filter } if topic == filter => topic.clone(),
            Link::Zmq { topic, filter } => format!("{topic} ~ {filter}"),
            Link::RedisChannel { channel, .. } => channel.clone(),
            Link::RedisPattern {
                channel, pattern, ..
            } => format!("{channel} ~ {pattern}"),
        }
    }
}

/// Vertex `i` is node `NodeId(i)`.
pub type LinkGraph = DiGraph<NodeId, Link>;

pub fn build(topology: &Topology) -> LinkGraph {
    let mut graph = LinkGraph::with_capacity(topology.nodes.len(), 0);
    for id in topology.node_ids() {
        graph.add_node(id);
    }
    zmq_links(topology, &mut graph);
    redis_links(topology, &mut graph);
    graph
}

fn zmq_links(topology: &Topology, graph: &mut LinkGraph) {
    for (to, node) in topology.nodes.iter().enumerate() {
        let Some(zmq) = &node.zmq else { continue };
        for from in zmq.subscribe.iter().filter_map(|s| s.from) {
            let Some(publish) = topology
                .node(from)
                .zmq
                .as_ref()
                .and_then(|z| z.publish.as_ref())
            else {
                continue;
            };
            if publish.topic.as_bytes().starts_with(zmq.filter.as_bytes()) {
                let link = Link::Zmq {
                    topic: publish.topic.clone(),
                    filter: zmq.filter.clone(),
                };
                graph.add_edge(NodeIndex::new(from.0), NodeIndex::new(to), link);
            }
        }
    }
}

fn redis_links(topology: &Topology, graph: &mut LinkGraph) {
    let server_of = |broker: BrokerId| topology.broker(broker).url.server();
    // Subscribers grouped by server, so each publisher only meets its own island.
    let mut by_server: HashMap<ServerKey, Vec<NodeId>> = HashMap::new();
    for id in topology.node_ids() {
        if let Some(redis) = &topology.node(id).redis {
            by_server
                .entry(server_of(redis.broker))
                .or_default()
                .push(id);
        }
    }
    for from in topology.node_ids() {
        let Some(publisher) = &topology.node(from).redis else {
            continue;
        };
        let channel = &publisher.publish;
        for &to in &by_server[&server_of(publisher.broker)] {
            if to == from {
                continue; // its echo (SPEC rule 1)
            }
            let subscriber = topology.node(to).redis.as_ref().expect("grouped by redis");
            let (a, b) = (NodeIndex::new(from.0), NodeIndex::new(to.0));
            if subscriber.subscribe.iter().any(|c| c == channel) {
                let link = Link::RedisChannel {
                    broker: subscriber.broker,
                    channel: channel.clone(),
                };
                graph.add_edge(a, b, link);
            }
            for pattern in &subscriber.patterns {
                if glob_match(pattern.as_bytes(), channel.as_bytes()) {
                    let link = Link::RedisPattern {
                        broker: subscriber.broker,
                        channel: channel.clone(),
                        pattern: pattern.clone(),
                    };
                    graph.add_edge(a, b, link);
                }
            }
        }
    }
}
