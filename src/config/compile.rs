//! From the file's shape (`spec`) to the validated [`Topology`]: resolve
//! names, apply defaults, parse addresses, and check everything that does
//! not need the graph. Every problem is collected; none stops the others.

mod nats;

use super::address::{
    AddressError, is_nats_url, parse_amqp_url, parse_broker_url, parse_endpoint, parse_host,
};
use super::diagnostic::{Diagnostic, did_you_mean};
use super::limits;
use super::spec::{Listen, NodeSpec, RedisSpec, Spanned, TopologySpec};
use super::yaml::Span;
use crate::glob::glob_match;
use crate::model::{
    AmqpBroker, Broker, BrokerId, Endpoint, NatsBroker, Node, NodeId, RedisLink, Topology, ZmqLink,
    ZmqPublish, ZmqSubscription,
};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

mod amqp;

pub const DEFAULT_TOPIC: &str = "chat";
pub const DEFAULT_CHANNEL: &str = "chat_messages";

/// Compiles `spec`; returns a topology only when no error was found.
/// Relative paths in the file (a broker's `ca:`) are taken from `base_dir`.
pub fn compile(
    spec: &TopologySpec,
    default_name: &str,
    base_dir: &Path,
) -> (Option<Topology>, Vec<Diagnostic>) {
    let mut c = Compiler::default();
    if let Some(version) = &spec.version
        && version.value != 1
    {
        c.error(
            version.span,
            format!(
                "unknown version {}: this topo reads version 1",
                version.value
            ),
        );
    }
    let name = spec
        .name
        .as_ref()
        .map_or(default_name.to_owned(), |n| n.value.clone());
    c.brokers(spec, base_dir);
    let names: HashMap<&str, NodeId> = spec
        .nodes
        .0
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.value.as_str(), NodeId(i)))
        .collect();
    let mut nodes: Vec<Node> = spec
        .nodes
        .0
        .iter()
        .map(|(name, node)| c.node(name, node, spec))
        .collect();
    // Where each node's PUB is reached, formatted once per node rather
    // than once per subscriber (a full mesh of n nodes has n² subscriptions).
    let reached: Vec<Option<Endpoint>> = nodes
        .iter()
        .map(|n| {
            let publish = n.zmq.as_ref().and_then(|z| z.publish.as_ref());
            publish.map(|p| connect_endpoint(p.bind))
        })
        .collect();
    for (i, (_, node)) in spec.nodes.0.iter().enumerate() {
        c.subscriptions(NodeId(i), node, &names, &reached, &mut nodes);
    }
    c.listener_conflicts(spec, &nodes);
    c.unmatched_patterns(spec, &nodes);
    c.amqp_conflicts(spec, &nodes);
    c.unmatched_subjects(spec, &nodes);
    let mixed = super::sharding::mixed_sharding(spec, &nodes, &c.brokers);
    c.diagnostics.extend(mixed);
    if spec.nodes.0.is_empty() && c.diagnostics.iter().all(|d| !d.is_error()) {
        c.error(
            Span::new(1, 1),
            "`nodes:` is empty; a topology needs at least one node",
        );
    }
    let failed = c.diagnostics.iter().any(Diagnostic::is_error);
    let topology = Topology {
        name,
        nodes,
        brokers: c.brokers,
        amqp_brokers: c.amqp_brokers,
        nats_brokers: c.nats_brokers,
    };
    (if failed { None } else { Some(topology) }, c.diagnostics)
}

#[derive(Default)]
pub(super) struct Compiler {
    pub(super) diagnostics: Vec<Diagnostic>,
    brokers: Vec<Broker>,
    /// How many of `brokers` come from `brokers:`; inline URLs follow as they are met.
    named_brokers: usize,
    pub(super) amqp_brokers: Vec<AmqpBroker>,
    /// How many of `amqp_brokers` come from `brokers:`.
    pub(super) named_amqp_brokers: usize,
    /// Every name under `brokers:`, also those whose URL is invalid.
    declared_brokers: Vec<String>,
    /// NATS brokers, named ones (`named_nats` of them) first, then inline URLs.
    nats_brokers: Vec<NatsBroker>,
    named_nats: usize,
}

