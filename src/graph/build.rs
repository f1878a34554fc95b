//! The petgraph of links between nodes: one directed edge per way a message
//! of one node reaches another (docs/topology-format.md rule 3), so parallel edges are real
//! duplicate deliveries.

use crate::glob::glob_match;
use crate::model::{BrokerId, NodeId, ServerKey, Topology};
use crate::subject::subject_matches;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::HashMap;

/// How a message crosses one edge. Edges hold no strings: a full mesh of
/// 1,000 nodes has 999,000 of them, and the names are in the topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// The target's SUB socket hears the source's PUB (topic starts with filter).
    Zmq,
    /// The target SUBSCRIBEs (or, both sharded, SSUBSCRIBEs) the source's publish channel.
    RedisChannel,
    /// The target's PSUBSCRIBE pattern number `pattern` matches the source's channel.
    RedisPattern { pattern: usize },
    /// The target's queue, bound to the source's exchange with binding number
    /// `binding` (the first that routes the source's key: RabbitMQ puts a
    /// message in a queue once, however many of its bindings match).
    Amqp { binding: usize },
    /// The target's NATS subscription number `subscription` (not in a queue
    /// group) matches the source's subject.
    NatsSubject { subscription: usize },
    /// The target is in a queue group and its subscription number
    /// `subscription` matches the source's subject: the message goes to
    /// exactly one of the group's members that have such an edge, so these
    /// edges are never counted as deliveries one by one (`analyze`).
    NatsQueue { subscription: usize },
}

/// The kind of link a message arrived by: a relay never forwards it back
/// onto the same kind of broker (docs/topology-format.md rule 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Via {
    /// A client of the node, or a ZeroMQ SUB socket.
    Direct,
    Redis,
    Nats,
    Amqp,
}

impl Via {
    pub const ALL: [Via; 4] = [Via::Direct, Via::Redis, Via::Nats, Via::Amqp];

    pub fn index(self) -> usize {
        self as usize
    }
}

impl Link {
    pub fn is_redis(&self) -> bool {
        matches!(self, Link::RedisChannel | Link::RedisPattern { .. })
    }

    pub fn is_zmq(&self) -> bool {
        matches!(self, Link::Zmq)
    }

    pub fn is_queue(&self) -> bool {
        matches!(self, Link::NatsQueue { .. })
    }

    /// How a message that crossed this edge arrived at its target.
    pub fn via(&self) -> Via {
        match self {
            Link::Zmq => Via::Direct,
            Link::RedisChannel | Link::RedisPattern { .. } => Via::Redis,
            Link::NatsSubject { .. } | Link::NatsQueue { .. } => Via::Nats,
            Link::Amqp { .. } => Via::Amqp,
        }
    }

