//! The node's message router: what a node does with a message. It delivers
//! it to its own clients, publishes what its clients send, and (relay nodes
//! only) forwards what a link brought; it also holds the node's identity,
//! counters and client hub. It owns no socket; the links and the WebSocket
//! sessions call into it.

use super::frame::TextFrame;
use crate::transport::local::Hub;
use crate::transport::{Counters, Origin, Outbound, Received, Text};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub struct NodeRouter {
    pub name: String,
    /// Carries each message as a server frame, encoded once for all clients.
    pub hub: Hub<TextFrame>,
    pub counters: Arc<Counters>,
    /// The reload that last configured this node (shown by `/healthz`).
    generation: AtomicU64,
    relay: AtomicBool,
    /// At most one link per origin (ZeroMQ PUB, Redis), ZeroMQ first. Swapped
    /// by a reload; read (never held across an await) for every message.
    outbound: RwLock<Vec<Box<dyn Outbound>>>,
}

impl NodeRouter {
    pub fn new(
        name: String,
        generation: u64,
        relay: bool,
        counters: Arc<Counters>,
        outbound: Vec<Box<dyn Outbound>>,
    ) -> NodeRouter {
        NodeRouter {
            name,
            hub: Hub::default(),
            counters,
            generation: AtomicU64::new(generation),
            relay: AtomicBool::new(relay),
            outbound: RwLock::new(outbound),
        }
    }

    /// The same router with a hub whose clients may fall `backlog` messages behind.
    pub fn with_backlog(mut self, backlog: usize) -> NodeRouter {
        self.hub = Hub::with_capacity(backlog);
        self
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    pub fn set_generation(&self, generation: u64) {
        self.generation.store(generation, Ordering::Relaxed);
    }

    pub fn relay(&self) -> bool {
        self.relay.load(Ordering::Relaxed)
    }

    pub fn set_relay(&self, relay: bool) {
        self.relay.store(relay, Ordering::Relaxed);
    }

    /// Replaces (or removes) the outbound link of `origin`.
    pub fn set_outbound(&self, origin: Origin, link: Option<Box<dyn Outbound>>) {
        let mut links = self.outbound.write().unwrap_or_else(|e| e.into_inner());
        links.retain(|l| l.origin() != origin);
        links.extend(link);
        links.sort_by_key(|l| l.origin() != Origin::Zmq);
    }

    fn outbound(&self) -> std::sync::RwLockReadGuard<'_, Vec<Box<dyn Outbound>>> {
        self.outbound.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A text frame from one of this node's clients: every client of the node
    /// gets it (the sender too, rule 1), then every outbound link (rule 2).
    pub fn from_client(&self, text: Text) {
        self.counters.add_in(1);
        for link in self.outbound().iter() {
            link.publish(&text);
        }
        self.hub.deliver_with(|| TextFrame::new(&text));
    }

    /// A message from a link: delivered to the clients (each reception is one
    /// delivery, duplicates included); a relay also forwards it, except back
    /// onto the broker it came from, Redis, NATS or AMQP (rule 4).
    /// Acknowledged (AMQP) once the hub has it.
    pub fn from_link(&self, msg: Received) {
        self.counters.add_in(1);
        if self.relay() {
            for link in self.outbound().iter() {
                let back = msg.origin == link.origin() && msg.origin != Origin::Zmq;
                if !back {
                    link.publish(&msg.text);
                }
            }
        }
        self.hub.deliver_with(|| TextFrame::new(&msg.text));
        if let Some(ack) = msg.ack {
            ack.done();
        }
    }
}

/// Drains the inbox that every receiving link feeds.
pub async fn route(
    router: Arc<NodeRouter>,
    mut inbox: mpsc::Receiver<Received>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            msg = inbox.recv() => match msg {
                Some(msg) => router.from_link(msg),
                None => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Recorder(Origin, Arc<Mutex<Vec<String>>>);

    impl Outbound for Recorder {
        fn origin(&self) -> Origin {
            self.0
        }
        fn publish(&self, text: &Text) -> bool {
            self.1
                .lock()
                .unwrap()
                .push(format!("{:?}:{}", self.0, text.as_str()));
            true
        }
    }

    fn fixture(relay: bool) -> (NodeRouter, Arc<Mutex<Vec<String>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let links: Vec<Box<dyn Outbound>> = vec![
            Box::new(Recorder(Origin::Zmq, log.clone())),
            Box::new(Recorder(Origin::Redis, log.clone())),
        ];
        (
            NodeRouter::new("n".into(), 0, relay, Arc::default(), links),
            log,
        )
    }

    #[test]
    fn client_messages_go_to_every_link_and_every_client() {
        let (router, log) = fixture(false);
        let (mut rx, _guard) = router.hub.join();
        router.from_client(Text::from("hi"));
        assert_eq!(*log.lock().unwrap(), ["Zmq:hi", "Redis:hi"]);
        assert_eq!(rx.try_recv().unwrap(), "hi");
        assert_eq!(router.counters.incoming(), 1);
    }

    #[test]
    fn relays_never_forward_back_onto_nats() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let links: Vec<Box<dyn Outbound>> = vec![
            Box::new(Recorder(Origin::Zmq, log.clone())),
            Box::new(Recorder(Origin::Redis, log.clone())),
            Box::new(Recorder(Origin::Nats, log.clone())),
        ];
        let relay = NodeRouter::new("n".into(), 0, true, Arc::default(), links);
        relay.from_link(Received {
            origin: Origin::Nats,
            text: Text::from("n"),
            ack: None,
        });
        assert_eq!(*log.lock().unwrap(), ["Zmq:n", "Redis:n"]);
    }

    #[test]
    fn only_relays_forward_and_never_back_onto_redis() {
        let (plain, log) = fixture(false);
        plain.from_link(Received {
            origin: Origin::Zmq,
            text: Text::from("z"),
            ack: None,
        });
        assert!(log.lock().unwrap().is_empty());

        let (relay, log) = fixture(true);
        let (mut rx, _guard) = relay.hub.join();
        relay.from_link(Received {
            origin: Origin::Redis,
            text: Text::from("r"),
            ack: None,
        });
        relay.from_link(Received {
            origin: Origin::Zmq,
            text: Text::from("z"),
            ack: None,
        });
        assert_eq!(*log.lock().unwrap(), ["Zmq:r", "Zmq:z", "Redis:z"]);
        assert_eq!(rx.try_recv().unwrap(), "r");
        assert_eq!(rx.try_recv().unwrap(), "z");
    }
}
