//! The in-node broadcast: every message a node delivers reaches each of its
//! WebSocket clients through one `broadcast` channel (encoded once, cloned).
//! It knows nothing about sockets; `node::ws` turns receivers into frames.

use super::Text;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::broadcast;

/// How many messages a client may fall behind before it is disconnected: the
/// channel never blocks the sender, so a slow client lags instead of stalling others.
pub const CLIENT_BACKLOG: usize = 1024;

#[derive(Debug)]
pub struct Hub {
    tx: broadcast::Sender<Text>,
    clients: Arc<AtomicUsize>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            tx: broadcast::Sender::new(CLIENT_BACKLOG),
            clients: Arc::default(),
        }
    }
}

impl Hub {
    /// A hub whose clients may each fall `backlog` messages behind (at least;
    /// the channel rounds up to a power of two).
    pub fn with_capacity(backlog: usize) -> Hub {
        Hub {
            tx: broadcast::Sender::new(backlog.max(1)),
            clients: Arc::default(),
        }
    }

    /// Delivers `text` to every connected client.
    pub fn deliver(&self, text: Text) {
        // An error only means that nobody is connected right now.
        let _ = self.tx.send(text);
    }

    /// Registers a client: its receiver, and a guard that counts it until dropped.
    pub fn join(&self) -> (broadcast::Receiver<Text>, ClientGuard) {
        self.clients.fetch_add(1, Ordering::Relaxed);
        let guard = ClientGuard(self.clients.clone());
        (self.tx.subscribe(), guard)
    }

    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }
}

/// Decrements the client count when the session ends, however it ends.
#[derive(Debug)]
pub struct ClientGuard(Arc<AtomicUsize>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
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
