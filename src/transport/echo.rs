//! Recognising a node's own Redis publications when they come back through
//! its own subscriptions (docs/topology-format.md rule 1), without touching the wire format.
//! Pure bookkeeping: no sockets, no Redis client, no tasks.
//!
//! Redis delivers one connection's publications in the order it received
//! them, so per subscription entry that matches the node's publish channel
//! (the exact SUBSCRIBE, or each PSUBSCRIBE pattern that matches it) we keep
//! a FIFO of what we published. A message on our channel through that entry
//! whose payload equals a queued text is our echo: it is dropped together
//! with every older entry (their echoes were lost, e.g. while reconnecting,
//! because a later one already came back). Limitation: if another node
//! publishes the very same text while older echoes of ours are still in
//! flight, that foreign copy is taken for our echo.

use crate::glob::glob_match;
use std::collections::VecDeque;

/// Most texts remembered per entry; beyond it the oldest is forgotten (logged).
pub const PENDING_LIMIT: usize = 10_000;

/// Through which subscription entry a message arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via<'a> {
    /// A `message` push: an exact SUBSCRIBE.
    Channel,
    /// A `pmessage` push, with the pattern Redis says matched.
    Pattern(&'a [u8]),
}

#[derive(Debug)]
struct Queue {
    /// `None` for the exact subscription, `Some(pattern)` for a pattern.
    pattern: Option<Vec<u8>>,
    pending: VecDeque<Vec<u8>>,
}

#[derive(Debug)]
pub struct EchoFilter {
    channel: Vec<u8>,
    queues: Vec<Queue>,
    limit: usize,
    /// Texts forgotten because a queue was full (for logs).
    pub overflowed: u64,
}

impl EchoFilter {
    /// One queue per subscription entry through which our own channel comes back.
    pub fn new(publish: &str, subscribe: &[String], patterns: &[String], limit: usize) -> Self {
        let mut queues = Vec::new();
        if subscribe.iter().any(|c| c == publish) {
            queues.push(Queue {
                pattern: None,
                pending: VecDeque::new(),
            });
        }
        for p in patterns {
            if glob_match(p.as_bytes(), publish.as_bytes()) {
                queues.push(Queue {
                    pattern: Some(p.as_bytes().to_vec()),
                    pending: VecDeque::new(),
                });
            }
        }
        EchoFilter {
            channel: publish.as_bytes().to_vec(),
            queues,
            limit,
            overflowed: 0,
        }
    }

    /// The filter for a rewired subscription (a reload): entries that stay
    /// keep what they wait for, new entries start empty. A new publish
    /// channel starts from scratch (echoes of the old one are no longer ours
    /// to recognise: the README lists this limitation).
    pub fn rewired(&self, publish: &str, subscribe: &[String], patterns: &[String]) -> Self {
        let mut next = EchoFilter::new(publish, subscribe, patterns, self.limit);
        if next.channel == self.channel {
            for q in &mut next.queues {
                if let Some(old) = self.queues.iter().find(|o| o.pattern == q.pattern) {
                    q.pending = old.pending.clone();
                }
            }
        }
        next.overflowed = self.overflowed;
        next
    }

    /// Whether anything of ours comes back at all (no queue: nothing to track).
    pub fn tracks_anything(&self) -> bool {
        !self.queues.is_empty()
    }

    /// Remembers a text about to be published. A publication that fails stays
    /// remembered: its echo may still come (the reply was lost, not the
    /// command); if not, a later echo or a lost connection clears it.
    pub fn published(&mut self, text: &[u8]) {
        for q in &mut self.queues {
            if q.pending.len() >= self.limit {
                q.pending.pop_front();
                self.overflowed += 1;
            }
            q.pending.push_back(text.to_vec());
        }
    }

    /// True when this message is our own echo (and consumes it).
    pub fn is_echo(&mut self, via: Via<'_>, channel: &[u8], payload: &[u8]) -> bool {
        if channel != self.channel.as_slice() {
            return false;
        }
        let queue = self.queues.iter_mut().find(|q| match via {
            Via::Channel => q.pattern.is_none(),
            Via::Pattern(p) => q.pattern.as_deref() == Some(p),
        });
        let Some(queue) = queue else { return false };
        match queue.pending.iter().position(|t| t == payload) {
            Some(i) => {
                queue.pending.drain(..=i);
                true
            }
            None => false,
        }
    }

    /// After a lost subscription connection nothing in flight comes back.
    pub fn clear(&mut self) {
        for q in &mut self.queues {
            q.pending.clear();
        }
    }

    /// Texts waiting for their echo, summed over the entries.
    pub fn pending(&self) -> usize {
        self.queues.iter().map(|q| q.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(subscribe: &[&str], patterns: &[&str]) -> EchoFilter {
        let s: Vec<String> = subscribe.iter().map(|s| s.to_string()).collect();
        let p: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        EchoFilter::new("chat", &s, &p, 3)
    }

    #[test]
    fn drops_own_echo_once_and_keeps_foreign_messages() {
        let mut f = filter(&["chat"], &[]);
        f.published(b"hi");
        assert!(!f.is_echo(Via::Channel, b"chat", b"other"));
        assert!(f.is_echo(Via::Channel, b"chat", b"hi"));
        // The same text again is someone else's.
        assert!(!f.is_echo(Via::Channel, b"chat", b"hi"));
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn other_channels_are_never_echoes() {
        let mut f = filter(&["chat", "news"], &[]);
        f.published(b"hi");
        assert!(!f.is_echo(Via::Channel, b"news", b"hi"));
        assert!(f.is_echo(Via::Channel, b"chat", b"hi"));
    }

    #[test]
    fn exact_and_pattern_entries_each_get_one_echo() {
        // "chat" as a pattern matches the channel "chat" under any glob implementation.
        let mut f = filter(&["chat"], &["chat"]);
        f.published(b"hi");
        assert!(f.is_echo(Via::Channel, b"chat", b"hi"));
        assert!(f.is_echo(Via::Pattern(b"chat"), b"chat", b"hi"));
        assert!(!f.is_echo(Via::Pattern(b"chat"), b"chat", b"hi"));
    }

    #[test]
    fn a_later_echo_discards_older_lost_ones() {
        let mut f = filter(&["chat"], &[]);
        f.published(b"a");
        f.published(b"b");
        assert!(f.is_echo(Via::Channel, b"chat", b"b"));
        assert_eq!(f.pending(), 0);
        assert!(!f.is_echo(Via::Channel, b"chat", b"a"));
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut f = filter(&["chat"], &[]);
        for _ in 0..8 {
            f.published(b"x");
        }
        assert_eq!(f.pending(), 3);
        assert_eq!(f.overflowed, 5);
    }

    #[test]
    fn rewiring_keeps_what_surviving_entries_wait_for() {
        let mut f = filter(&["chat"], &["ch*"]);
        f.published(b"a");
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut g = f.rewired("chat", &s(&["chat"]), &s(&["c*"]));
        assert!(g.is_echo(Via::Channel, b"chat", b"a"));
        assert!(!g.is_echo(Via::Pattern(b"c*"), b"chat", b"a"));
        let h = f.rewired("other", &s(&["other"]), &[]);
        assert_eq!(h.pending(), 0);
    }

    #[test]
    fn nothing_to_track_when_not_subscribed_to_own_channel() {
        let mut f = filter(&["news"], &[]);
        assert!(!f.tracks_anything());
        f.published(b"hi");
        assert!(!f.is_echo(Via::Channel, b"chat", b"hi"));
    }
}
