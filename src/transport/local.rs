//! The in-node broadcast: every message a node delivers reaches each of its
//! WebSocket clients through one `broadcast` channel (encoded once, cloned).
//! It knows nothing about sockets; `node::ws` turns receivers into frames.

use super::Text;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

/// How many messages a client may fall behind before it is disconnected: the
/// channel never blocks the sender, so a slow client lags instead of stalling others.
pub const CLIENT_BACKLOG: usize = 1024;

#[derive(Debug)]
pub struct Hub {
    tx: broadcast::Sender<Text>,
    /// Connected clients; watched by a durable AMQP link, which consumes only while some are.
    clients: Arc<watch::Sender<usize>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            tx: broadcast::Sender::new(CLIENT_BACKLOG),
            clients: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl Hub {
    /// A hub whose clients may each fall `backlog` messages behind (at least;
    /// the channel rounds up to a power of two).
    pub fn with_capacity(backlog: usize) -> Hub {
        Hub {
            tx: broadcast::Sender::new(backlog.max(1)),
            clients: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Delivers `text` to every connected client.
    pub fn deliver(&self, text: Text) {
        // An error only means that nobody is connected right now.
        let _ = self.tx.send(text);
    }

    /// Registers a client: its receiver, and a guard that counts it until dropped.
    pub fn join(&self) -> (broadcast::Receiver<Text>, ClientGuard) {
        // Subscribed before counted: whoever sees the count sees a receiver.
        let rx = self.tx.subscribe();
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
}
