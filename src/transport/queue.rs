//! The sending half of a queued outbound link (Redis publish; ZeroMQ PUB
//! fans out to per-subscriber queues of its own in `zmtp`): a bounded queue
//! to the link's task. When the queue is full the link is slower than the
//! node and the message is dropped, never awaited. Drops are logged per
//! episode (the first drop, then the count when a message goes through
//! again), not per message: a log storm under overload would cost exactly
//! when there is nothing to spare.

use super::{Origin, Outbound, Text};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// What a node holds to publish on one link.
pub struct QueuedOutbound {
    origin: Origin,
    tx: mpsc::Sender<Text>,
    drops: DropEpisode,
}

impl QueuedOutbound {
    pub fn new(origin: Origin, tx: mpsc::Sender<Text>) -> Self {
        QueuedOutbound {
            origin,
            tx,
            drops: DropEpisode::default(),
        }
    }

    fn link(&self) -> &'static str {
        match self.origin {
            Origin::Zmq => "zmq pub",
            Origin::Redis => "redis publish",
            Origin::Amqp => "amqp publish",
            Origin::Nats => "nats publish",
            Origin::Client => "client",
        }
    }
}

impl Outbound for QueuedOutbound {
    fn origin(&self) -> Origin {
        self.origin
    }

    fn publish(&self, text: &Text) -> bool {
        match self.tx.try_send(text.clone()) {
            Ok(()) => {
                if let Some(dropped) = self.drops.passed() {
                    tracing::warn!(
                        dropped,
                        "{} queue drained; messages dropped while full",
                        self.link()
                    );
                }
                true
            }
            Err(_) => {
                if self.drops.dropped() {
                    tracing::warn!(
                        "{} queue full, dropping messages until it drains",
                        self.link()
                    );
                }
                false
            }
        }
    }
}

/// Counts the drops of the current episode (0: none running).
#[derive(Debug, Default)]
struct DropEpisode(AtomicU64);

impl DropEpisode {
    /// Counts one drop; true for the first of an episode.
    fn dropped(&self) -> bool {
        self.0.fetch_add(1, Ordering::Relaxed) == 0
    }

    /// A message went through: the episode, if any, ends with this many drops.
    fn passed(&self) -> Option<u64> {
        // A load first keeps the common path (no episode) free of writes.
        if self.0.load(Ordering::Relaxed) == 0 {
            return None;
        }
        Some(self.0.swap(0, Ordering::Relaxed)).filter(|&n| n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_reports_its_first_drop_and_then_its_count() {
        let drops = DropEpisode::default();
        assert_eq!(drops.passed(), None);
        assert!(drops.dropped());
        assert!(!drops.dropped());
        assert!(!drops.dropped());
        assert_eq!(drops.passed(), Some(3));
        assert_eq!(drops.passed(), None);
        assert!(drops.dropped(), "a new episode");
    }

    #[tokio::test]
    async fn a_full_queue_drops_without_waiting() {
        let (tx, mut rx) = mpsc::channel(1);
        let out = QueuedOutbound::new(Origin::Redis, tx);
        assert!(out.publish(&Text::from("a")));
        assert!(!out.publish(&Text::from("b")));
        assert!(!out.publish(&Text::from("c")));
        assert_eq!(rx.recv().await.unwrap().as_str(), "a");
        assert!(out.publish(&Text::from("d")));
        assert_eq!(out.drops.passed(), None, "the episode ended with d");
        assert_eq!(rx.recv().await.unwrap().as_str(), "d");
    }
}
