//! How chat messages move between a node and the outside: the message type,
//! the one trait every outbound link implements, and per-link status.
//! Transports only carry text; what a node does with it (local delivery,
//! relaying) lives in `node::router`, never here.

pub mod amqp;
pub mod echo;
pub mod local;
pub mod nats;
pub mod outbox;
pub mod queue;
pub mod redis;
pub mod retry;
pub mod zmq;
pub mod zmtp;

pub use crate::health::{LinkKind, LinkState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, watch};

/// One chat message: valid UTF-8 (WebSocket text frames must be), encoded once
/// and shared by every client and link through cheap clones.
pub type Text = axum::extract::ws::Utf8Bytes;

/// Where a message entered a node; relaying uses it to avoid sending a
/// message back onto the Redis server or AMQP exchange it came from
/// (docs/topology-format.md rule 4).
/// message back onto the broker it came from (docs/topology-format.md rule 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Client,
    Zmq,
    Redis,
    Amqp,
    Nats,
}

impl Origin {
    /// A broker link: what came by it never goes back onto it.
    pub fn is_broker(self) -> bool {
        matches!(self, Origin::Redis | Origin::Amqp | Origin::Nats)
    }
}

/// A message received from a link, on its way to the node's router.
#[derive(Clone, Debug)]
pub struct Received {
    pub origin: Origin,
    pub text: Text,
    /// Told once the router handed the message to the node's hub (AMQP
    /// acknowledges a delivery only then); `None` for links without acks.
    pub ack: Option<Ack>,
}

/// A delivery to acknowledge: its tag, sent back to the link's task.
#[derive(Clone, Debug)]
pub struct Ack {
    pub tag: u64,
    pub to: mpsc::UnboundedSender<u64>,
}

impl Ack {
    pub fn done(self) {
        // The link is gone: RabbitMQ redelivers what was not acknowledged.
        let _ = self.to.send(self.tag);
    }
}

/// The node's inbox: every receiving link feeds it. Bounded; a link waits
/// when it is full, which pushes back onto that link only (a ZeroMQ PUB then
/// drops for us, a Redis push queue drops and counts).
pub type Inbox = mpsc::Sender<Received>;

/// The sending half of an outbound link (ZeroMQ PUB, Redis publish).
pub trait Outbound: Send + Sync {
    /// Which kind of link this is, so a relay can skip the link a message came from.
    fn origin(&self) -> Origin;
    /// Queues `text` for publication without waiting; `false` when it was
    /// dropped because the link's queue is full (the link is slower than us).
    fn publish(&self, text: &Text) -> bool;
}

/// Message counters of one node, shown by `/healthz`.
///
/// - `incoming`: text frames received from this node's WebSocket clients plus
///   messages received from its links (echoes of its own Redis publications
///   excluded);
/// - `outgoing`: messages handed to a link's socket: one per PUB frame sent,
///   one per Redis PUBLISH acknowledged. A message published on two links
///   counts twice.
#[derive(Debug, Default)]
pub struct Counters {
    incoming: AtomicU64,
    outgoing: AtomicU64,
}

