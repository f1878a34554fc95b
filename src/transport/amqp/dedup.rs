//! Publications published again (unconfirmed when a connection died) or
//! delivered again (an acknowledgement RabbitMQ lost) are told apart at
//! the receiver: each publication's `message_id` is the sending link's
//! boot nonce and a sequence number, and the receiver keeps, per sender
//! (`app_id`), the last sequence it handed on. One sender's messages reach
//! one queue in the order they were published, so a sequence not above the
//! last one is a repeat. The map is bounded: the oldest sender is forgotten
//! first (its repeats then pass, as without this).

use indexmap::IndexMap;

/// Senders remembered at most; a hostile publisher inventing `app_id`s
/// only pushes older ones out.
const SENDERS: usize = 1024;

/// A publication's identity: (sending link's boot nonce, sequence).
pub type Id = (u64, u64);

/// The `message_id` of publication `seq` of the link booted as `nonce`.
pub fn message_id((nonce, seq): Id) -> String {
    format!("{nonce:016x}-{seq}")
}

/// The identity in a `message_id` topo wrote; `None` for any other.
pub fn parse(message_id: &str) -> Option<Id> {
    let (nonce, seq) = message_id.split_once('-')?;
    if nonce.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(nonce, 16).ok()?, seq.parse().ok()?))
}

/// A nonce for this link's life: another process, or this link replaced,
/// numbers its publications afresh.
pub fn boot_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish()
}

#[derive(Debug, Default)]
pub struct Seen {
    last: IndexMap<String, Id>,
}

impl Seen {
    /// Whether `id` from `sender` was handed on already.
    pub fn is_repeat(&self, sender: &str, (nonce, seq): Id) -> bool {
        matches!(self.last.get(sender), Some(&(n, last)) if n == nonce && seq <= last)
    }

    /// `id` from `sender` was handed on.
    pub fn record(&mut self, sender: &str, id: Id) {
        if let Some(last) = self.last.get_mut(sender) {
            *last = id;
            return;
        }
        if self.last.len() >= SENDERS {
            self.last.shift_remove_index(0);
        }
        self.last.insert(sender.to_owned(), id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_foreign_ones_are_ignored() {
        let id = (0x00ab_cdef_0123_4567, 42);
        assert_eq!(parse(&message_id(id)), Some(id));
        for foreign in [
            "",
            "42",
            "abc-1",
            "00abcdef01234567-",
            "00abcdef01234567-x",
            "zzzzzzzzzzzzzzzz-1",
        ] {
            assert_eq!(parse(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn a_sequence_not_above_the_last_is_a_repeat_per_sender_and_boot() {
        let mut seen = Seen::default();
        assert!(!seen.is_repeat("topo:a", (1, 0)));
        seen.record("topo:a", (1, 5));
        assert!(seen.is_repeat("topo:a", (1, 5)));
        assert!(seen.is_repeat("topo:a", (1, 3)));
        assert!(!seen.is_repeat("topo:a", (1, 6)));
        // Another sender, or the same one booted again, starts afresh.
        assert!(!seen.is_repeat("topo:b", (1, 3)));
        assert!(!seen.is_repeat("topo:a", (2, 0)));
        seen.record("topo:a", (2, 0));
        assert!(!seen.is_repeat("topo:a", (1, 6)));
    }

    #[test]
    fn the_map_is_bounded_forgetting_the_oldest_sender() {
        let mut seen = Seen::default();
        for i in 0..SENDERS + 10 {
            seen.record(&format!("s{i}"), (1, 1));
        }
        assert_eq!(seen.last.len(), SENDERS);
        assert!(!seen.is_repeat("s0", (1, 1)), "forgotten");
        assert!(seen.is_repeat(&format!("s{}", SENDERS + 9), (1, 1)));
    }
}
