//! The validated topology: what `config::compile` produces and every later
//! stage (analysis, runtime, reload) trusts without checking again.
//!
//! Names are resolved to indices, defaults are filled in, addresses are
//! parsed. Positions are kept (`Span`) only where a later warning or a
//! reload message needs to point back into the file.

use crate::span::Span;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

mod nats;
pub use nats::{NatsAuth, NatsBroker, NatsBrokerId, NatsLink, NatsListing, NatsUrl, NatsWiring};

/// Index of a node in [`Topology::nodes`] (file order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub usize);

/// Index of a broker in [`Topology::brokers`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BrokerId(pub usize);

/// Index of an AMQP broker in [`Topology::amqp_brokers`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AmqpBrokerId(pub usize);

#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    pub name: String,
    pub nodes: Vec<Node>,
    /// Redis brokers: named ones first (file order), then one per distinct inline URL.
    pub brokers: Vec<Broker>,
    /// AMQP brokers (`amqp://`, `amqps://`), in the same order.
    pub amqp_brokers: Vec<AmqpBroker>,
    /// NATS brokers: named ones first (file order), then inline URLs.
    pub nats_brokers: Vec<NatsBroker>,
}

impl Topology {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    pub fn broker(&self, id: BrokerId) -> &Broker {
        &self.brokers[id.0]
    }

    pub fn amqp_broker(&self, id: AmqpBrokerId) -> &AmqpBroker {
        &self.amqp_brokers[id.0]
    }

    pub fn nats_broker(&self, id: NatsBrokerId) -> &NatsBroker {
        &self.nats_brokers[id.0]
    }

    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name == name).map(NodeId)
    }

    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.nodes.len()).map(NodeId)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub span: Span,
    /// Where the chat page and the WebSocket endpoint listen; `None`: no clients.
    pub http: Option<SocketAddr>,
    pub zmq: Option<ZmqLink>,
    pub redis: Option<RedisLink>,
    pub amqp: Option<AmqpLink>,
    pub nats: Option<NatsLink>,
    /// Forward what it receives onto its other outbound links (docs/topology-format.md rule 4).
    pub relay: bool,
    /// What a client or an outage may cost this node (file: `limits:`, `origins:`).
    pub limits: Limits,
}