impl Compiler {
    pub(super) fn error(&mut self, span: Span, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::error(span, message));
    }

    pub(super) fn warning(&mut self, span: Span, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::warning(span, message));
    }

    fn brokers(&mut self, spec: &TopologySpec, base_dir: &Path) {
        for (name, broker) in spec.brokers.iter().flat_map(|b| b.0.iter()) {
            self.declared_brokers.push(name.value.clone());
            if is_amqp_url(&broker.url.value) {
                self.amqp_named_broker(name, broker, base_dir);
                continue;
            }
            if is_nats_url(&broker.url.value) {
                self.nats_broker(name, broker, base_dir);
                continue;
            }
            if let Some(mut url) = self.broker_url(name, broker, parse_broker_url) {
                if let Some(ca) = &broker.ca {
                    url.ca = self.certificate_authority(ca, url.tls, base_dir);
                }
                self.brokers.push(Broker {
                    name: name.value.clone(),
                    url,
                    span: name.span,
                })
            }
        }
        self.named_brokers = self.brokers.len();
        self.named_amqp_brokers = self.amqp_brokers.len();
        self.named_nats = self.nats_brokers.len();
    }

    fn amqp_named_broker(
        &mut self,
        name: &Spanned<String>,
        broker: &super::spec::BrokerSpec,
        base_dir: &Path,
    ) {
        if let Some(mut url) = self.broker_url(name, broker, parse_amqp_url) {
            if let Some(ca) = &broker.ca {
                url.ca = self.certificate_authority(ca, url.tls, base_dir);
            }
            self.amqp_brokers.push(AmqpBroker {
                name: name.value.clone(),
                url,
                span: name.span,
            })
        }
    }

    /// A named broker's URL, parsed by its kind's parser; a bad one is an
    /// error at the URL naming the broker (the message never repeats the URL).
    pub(super) fn broker_url<U, E: std::fmt::Display>(
        &mut self,
        name: &Spanned<String>,
        broker: &super::spec::BrokerSpec,
        parse: impl Fn(&str) -> Result<U, E>,
    ) -> Option<U> {
        match parse(&broker.url.value) {
            Ok(url) => Some(url),
            Err(message) => {
                self.error(
                    broker.url.span,
                    format!("broker `{}`: {message}", name.value),
                );
                None
            }
        }
    }

    /// A `ca:` file, relative to the topology file; it must be readable now,
    /// so that a typo fails validation instead of every TLS connection.
    pub(super) fn certificate_authority(
        &mut self,
        ca: &Spanned<String>,
        tls: bool,
        base_dir: &Path,
    ) -> Option<PathBuf> {
        if !tls {
            self.error(
                ca.span,
                "`ca:` only applies to a rediss:// or amqps:// (TLS) broker URL",
            );
            return None;
        }
        let path = base_dir.join(&ca.value);
        match crate::config::read::read_certificate(&path) {
            Ok(pem) if pem.windows(11).any(|w| w == b"-----BEGIN ") => Some(path),
            Ok(_) => {
                self.error(ca.span, format!("`{}` holds no PEM certificate", ca.value));
                None
            }
            Err(e) => {
                self.error(ca.span, e.to_string());
                None
            }
        }
    }

    fn broker(&mut self, reference: &Spanned<String>, names: &[String]) -> Option<BrokerId> {
        let text = &reference.value;
        if is_amqp_url(text) {
            self.error(
                reference.span,
                "this is an AMQP URL; a redis section needs a redis:// broker (an AMQP broker goes in an `amqp:` section)",
            );
            return None;
        }
        if text.contains("://") {
            let url = match parse_broker_url(text) {
                Ok(url) => url,
                Err(error) => {
                    self.error(reference.span, error.to_string());
                    return None;
                }
            };
            let shown = url.to_string();
            if let Some(i) = self.brokers[self.named_brokers..]
                .iter()
                .position(|b| b.url == url)
            {
                return Some(BrokerId(self.named_brokers + i));
            }
            self.brokers.push(Broker {
                name: shown,
                url,
                span: reference.span,
            });
            return Some(BrokerId(self.brokers.len() - 1));
        }
        if let Some(i) = self.brokers[..self.named_brokers]
            .iter()
            .position(|b| &b.name == text)
        {
            return Some(BrokerId(i));
        }
        if let Some(amqp) = self.amqp_brokers[..self.named_amqp_brokers]
            .iter()
            .find(|b| &b.name == text)
        {
            let message = format!(
                "broker `{text}` is an AMQP broker ({}); a redis section needs a redis:// broker",
                amqp.url
            );
            self.error(reference.span, message);
            return None;
        }
        if self.is_nats_broker(text) {
            self.error(
                reference.span,
                format!(
                    "broker `{text}` is a NATS server; a redis section needs a redis:// broker"
                ),
            );
            return None;
        }
        if self.declared_brokers.iter().any(|n| n == text) {
            return None; // the broker itself is invalid and already reported
        }
        let hint = match did_you_mean(text, names.iter().map(String::as_str)) {
            Some(s) => format!("; did you mean `{s}`?"),
            None if names.is_empty() => {
                "; define it under `brokers:` or give a URL like redis://127.0.0.1:6379".to_owned()
            }
            None => format!("; known brokers: {}", names.join(", ")),
        };
        self.error(reference.span, format!("unknown broker `{text}`{hint}"));
        None
    }

    fn node(&mut self, name: &Spanned<String>, spec: &NodeSpec, file: &TopologySpec) -> Node {
        let host = match &spec.host {
            Some(host) => match parse_host(&host.value) {
                Ok(ip) => {
                    if ip.is_unspecified() {
                        self.warning(
                            host.span,
                            format!(
                                "node `{}` binds {ip}: it is reachable from other machines",
                                name.value
                            ),
                        );
                    }
                    ip
                }
                Err(error) => {
                    self.error(host.span, error.to_string());
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                }
            },
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        let zmq = spec.zmq.as_ref().map(|zmq| {
            let topic = zmq
                .value
                .topic
                .as_ref()
                .map_or(DEFAULT_TOPIC.to_owned(), |t| t.value.clone());
            if let Some(t) = &zmq.value.topic
                && t.value.contains(' ')
            {
                self.error(
                    t.span,
                    "a topic cannot contain a space: frames are `<topic> <text>`",
                );
            }
            let publish = zmq.value.publish.as_ref().and_then(|p| match &p.value {
                Listen::Port(port) => Some(SocketAddr::new(host, *port)),
                Listen::Endpoint(text) => match parse_endpoint(text).and_then(|e| bind_address(&e))
                {
                    Ok(addr) => Some(addr),
                    Err(error) => {
                        self.error(p.span, error.to_string());
                        None
                    }
                },
            });
            ZmqLink {
                publish: publish.map(|bind| ZmqPublish { bind, topic }),
                subscribe: Vec::new(),
                filter: zmq
                    .value
                    .filter
                    .as_ref()
                    .map_or(DEFAULT_TOPIC.to_owned(), |f| f.value.clone()),
            }
        });
        let broker_names: Vec<String> = self.brokers[..self.named_brokers]
            .iter()
            .map(|b| b.name.clone())
            .collect();
        let redis = spec.redis.as_ref().and_then(|redis| {
            let r = &redis.value;
            let Some(reference) = &r.broker else {
                self.error(redis.span, format!("node `{}`: a redis section needs `broker:` (a name from brokers: or a URL)", name.value));
                return None;
            };
            let broker = self.broker(reference, &broker_names)?;
            let publish = r.publish.as_ref().map_or(DEFAULT_CHANNEL.to_owned(), |p| p.value.clone());
            if let Some(p) = &r.publish
                && p.value.is_empty()
            {
                self.error(p.span, "the publish channel cannot be empty");
            }
            let subscribe = match &r.subscribe {
                Some(list) => self.unique(&list.value, "channel"),
                None => vec![publish.clone()],
            };
            let patterns = r.patterns.as_ref().map_or(Vec::new(), |list| self.unique(&list.value, "pattern"));
            let sharded = self.sharded(r, broker, &patterns);
            Some(RedisLink {
                broker,
                publish,
                subscribe,
                patterns,
                sharded,
            })
        });
        let amqp = spec
            .amqp
            .as_ref()
            .and_then(|amqp| self.amqp_link(&name.value, amqp));
        let nats = self.nats_link(name, spec);
        if spec.relay.as_ref().is_some_and(|r| r.value)
            && spec.zmq.is_none()
            && spec.redis.is_none()
            && spec.amqp.is_none()
            && spec.nats.is_none()
        {
            self.warning(
                name.span,
                format!(
                    "node `{}` is a relay without links: it has nothing to forward",
                    name.value
                ),
            );
        }
        let limits = limits::resolve(
            file.limits.as_ref().map(|l| &l.value),
            spec.limits.as_ref().map(|l| &l.value),
            file.origins.as_ref(),
            spec.origins.as_ref(),
            &mut self.diagnostics,
        );
        Node {
            name: name.value.clone(),
            span: name.span,
            http: spec.http.as_ref().map(|p| SocketAddr::new(host, p.value.0)),
            zmq,
            redis,
            amqp,
            nats,
            relay: spec.relay.as_ref().is_some_and(|r| r.value),
            limits,
        }
    }

    /// `sharded: true` needs a cluster broker (what SPUBLISH scales across)
    /// and admits no patterns: Redis has no sharded PSUBSCRIBE.
    fn sharded(&mut self, r: &RedisSpec, broker: BrokerId, patterns: &[String]) -> bool {
        let Some(sharded) = r.sharded.as_ref().filter(|s| s.value) else {
            return false;
        };
        if !self.brokers[broker.0].url.cluster {
            self.error(
                sharded.span,
                "`sharded: true` needs a Redis Cluster broker (redis+cluster://host:port,…)",
            );
        }
        if let Some(list) = r.patterns.as_ref().filter(|_| !patterns.is_empty()) {
            self.error(
                list.span,
                "patterns cannot be sharded: Redis has SSUBSCRIBE for exact channels only; \
                 drop `patterns:` or `sharded: true`",
            );
        }
        true
    }

    /// Redis ignores a second SUBSCRIBE to the same channel, so a repeated
    /// entry would make the file claim a delivery that never happens.
    pub(super) fn unique(&mut self, list: &[Spanned<String>], what: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for item in list {
            if item.value.is_empty() {
                self.error(item.span, format!("a {what} cannot be empty"));
            } else if out.contains(&item.value) {
                self.error(
                    item.span,
                    format!("{what} `{}` is listed twice", item.value),
                );
            } else {
                out.push(item.value.clone());
            }
        }
        out
    }

    fn subscriptions(
        &mut self,
        me: NodeId,
        spec: &NodeSpec,
        names: &HashMap<&str, NodeId>,
        reached: &[Option<Endpoint>],
        nodes: &mut [Node],
    ) {
        let Some(zmq) = &spec.zmq else { return };
        let Some(list) = &zmq.value.sub else { return };
        let my_name = nodes[me.0].name.clone();
        let mut resolved = Vec::with_capacity(list.value.len());
        for item in &list.value {
            match resolve_sub(&item.value, names, reached, nodes) {
                Err(message) => self.error(item.span, message),
                Ok((_, from)) if from == Some(me) => {
                    self.error(item.span, format!("node `{my_name}` subscribes to itself"));
                }
                Ok((endpoint, from)) => resolved.push((endpoint, from, item)),
            }
        }
        // The second and later subscriptions to one endpoint are errors;
        // compared by reference, not through a copy of each endpoint.
        let mut seen = HashSet::with_capacity(resolved.len());
        let first: Vec<bool> = resolved.iter().map(|(e, ..)| seen.insert(e)).collect();
        drop(seen);
        let mut subscriptions = Vec::with_capacity(resolved.len());
        for ((endpoint, from, item), first) in resolved.into_iter().zip(first) {
            if !first {
                self.error(
                    item.span,
                    format!("`{}` is subscribed twice by node `{my_name}`", item.value),
                );
                continue;
            }
            if from.is_none() {
                self.warning(item.span, format!("no node of this file binds {endpoint}"));
            }
            subscriptions.push(ZmqSubscription {
                endpoint,
                from,
                span: item.span,
            });
        }
        if let Some(z) = nodes[me.0].zmq.as_mut() {
            z.subscribe = subscriptions;
        }
    }

    fn listener_conflicts(&mut self, spec: &TopologySpec, nodes: &[Node]) {
        let mut listeners: Vec<(SocketAddr, Span, String)> = Vec::new();
        for (node, (_, s)) in nodes.iter().zip(&spec.nodes.0) {
            if let (Some(addr), Some(p)) = (node.http, &s.http) {
                listeners.push((addr, p.span, format!("node `{}`'s http", node.name)));
            }
            let publish = node.zmq.as_ref().and_then(|z| z.publish.as_ref());
            let span = s
                .zmq
                .as_ref()
                .and_then(|z| z.value.publish.as_ref())
                .map(|p| p.span);
            if let (Some(publish), Some(span)) = (publish, span) {
                listeners.push((
                    publish.bind,
                    span,
                    format!("node `{}`'s zmq pub", node.name),
                ));
            }
        }
        let mut by_port: HashMap<u16, Vec<usize>> = HashMap::new();
        for (i, (addr, _, _)) in listeners.iter().enumerate() {
            by_port.entry(addr.port()).or_default().push(i);
        }
        let mut conflicts: Vec<(usize, usize)> = Vec::new();
        for group in by_port.values().filter(|g| g.len() > 1) {
            for (k, &later) in group.iter().enumerate() {
                if let Some(&first) = group[..k]
                    .iter()
                    .find(|&&first| overlaps(listeners[first].0.ip(), listeners[later].0.ip()))
                {
                    conflicts.push((first, later));
                }
            }
        }
        conflicts.sort_unstable();
        for (first, later) in conflicts {
            let (addr, span, what) = &listeners[later];
            let (other, other_span, other_what) = &listeners[first];
            self.error(
                *span,
                format!(
                    "{what} listens on {addr}, which {other_what} already uses ({other}, line {})",
                    other_span.line
                ),
            );
        }
    }

    /// A pattern is suspicious when no node of the file publishes on a channel it matches.
    fn unmatched_patterns(&mut self, spec: &TopologySpec, nodes: &[Node]) {
        for (node, (_, s)) in nodes.iter().zip(&spec.nodes.0) {
            let Some(redis) = &node.redis else { continue };
            let server = self.brokers[redis.broker.0].url.server();
            let written = s.redis.as_ref().and_then(|r| r.value.patterns.as_ref());
            for item in written.iter().flat_map(|list| list.value.iter()) {
                let matched = nodes.iter().filter_map(|n| n.redis.as_ref()).any(|other| {
                    self.brokers[other.broker.0].url.server() == server
                        && !other.sharded
                        && glob_match(item.value.as_bytes(), other.publish.as_bytes())
                });
                if !matched && !item.value.is_empty() {
                    self.warning(
                        item.span,
                        format!(
                            "pattern `{}` matches no channel published in this file",
                            item.value
                        ),
                    );
                }
            }
        }
    }
}