    /// What the edge is labelled with in drawings: topic or channel, and the
    /// filter or pattern when it differs.
    pub fn label(&self, topology: &Topology, from: NodeId, to: NodeId) -> String {
        let (source, target) = (topology.node(from), topology.node(to));
        match self {
            Link::Zmq => {
                let topic = source
                    .zmq
                    .as_ref()
                    .and_then(|z| z.publish.as_ref())
                    .map_or("", |p| &p.topic);
                let filter = target.zmq.as_ref().map_or("", |z| &z.filter);
                if topic == filter {
                    topic.to_owned()
                } else {
                    format!("{topic} ~ {filter:?}")
                }
            }
            Link::RedisChannel => source
                .redis
                .as_ref()
                .map_or(String::new(), |r| r.publish.clone()),
            Link::RedisPattern { pattern } => {
                let channel = source.redis.as_ref().map_or("", |r| &r.publish);
                let pattern = target.redis.as_ref().map_or("", |r| &r.patterns[*pattern]);
                format!("{channel} ~ {pattern}")
            }
            Link::Amqp { binding } => {
                let (Some(source), Some(target)) = (&source.amqp, &target.amqp) else {
                    return String::new();
                };
                let binding = &target.bind[*binding];
                match source.kind {
                    crate::model::ExchangeKind::Fanout => source.exchange.clone(),
                    _ if *binding == source.publish => format!("{} {}", source.exchange, binding),
                    _ => format!("{} {} ~ {binding}", source.exchange, source.publish),
                }
            }
            Link::NatsSubject { subscription } | Link::NatsQueue { subscription } => {
                let subject = source.nats.as_ref().map_or("", |n| &n.publish);
                let nats = target.nats.as_ref();
                let filter = nats.map_or("", |n| &n.subscribe[*subscription]);
                let mut label = if filter == subject {
                    subject.to_owned()
                } else {
                    format!("{subject} ~ {filter}")
                };
                if let Some(queue) = nats.and_then(|n| n.queue.as_deref()) {
                    label.push_str(&format!(" [queue {queue}]"));
                }
                label
            }
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
    amqp_links(topology, &mut graph);
    nats_links(topology, &mut graph);
    graph
}

/// One edge per (publisher, other node's queue) on the same exchange of one
/// vhost when a binding of that queue routes the publisher's key. A node's
/// own messages come back through its own queue: its echoes (rule 1).
fn amqp_links(topology: &Topology, graph: &mut LinkGraph) {
    type Space = (ServerKey, String);
    let mut by_exchange: HashMap<(Space, &str), Vec<NodeId>> = HashMap::new();
    for id in topology.node_ids() {
        if let Some(link) = &topology.node(id).amqp {
            let space = topology.amqp_broker(link.broker).url.space();
            by_exchange
                .entry((space, &link.exchange))
                .or_default()
                .push(id);
        }
    }
    for from in topology.node_ids() {
        let Some(publisher) = &topology.node(from).amqp else {
            continue;
        };
        let space = topology.amqp_broker(publisher.broker).url.space();
        let Some(members) = by_exchange.get(&(space, publisher.exchange.as_str())) else {
            continue;
        };
        for &to in members.iter().filter(|&&to| to != from) {
            let queue = topology.node(to).amqp.as_ref().expect("indexed by amqp");
            if let Some(binding) = queue
                .bind
                .iter()
                .position(|b| publisher.kind.routes(b, &publisher.publish))
            {
                let (a, b) = (NodeIndex::new(from.0), NodeIndex::new(to.0));
                graph.add_edge(a, b, Link::Amqp { binding });
            }
        }
    }
}

/// For each NATS broker, the first broker of its subject space: brokers
/// that share a server (transitively) are one cluster.
pub fn nats_spaces(topology: &Topology) -> Vec<usize> {
    let brokers = &topology.nats_brokers;
    let mut space: Vec<usize> = (0..brokers.len()).collect();
    // Few brokers per file: a fixpoint over pairs is simple and enough.
    let mut changed = true;
    while changed {
        changed = false;
        for i in 0..brokers.len() {
            for j in 0..i {
                if space[i] != space[j] && brokers[i].url.shares_server(&brokers[j].url) {
                    let (keep, gone) = (space[i].min(space[j]), space[i].max(space[j]));
                    space
                        .iter_mut()
                        .filter(|s| **s == gone)
                        .for_each(|s| *s = keep);
                    changed = true;
                }
            }
        }
    }
    space
}

/// X -> Y for every subscription of Y matching X's subject on the same
/// servers (one per subscription: NATS sends one copy to each); a queue
/// member gets one edge, from its first matching subscription, because
/// the group takes a message once whatever the member's subscriptions.
/// No edge to X itself: nodes connect with echo off (rule 1).
fn nats_links(topology: &Topology, graph: &mut LinkGraph) {
    let spaces = nats_spaces(topology);
    let members: Vec<(NodeId, usize)> = topology
        .node_ids()
        .filter_map(|id| {
            let nats = topology.node(id).nats.as_ref()?;
            Some((id, spaces[nats.broker.0]))
        })
        .collect();
    for &(from, space) in &members {
        let publisher = topology.node(from).nats.as_ref().expect("listed with nats");
        for &(to, other) in &members {
            if to == from || other != space {
                continue;
            }
            let subscriber = topology.node(to).nats.as_ref().expect("listed with nats");
            let (a, b) = (NodeIndex::new(from.0), NodeIndex::new(to.0));
            let mut matching = subscriber
                .subscribe
                .iter()
                .enumerate()
                .filter(|(_, filter)| subject_matches(filter, &publisher.publish))
                .map(|(i, _)| i);
            if subscriber.queue.is_some() {
                if let Some(subscription) = matching.next() {
                    graph.add_edge(a, b, Link::NatsQueue { subscription });
                }
            } else {
                for subscription in matching {
                    graph.add_edge(a, b, Link::NatsSubject { subscription });
                }
            }
        }
    }
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
                graph.add_edge(NodeIndex::new(from.0), NodeIndex::new(to), Link::Zmq);
            }
        }
    }
}

fn redis_links(topology: &Topology, graph: &mut LinkGraph) {
    let server_of = |broker: BrokerId| topology.broker(broker).url.server();
    // Per server: who SUBSCRIBEs each channel, and who has any pattern. A
    // publisher meets only those, not every node on its server (100,000
    // nodes in rooms would be 10^10 pairs).
    // Sharded and classic pub/sub are separate spaces on one cluster:
    // SPUBLISH reaches only SSUBSCRIBErs, PUBLISH only (P)SUBSCRIBErs.
    let mut by_channel: HashMap<(ServerKey, bool, &str), Vec<NodeId>> = HashMap::new();
    let mut with_patterns: HashMap<ServerKey, Vec<NodeId>> = HashMap::new();
    for id in topology.node_ids() {
        let Some(redis) = &topology.node(id).redis else {
            continue;
        };
        let server = server_of(redis.broker);
        for channel in &redis.subscribe {
            let list = by_channel
                .entry((server.clone(), redis.sharded, channel))
                .or_default();
            // A channel listed twice is an error elsewhere; one edge here.
            if list.last() != Some(&id) {
                list.push(id);
            }
        }
        if !redis.patterns.is_empty() {
            with_patterns.entry(server).or_default().push(id);
        }
    }
    let mut candidates = Vec::new();
    for from in topology.node_ids() {
        let Some(publisher) = &topology.node(from).redis else {
            continue;
        };
        let channel = &publisher.publish;
        let server = server_of(publisher.broker);
        candidates.clear();
        let key = (server.clone(), publisher.sharded, channel.as_str());
        if let Some(list) = by_channel.get(&key) {
            candidates.extend_from_slice(list);
        }
        if let Some(list) = with_patterns.get(&server).filter(|_| !publisher.sharded) {
            candidates.extend_from_slice(list);
        }
        // Node order, as a scan of every node would give: edges (and so
        // every drawing) come out in the same order as before the index.
        candidates.sort_unstable();
        candidates.dedup();
        for &to in &candidates {
            if to == from {
                continue; // its echo (docs/topology-format.md rule 1)
            }
            let subscriber = topology.node(to).redis.as_ref().expect("indexed by redis");
            let (a, b) = (NodeIndex::new(from.0), NodeIndex::new(to.0));
            if subscriber.sharded == publisher.sharded
                && subscriber.subscribe.iter().any(|c| c == channel)
            {
                graph.add_edge(a, b, Link::RedisChannel);
            }
            for (pattern, text) in subscriber.patterns.iter().enumerate() {
                if glob_match(text.as_bytes(), channel.as_bytes()) {
                    graph.add_edge(a, b, Link::RedisPattern { pattern });
                }
            }
        }
    }
}