/// A node's limits, defaults filled in (see `config::limits` for the file's keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest WebSocket message (and frame) accepted; bigger: close 1009.
    pub max_message_bytes: usize,
    /// Open WebSocket connections at most; beyond: the upgrade gets 503.
    pub max_connections: usize,
    /// Messages a client may fall behind before it is disconnected (1008).
    pub send_queue: usize,
    /// A ping to every client this often.
    pub ping_interval: Duration,
    /// A client that sent nothing (not even a pong) for this long is dropped.
    pub idle_timeout: Duration,
    /// Messages held while the Redis link is down; beyond it the oldest go.
    pub outbox: usize,
    /// ZeroMQ messages queued per PUB subscriber and per SUB; beyond: dropped, counted.
    pub zmq_hwm: usize,
    /// Allowed browser `Origin`s for upgrades; empty: any.
    pub origins: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 64 * 1024,
            max_connections: 10_000,
            send_queue: 1024,
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            outbox: 1000,
            zmq_hwm: 1000,
            origins: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ZmqLink {
    /// The PUB socket, when this node publishes.
    pub publish: Option<ZmqPublish>,
    /// One SUB connection per entry, in file order.
    pub subscribe: Vec<ZmqSubscription>,
    /// Byte prefix this node's SUB sockets subscribe with.
    pub filter: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ZmqPublish {
    /// The address the PUB socket binds.
    pub bind: SocketAddr,
    /// Every frame is `<topic> <text>`.
    pub topic: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ZmqSubscription {
    /// What the SUB socket connects to.
    pub endpoint: Endpoint,
    /// The node of this file that binds it, if any.
    pub from: Option<NodeId>,
    pub span: Span,
}

/// A `tcp://host:port` endpoint to connect to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "tcp://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "tcp://{}:{}", self.host, self.port)
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RedisLink {
    pub broker: BrokerId,
    /// The channel this node publishes its clients' messages on.
    pub publish: String,
    /// Exact channels (SUBSCRIBE), without duplicates.
    pub subscribe: Vec<String>,
    /// Glob patterns (PSUBSCRIBE), without duplicates.
    pub patterns: Vec<String>,
    /// Sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis Cluster only); then
    /// `patterns` is empty.
    pub sharded: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Broker {
    /// The name under `brokers:`, or the redacted URL of an inline broker.
    pub name: String,
    pub url: RedisUrl,
    pub span: Span,
}

/// A parsed `redis://` or `rediss://` URL, or a `redis+cluster://` /
/// `rediss+cluster://` one listing the seed nodes of a Redis Cluster
/// (`host`/`port` is the first seed, `seeds` the others).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
    /// For `rediss://`: a PEM file of the certificate authority to trust
    /// instead of the system's roots (the broker's `ca:`).
    pub ca: Option<std::path::PathBuf>,
    /// A Redis Cluster: connect through the cluster client.
    pub cluster: bool,
    /// The cluster's seed nodes after the first, in the order written.
    pub seeds: Vec<(String, u16)>,
}

impl RedisUrl {
    /// Two URLs reach the same pub/sub space when they name the same server;
    /// the database number does not matter to pub/sub.
    ///
    /// A cluster is one pub/sub space whichever seed a client names (classic
    /// PUBLISH is broadcast to every node; a shard's channels are reached
    /// from any): it is keyed by its lowest seed, so two brokers listing
    /// the same seeds, in any order, are the same cluster.
    pub fn server(&self) -> ServerKey {
        let first = ServerKey::canonical(&self.host, self.port);
        if !self.cluster {
            return first;
        }
        self.seeds
            .iter()
            .map(|(host, port)| ServerKey::canonical(host, *port))
            .fold(first, std::cmp::min)
    }

    /// Every seed node, the first one included.
    pub fn all_seeds(&self) -> impl Iterator<Item = (&str, u16)> {
        std::iter::once((self.host.as_str(), self.port))
            .chain(self.seeds.iter().map(|(h, p)| (h.as_str(), *p)))
    }

    /// One connection string per seed (a cluster's are the seeds with the
    /// credentials; a single server's is [`Self::connection_string`]).
    /// Never print these.
    pub fn seed_connection_strings(&self) -> Vec<String> {
        self.all_seeds()
            .map(|(host, port)| self.connection_string_for(host, port))
            .collect()
    }

    /// The URL with its secret in it, for connecting. Never print this.
    pub fn connection_string(&self) -> String {
        self.connection_string_for(&self.host, self.port)
    }

    fn connection_string_for(&self, host: &str, port: u16) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let auth = match (&self.username, &self.password) {
            (Some(user), Some(pass)) => format!("{user}:{pass}@"),
            (None, Some(pass)) => format!(":{pass}@"),
            (Some(user), None) => format!("{user}@"),
            (None, None) => String::new(),
        };
        format!("{scheme}://{auth}{}:{port}/{}", host_for_url(host), self.db)
    }
}

pub(crate) fn host_for_url(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Displays with the password replaced by `***`: safe for logs and output.
impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let cluster = if self.cluster { "+cluster" } else { "" };
        write!(f, "{scheme}{cluster}://")?;
        match (&self.username, &self.password) {
            (Some(user), Some(_)) => write!(f, "{user}:***@")?,
            (None, Some(_)) => write!(f, ":***@")?,
            (Some(user), None) => write!(f, "{user}@")?,
            (None, None) => {}
        }
        write!(f, "{}:{}", host_for_url(&self.host), self.port)?;
        for (host, port) in &self.seeds {
            write!(f, ",{}:{port}", host_for_url(host))?;
        }
        if self.db != 0 {
            write!(f, "/{}", self.db)?;
        }
        Ok(())
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Identifies one Redis server: its pub/sub channels are shared by all who connect.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerKey {
    pub host: String,
    pub port: u16,
}

impl ServerKey {
    /// The key of `host:port` with every spelling of loopback as one host,
    /// so that two addresses of one server compare equal.
    pub fn canonical(host: &str, port: u16) -> ServerKey {
        let host = match host.parse::<IpAddr>() {
            Ok(ip) if ip.is_loopback() => "127.0.0.1".to_owned(),
            Ok(ip) => ip.to_string(),
            Err(_) if host.eq_ignore_ascii_case("localhost") => "127.0.0.1".to_owned(),
            Err(_) => host.to_ascii_lowercase(),
        };
        ServerKey { host, port }
    }
}

impl fmt::Display for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", host_for_url(&self.host), self.port)
    }
}