pub(super) fn is_amqp_url(text: &str) -> bool {
    text.starts_with("amqp://") || text.starts_with("amqps://")
}

fn unknown_node(text: &str, is_number: bool, names: &HashMap<&str, NodeId>) -> String {
    if is_number {
        return format!(
            "`{text}` is not a node name: to subscribe to a port write tcp://127.0.0.1:{text}, or name the node"
        );
    }
    match did_you_mean(text, names.keys().copied()) {
        Some(s) => format!("unknown node `{text}`; did you mean `{s}`?"),
        None => format!("unknown node `{text}`"),
    }
}

/// The address a PUB socket binds for an endpoint written in the file.
fn bind_address(endpoint: &Endpoint) -> Result<SocketAddr, AddressError> {
    let ip =
        parse_host(&endpoint.host).map_err(|_| AddressError::PubNotAnIp(endpoint.host.clone()))?;
    Ok(SocketAddr::new(ip, endpoint.port))
}

/// Where a subscriber of this file connects to reach a PUB bound at `bind`.
/// What one `sub:` entry names: an endpoint (and the node of this file that
/// binds it, if any), or why it names none.
fn resolve_sub(
    item: &str,
    names: &HashMap<&str, NodeId>,
    reached: &[Option<Endpoint>],
    nodes: &[Node],
) -> Result<(Endpoint, Option<NodeId>), String> {
    if item.contains("://") {
        let endpoint = parse_endpoint(item).map_err(|error| error.to_string())?;
        let from = nodes
            .iter()
            .position(|n| publishes_at(n, &endpoint))
            .map(NodeId);
        return Ok((endpoint, from));
    }
    match names.get(item) {
        Some(&id) => match &reached[id.0] {
            Some(endpoint) => Ok((endpoint.clone(), Some(id))),
            None => Err(format!("`{item}` has no zmq `pub:` to subscribe to")),
        },
        None => Err(unknown_node(item, item.parse::<u16>().is_ok(), names)),
    }
}

pub fn connect_endpoint(bind: SocketAddr) -> Endpoint {
    let ip = match bind.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Endpoint {
        host: ip.to_string(),
        port: bind.port(),
    }
}

fn publishes_at(node: &Node, endpoint: &Endpoint) -> bool {
    let Some(publish) = node.zmq.as_ref().and_then(|z| z.publish.as_ref()) else {
        return false;
    };
    if publish.bind.port() != endpoint.port {
        return false;
    }
    match parse_host(&endpoint.host) {
        Ok(ip) => overlaps(publish.bind.ip(), ip),
        Err(_) => false,
    }
}

/// Two listeners on one port collide when one address includes the other.
pub fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    a == b
        || a.is_unspecified() && (a.is_ipv6() || b.is_ipv4())
        || b.is_unspecified() && (b.is_ipv6() || a.is_ipv4())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(overlaps(ip("0.0.0.0"), ip("127.0.0.1")));
        assert!(overlaps(ip("127.0.0.1"), ip("127.0.0.1")));
        assert!(!overlaps(ip("127.0.0.1"), ip("127.0.0.2")));
        assert!(overlaps(ip("::"), ip("127.0.0.1")));
        assert!(!overlaps(ip("0.0.0.0"), ip("::1")));
    }
}
