//! The in-node broadcast: every message a node delivers reaches each of its
//! WebSocket clients through one `broadcast` channel (encoded once, cloned).
//! It knows nothing about sockets or what it carries: the node's router
//! puts in messages already encoded as WebSocket frames (`node::frame`),
//! and each session writes them as they are.
//! The channel's slots (about 64 bytes each, `send_queue` of them) are
//! allocated when the first client joins: a node that never has a client
//! (no HTTP server, or nobody connected yet) does not pay for them.

use super::Text;
use std::sync::{Arc, OnceLock};
use tokio::sync::{broadcast, watch};

/// How many messages a client may fall behind before it is disconnected: the
/// channel never blocks the sender, so a slow client lags instead of stalling others.
pub const CLIENT_BACKLOG: usize = 1024;

#[derive(Debug)]
pub struct Hub<T = Text> {
    /// Made by the first [`Hub::join`]; until then there is nobody to deliver to.
    tx: OnceLock<broadcast::Sender<T>>,
    backlog: usize,
    /// Connected clients; watched by a durable AMQP link, which consumes only while some are.
    clients: Arc<watch::Sender<usize>>,
}

impl<T: Clone> Default for Hub<T> {
    fn default() -> Self {
        Hub::with_capacity(CLIENT_BACKLOG)
    }
}

impl<T: Clone> Hub<T> {
    /// A hub whose clients may each fall `backlog` messages behind (at least;
    /// the channel rounds up to a power of two).
    pub fn with_capacity(backlog: usize) -> Hub<T> {
        Hub {
            tx: OnceLock::new(),
            backlog: backlog.max(1),
            clients: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Delivers `msg` to every connected client.
    pub fn deliver(&self, msg: T) {
        self.deliver_with(|| msg);
    }

    /// Delivers what `make` returns to every connected client; `make` runs
    /// only when some client is connected (it encodes the message once for
    /// all of them).
    pub fn deliver_with(&self, make: impl FnOnce() -> T) {
        // No channel yet, or nobody subscribed: nobody is connected right now.
        if let Some(tx) = self.tx.get()
            && tx.receiver_count() > 0
        {
            let _ = tx.send(make());
        }
    }

    /// Registers a client: its receiver, and a guard that counts it until dropped.
    pub fn join(&self) -> (broadcast::Receiver<T>, ClientGuard) {
        let tx = self.tx.get_or_init(|| broadcast::Sender::new(self.backlog));
        // Subscribed before counted: whoever sees the count sees a receiver.
        let rx = tx.subscribe();
        self.clients.send_modify(|n| *n += 1);
        (rx, ClientGuard(self.clients.clone()))
    }

    pub fn clients(&self) -> usize {
        *self.clients.borrow()
    }

    /// Follows the number of connected clients.
    pub fn presence(&self) -> watch::Receiver<usize> {
        self.clients.subscribe()
    }
}

/// Decrements the client count when the session ends, however it ends.
#[derive(Debug)]
pub struct ClientGuard(Arc<watch::Sender<usize>>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_clients_until_their_guard_drops() {
        let hub = Hub::default();
        let (mut rx, guard) = hub.join();
        assert_eq!(hub.clients(), 1);
        hub.deliver(Text::from("hi"));
        assert_eq!(rx.try_recv().unwrap(), "hi");
        drop(guard);
        assert_eq!(hub.clients(), 0);
    }

    #[test]
    fn a_hub_allocates_its_slots_at_the_first_client_only() {
        let hub = Hub::<Text>::with_capacity(4);
        hub.deliver(Text::from("nobody"));
        assert!(hub.tx.get().is_none());
        let (mut rx, _guard) = hub.join();
        assert!(
            rx.try_recv().is_err(),
            "a message sent before joining is not received"
        );
        hub.deliver(Text::from("hi"));
        assert_eq!(rx.try_recv().unwrap(), "hi");
    }

    #[test]
    fn nothing_is_made_for_a_hub_without_clients() {
        let hub = Hub::<Text>::default();
        let (rx, guard) = hub.join();
        drop((rx, guard));
        hub.deliver_with(|| panic!("made for nobody"));
        let (mut rx, _guard) = hub.join();
        hub.deliver_with(|| Text::from("made"));
        assert_eq!(rx.try_recv().unwrap(), "made");
    }
}