impl Counters {
    pub fn add_in(&self, n: u64) {
        self.incoming.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_out(&self, n: u64) {
        self.outgoing.fetch_add(n, Ordering::Relaxed);
    }

    pub fn incoming(&self) -> u64 {
        self.incoming.load(Ordering::Relaxed)
    }

    pub fn outgoing(&self) -> u64 {
        self.outgoing.load(Ordering::Relaxed)
    }
}

/// The live state of one link, written by the task that owns the link and
/// read by `/healthz` (and so the admin page's moving dots) and by
/// `Running::wait_links_up`.
#[derive(Debug)]
pub struct LinkStatus {
    pub kind: LinkKind,
    /// A ZeroMQ endpoint, or the redacted broker URL (never the secret).
    pub address: String,
    state: watch::Sender<LinkState>,
    /// Messages this link handed to its socket (PUB frames, acknowledged
    /// Redis PUBLISHes). One relaxed add per message (or per batch).
    sent: AtomicU64,
    /// Messages this link brought in (Redis echoes excluded; on a ZeroMQ
    /// SUB also those its HWM then dropped, counted in `zmtp.dropped`).
    received: AtomicU64,
    /// Redis only: `received` split by the subscription that delivered it,
    /// keyed like the drawing's edges (`chan`, `psubscribe pat*`). Bounded
    /// by the link's subscriptions; only the receiving task writes it.
    via: Mutex<Vec<(String, u64)>>,
    /// Messages held while the link is down (used by Redis and AMQP links).
    pub outbox: outbox::OutboxStats,
    /// AMQP: messages ready in the node's queue when last asked (at each
    /// (re)connection), `u64::MAX` when unknown.
    pub queue_depth: AtomicU64,
    /// AMQP: messages handed to RabbitMQ and not yet confirmed (publisher
    /// confirms); 0 while the link is down (they wait in the outbox then).
    pub unconfirmed: AtomicU64,
    /// AMQP: deliveries dropped as repeats (see `amqp::dedup`).
    pub repeated: AtomicU64,
    /// AMQP: messages RabbitMQ dropped from the node's durable queue
    /// (`max_length`), counted through the queue's dead-letter companion.
    pub dropped: AtomicU64,
    /// AMQP: deliveries refused (body over the node's size limit, or not
    /// UTF-8), acknowledged and never delivered.
    rejected: AtomicU64,
    /// ZeroMQ links: peers, rejected connections, HWM drops.
    pub zmtp: std::sync::Arc<zmtp::Stats>,
}

impl LinkStatus {
    pub fn new(kind: LinkKind, address: String, state: LinkState) -> LinkStatus {
        LinkStatus {
            kind,
            address,
            state: watch::Sender::new(state),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            via: Mutex::new(Vec::new()),
            outbox: outbox::OutboxStats::default(),
            queue_depth: AtomicU64::new(u64::MAX),
            unconfirmed: AtomicU64::new(0),
            repeated: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            zmtp: Default::default(),
        }
    }

    pub fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// One more refused delivery (AMQP); returns the count so far.
    pub fn add_rejected(&self) -> u64 {
        self.rejected.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    pub fn add_received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// A Redis message that arrived through the subscription named
    /// `prefix` + `name` (no allocation once the key exists).
    pub fn add_received_via(&self, prefix: &str, name: &[u8]) {
        self.add_received();
        let is = |k: &str| {
            k.len() == prefix.len() + name.len()
                && k.starts_with(prefix)
                && &k.as_bytes()[prefix.len()..] == name
        };
        let mut via = self.via.lock().unwrap_or_else(|e| e.into_inner());
        match via.iter_mut().find(|(k, _)| is(k)) {
            Some((_, n)) => *n += 1,
            None => via.push((format!("{prefix}{}", String::from_utf8_lossy(name)), 1)),
        }
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// `received` by subscription (Redis), in first-seen order.
    pub fn received_via(&self) -> Vec<(String, u64)> {
        self.via.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn state(&self) -> LinkState {
        *self.state.borrow()
    }

    pub fn set(&self, state: LinkState) {
        self.state
            .send_if_modified(|s| std::mem::replace(s, state) != state);
    }

    /// Follows the state, for a task that acts on changes.
    pub fn watch(&self) -> watch::Receiver<LinkState> {
        self.state.subscribe()
    }

    /// Resolves once the link is up.
    pub async fn wait_up(&self) {
        let mut rx = self.state.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we borrow it.
        let _ = rx.wait_for(|s| *s == LinkState::Up).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_receptions_are_counted_by_the_subscription_that_brought_them() {
        let s = LinkStatus::new(LinkKind::Redis, "redis://h".into(), LinkState::Up);
        s.add_received_via("", b"chat");
        s.add_received_via("psubscribe ", b"chat*");
        s.add_received_via("", b"chat");
        s.add_received_via("psubscribe ", b"ch");
        assert_eq!(s.received(), 4);
        let via = s.received_via();
        let expected = [("chat", 2), ("psubscribe chat*", 1), ("psubscribe ch", 1)];
        assert_eq!(via.len(), expected.len());
        for ((k, n), (ek, en)) in via.iter().zip(expected) {
            assert_eq!((k.as_str(), *n), (ek, en));
        }
    }
}