/// One node's configuration resolved against its topology: everything the
/// runtime needs to run it, with no index into the file (so two files'
/// wirings compare directly, whatever the order of their nodes or brokers).
#[derive(Clone, Debug, PartialEq)]
pub struct Wiring {
    pub name: String,
    pub http: Option<SocketAddr>,
    pub publish: Option<ZmqPublish>,
    /// Endpoints of the SUB sockets, in file order.
    pub subscribe: Vec<Endpoint>,
    /// The SUB sockets' prefix; empty when there is no SUB socket.
    pub filter: String,
    pub redis: Option<RedisWiring>,
    pub amqp: Option<AmqpWiring>,
    pub nats: Option<NatsWiring>,
    pub relay: bool,
    pub limits: Limits,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RedisWiring {
    pub url: RedisUrl,
    pub publish: String,
    pub subscribe: Vec<String>,
    pub patterns: Vec<String>,
    pub sharded: bool,
}

/// A node's links resolved to names and addresses, in file order: the one
/// source for every listing and drawing of them (the ready table, `topo up
/// -v`, the admin view, `topo graph`'s dot and mermaid), which only choose
/// how much of it to show.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeLinks<'a> {
    pub publish: Option<&'a ZmqPublish>,
    pub subscribe: Vec<SubscribeListing<'a>>,
    /// The SUB sockets' prefix; empty when there is no SUB socket.
    pub filter: &'a str,
    pub redis: Option<RedisListing<'a>>,
    pub amqp: Option<AmqpListing<'a>>,
    pub nats: Option<NatsListing<'a>>,
    pub relay: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SubscribeListing<'a> {
    pub endpoint: &'a Endpoint,
    /// The node publishing there, when it is one of the file's.
    pub from: Option<&'a str>,
    /// The same node, by id.
    pub publisher: Option<NodeId>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RedisListing<'a> {
    pub broker: &'a Broker,
    pub broker_id: BrokerId,
    pub publish: &'a str,
    pub subscribe: &'a [String],
    pub patterns: &'a [String],
    pub sharded: bool,
}

impl<'a> NodeLinks<'a> {
    pub fn of(topology: &'a Topology, id: NodeId) -> NodeLinks<'a> {
        let node = topology.node(id);
        let zmq = node.zmq.as_ref();
        let subscribe: Vec<SubscribeListing<'a>> = zmq
            .map(|z| {
                z.subscribe
                    .iter()
                    .map(|s| SubscribeListing {
                        endpoint: &s.endpoint,
                        from: s.from.map(|f| topology.node(f).name.as_str()),
                        publisher: s.from,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let filter = match zmq {
            Some(z) if !subscribe.is_empty() => z.filter.as_str(),
            _ => "",
        };
        NodeLinks {
            publish: zmq.and_then(|z| z.publish.as_ref()),
            subscribe,
            filter,
            redis: node.redis.as_ref().map(|r| RedisListing {
                broker: topology.broker(r.broker),
                broker_id: r.broker,
                publish: &r.publish,
                subscribe: &r.subscribe,
                patterns: &r.patterns,
                sharded: r.sharded,
            }),
            amqp: node.amqp.as_ref().map(|link| AmqpListing {
                broker: topology.amqp_broker(link.broker),
                link,
            }),
            nats: node.nats.as_ref().map(|n| NatsListing {
                broker: topology.nats_broker(n.broker),
                publish: &n.publish,
                subscribe: &n.subscribe,
                queue: n.queue.as_deref(),
            }),
            relay: node.relay,
        }
    }
}

impl Wiring {
    pub fn of(topology: &Topology, id: NodeId) -> Wiring {
        let node = topology.node(id);
        let zmq = node.zmq.as_ref();
        let subscribe: Vec<Endpoint> = zmq
            .map(|z| z.subscribe.iter().map(|s| s.endpoint.clone()).collect())
            .unwrap_or_default();
        let filter = match zmq {
            Some(z) if !subscribe.is_empty() => z.filter.clone(),
            _ => String::new(),
        };
        Wiring {
            name: node.name.clone(),
            http: node.http,
            publish: zmq.and_then(|z| z.publish.clone()),
            subscribe,
            filter,
            redis: node.redis.as_ref().map(|r| RedisWiring {
                url: topology.broker(r.broker).url.clone(),
                publish: r.publish.clone(),
                subscribe: r.subscribe.clone(),
                patterns: r.patterns.clone(),
                sharded: r.sharded,
            }),
            amqp: node.amqp.as_ref().map(|l| AmqpWiring::of(topology, l)),
            nats: node.nats.as_ref().map(|n| NatsWiring {
                url: topology.nats_broker(n.broker).url.clone(),
                publish: n.publish.clone(),
                subscribe: n.subscribe.clone(),
                queue: n.queue.clone(),
            }),
            relay: node.relay,
            limits: node.limits.clone(),
        }
    }
}

/// The three exchange types topo declares (RabbitMQ's `headers` is not one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ExchangeKind {
    /// Every bound queue gets every message; routing keys are ignored.
    #[default]
    Fanout,
    /// Binding keys with `*` (one word) and `#` (any number of words).
    Topic,
    /// A binding key equal to the routing key.
    Direct,
}

impl ExchangeKind {
    /// The name RabbitMQ (and the file) uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Direct => "direct",
        }
    }

    /// Whether a queue bound with `binding` gets a message published with `key`.
    pub fn routes(self, binding: &str, key: &str) -> bool {
        match self {
            ExchangeKind::Fanout => true,
            ExchangeKind::Direct => binding == key,
            ExchangeKind::Topic => crate::topic::topic_match(binding, key),
        }
    }
}

impl fmt::Display for ExchangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node's `amqp:` section, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct AmqpLink {
    pub broker: AmqpBrokerId,
    pub exchange: String,
    pub kind: ExchangeKind,
    /// The routing key of what this node publishes; empty on a fanout exchange.
    pub publish: String,
    /// Binding keys of this node's queue, without duplicates; on a fanout
    /// exchange one empty key (the queue is bound once).
    pub bind: Vec<String>,
    /// A named durable queue (a durable subscriber); `None`: an exclusive,
    /// auto-deleted queue that lives as long as the node's connection.
    pub queue: Option<String>,
    /// A durable queue keeps at most this many messages; beyond, RabbitMQ drops the oldest.
    pub max_length: u32,
    /// Unacknowledged deliveries in flight to this node at most.
    pub prefetch: u16,
}

impl AmqpLink {
    pub fn durable(&self) -> bool {
        self.queue.is_some()
    }

