//! The bounded outbox of a link that is down: messages kept in order until
//! the link is back, the oldest dropped (and counted) when it is full.
//! Pure bookkeeping: no sockets, no tasks; the broker links drive it.

use super::Text;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

/// What `/healthz` and the logs show about an outbox.
#[derive(Debug, Default)]
pub struct OutboxStats {
    queued: AtomicU64,
    dropped: AtomicU64,
    flushed: AtomicU64,
}

impl OutboxStats {
    /// Messages waiting now.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Messages dropped because the outbox was full (oldest first), ever.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Messages published from the outbox after a reconnection, ever.
    pub fn flushed(&self) -> u64 {
        self.flushed.load(Ordering::Relaxed)
    }
}

/// Messages in order; `T` is the text, or the text with what a link keeps
/// beside it (AMQP: its sequence number).
#[derive(Debug)]
pub struct Outbox<T = Text> {
    queue: VecDeque<T>,
    limit: usize,
}

impl<T: Clone> Outbox<T> {
    pub fn new(limit: usize) -> Outbox<T> {
        Outbox {
            // Grown only while the link is down: reserved up front, 1,024
            // slots cost 32 KiB per Redis link that may never need them.
            queue: VecDeque::new(),
            limit,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Keeps `text` at the back; when full, drops the oldest. Returns how
    /// many were dropped (0 or 1).
    pub fn hold(&mut self, text: T, stats: &OutboxStats) -> u64 {
        let mut dropped = 0;
        if self.queue.len() >= self.limit {
            dropped = 1;
            if self.queue.pop_front().is_none() {
                // limit 0: nothing is ever kept
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                return 1;
            }
            stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.queue.push_back(text);
        stats
            .queued
            .store(self.queue.len() as u64, Ordering::Relaxed);
        dropped
    }

    /// Holds at most `limit` from now on; when it holds more, the oldest are
    /// dropped (and counted). Returns how many were dropped.
    pub fn set_limit(&mut self, limit: usize, stats: &OutboxStats) -> u64 {
        self.limit = limit;
        self.trim(stats)
    }

    /// Drops the oldest beyond the limit (counted); how many went.
    fn trim(&mut self, stats: &OutboxStats) -> u64 {
        let excess = self.queue.len().saturating_sub(self.limit);
        self.queue.drain(..excess);
        stats.dropped.fetch_add(excess as u64, Ordering::Relaxed);
        stats
            .queued
            .store(self.queue.len() as u64, Ordering::Relaxed);
        excess as u64
    }

    /// Copies of the oldest `n` messages, for one publication attempt.
    pub fn peek(&self, n: usize) -> Vec<T> {
        self.queue.iter().take(n).cloned().collect()
    }

    /// Takes the oldest message out to publish it (counted as flushed).
    pub fn take_front(&mut self, stats: &OutboxStats) -> Option<T> {
        let text = self.queue.pop_front()?;
        stats.flushed.fetch_add(1, Ordering::Relaxed);
        stats
            .queued
            .store(self.queue.len() as u64, Ordering::Relaxed);
        Some(text)
    }

    /// Puts back `texts` (oldest first) in front of what waits, so they go
    /// out again first: published but never confirmed. When that makes
    /// more than the limit, the oldest go (counted). Returns how many went.
    pub fn restore_front(
        &mut self,
        texts: impl DoubleEndedIterator<Item = T>,
        stats: &OutboxStats,
    ) -> u64 {
        for text in texts.rev() {
            self.queue.push_front(text);
        }
        self.trim(stats)
    }

    /// The oldest `n` were published.
    pub fn sent(&mut self, n: usize, stats: &OutboxStats) {
        let n = n.min(self.queue.len());
        self.queue.drain(..n);
        stats.flushed.fetch_add(n as u64, Ordering::Relaxed);
        stats
            .queued
            .store(self.queue.len() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(outbox: &Outbox) -> Vec<String> {
        outbox
            .peek(usize::MAX)
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect()
    }

    #[test]
    fn keeps_order_and_drops_the_oldest_when_full() {
        let stats = OutboxStats::default();
        let mut outbox = Outbox::new(3);
        for t in ["a", "b", "c", "d", "e"] {
            outbox.hold(Text::from(t), &stats);
        }
        assert_eq!(texts(&outbox), ["c", "d", "e"]);
        assert_eq!((stats.queued(), stats.dropped()), (3, 2));
        outbox.sent(2, &stats);
        assert_eq!(texts(&outbox), ["e"]);
        assert_eq!((stats.queued(), stats.flushed()), (1, 2));
    }

    #[test]
    fn shrinking_drops_the_oldest() {
        let stats = OutboxStats::default();
        let mut outbox = Outbox::new(4);
        for t in ["a", "b", "c", "d"] {
            outbox.hold(Text::from(t), &stats);
        }
        assert_eq!(outbox.set_limit(2, &stats), 2);
        assert_eq!(texts(&outbox), ["c", "d"]);
        assert_eq!((stats.queued(), stats.dropped()), (2, 2));
        assert_eq!(outbox.set_limit(8, &stats), 0);
        outbox.hold(Text::from("e"), &stats);
        assert_eq!(texts(&outbox), ["c", "d", "e"]);
    }

    #[test]
    fn restored_messages_go_first_in_their_order() {
        let stats = OutboxStats::default();
        let mut outbox = Outbox::new(4);
        for t in ["a", "b", "c"] {
            outbox.hold(Text::from(t), &stats);
        }
        assert_eq!(outbox.take_front(&stats).unwrap().as_str(), "a");
        assert_eq!((stats.queued(), stats.flushed()), (2, 1));
        let back = ["x", "y", "z"].map(Text::from);
        // Five for four places: the oldest (x) goes.
        assert_eq!(outbox.restore_front(back.into_iter(), &stats), 1);
        assert_eq!(texts(&outbox), ["y", "z", "b", "c"]);
        assert_eq!((stats.queued(), stats.dropped()), (4, 1));
    }

    #[test]
    fn a_zero_limit_keeps_nothing() {
        let stats = OutboxStats::default();
        let mut outbox = Outbox::new(0);
        assert_eq!(outbox.hold(Text::from("x"), &stats), 1);
        assert!(outbox.is_empty());
        assert_eq!(stats.dropped(), 1);
    }
}