    /// Whether a message published with `key` on this node's exchange reaches its queue.
    pub fn hears(&self, key: &str) -> bool {
        self.bind.iter().any(|b| self.kind.routes(b, key))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct AmqpBroker {
    /// The name under `brokers:`, or the redacted URL of an inline broker.
    pub name: String,
    pub url: AmqpUrl,
    pub span: Span,
}

/// A parsed `amqp://` or `amqps://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Decoded (`%2f` is `/`, the default).
    pub vhost: String,
    /// For `amqps://`: a PEM file of the certificate authority to trust.
    pub ca: Option<std::path::PathBuf>,
}

impl AmqpUrl {
    /// Exchanges and queues are shared by everyone on one server's vhost.
    pub fn space(&self) -> (ServerKey, String) {
        (
            ServerKey::canonical(&self.host, self.port),
            self.vhost.clone(),
        )
    }

    /// The URL with its secret in it, for connecting. Never print this.
    pub fn connection_string(&self) -> String {
        let scheme = if self.tls { "amqps" } else { "amqp" };
        let auth = match (&self.username, &self.password) {
            (Some(user), Some(pass)) => format!("{}:{}@", encode(user), encode(pass)),
            (None, Some(pass)) => format!(":{}@", encode(pass)),
            (Some(user), None) => format!("{}@", encode(user)),
            (None, None) => String::new(),
        };
        format!(
            "{scheme}://{auth}{}:{}/{}",
            host_for_url(&self.host),
            self.port,
            encode(&self.vhost)
        )
    }
}

/// Percent-encodes everything but unreserved characters (a vhost `/` is `%2F`).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Displays with the password replaced by `***`; the default vhost `/` is left out.
impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "amqps" } else { "amqp" };
        write!(f, "{scheme}://")?;
        match (&self.username, &self.password) {
            (Some(user), Some(_)) => write!(f, "{}:***@", encode(user))?,
            (None, Some(_)) => write!(f, ":***@")?,
            (Some(user), None) => write!(f, "{}@", encode(user))?,
            (None, None) => {}
        }
        write!(f, "{}:{}", host_for_url(&self.host), self.port)?;
        if self.vhost != "/" {
            write!(f, "/{}", encode(&self.vhost))?;
        }
        Ok(())
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What follows a durable queue's name in the name of its companion, the
/// queue that receives what `max_length` dropped from it (dead-lettered),
/// so the node can count it.
pub const AMQP_DROPPED_SUFFIX: &str = ".dropped";

/// The companion queue of durable queue `queue` (see [`AMQP_DROPPED_SUFFIX`]).
pub fn amqp_dropped_queue(queue: &str) -> String {
    format!("{queue}{AMQP_DROPPED_SUFFIX}")
}

/// A node's AMQP link as the runtime needs it: broker by URL, not by index.
#[derive(Clone, Debug, PartialEq)]
pub struct AmqpWiring {
    pub url: AmqpUrl,
    pub exchange: String,
    pub kind: ExchangeKind,
    pub publish: String,
    pub bind: Vec<String>,
    pub queue: Option<String>,
    pub max_length: u32,
    pub prefetch: u16,
}

impl AmqpWiring {
    fn of(topology: &Topology, link: &AmqpLink) -> AmqpWiring {
        AmqpWiring {
            url: topology.amqp_broker(link.broker).url.clone(),
            exchange: link.exchange.clone(),
            kind: link.kind,
            publish: link.publish.clone(),
            bind: link.bind.clone(),
            queue: link.queue.clone(),
            max_length: link.max_length,
            prefetch: link.prefetch,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct AmqpListing<'a> {
    pub broker: &'a AmqpBroker,
    pub link: &'a AmqpLink,
}
