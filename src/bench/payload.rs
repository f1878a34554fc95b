//! The load generator's message: who sent it, its sequence number and when
//! it was meant to be sent, in fixed-width ASCII padded to the payload size.
//! It has no space (the chapter's `zmq.js` keeps only the first word of a
//! message from another node) and parses by offsets, without allocating.

/// `R` run(4) `.` sender(6) `.` seq(10) `.` time in ns(16) `.` then padding.
pub const HEADER: usize = 1 + 4 + 1 + 6 + 1 + 10 + 1 + 16 + 1;
pub const MIN_SIZE: usize = HEADER;

/// One parsed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub sender: u32,
    pub seq: u64,
    /// Nanoseconds since the run's clock started (the intended send time).
    pub sent_ns: u64,
}

/// Writes the message for `stamp` into `out` (cleared first), `size` bytes long.
pub fn encode(run: u16, stamp: Stamp, size: usize, out: &mut String) {
    use std::fmt::Write;
    out.clear();
    let _ = write!(
        out,
        "R{:04}.{:06}.{:010}.{:016}.",
        run % 10_000,
        stamp.sender % 1_000_000,
        stamp.seq % 10_000_000_000,
        stamp.sent_ns % 10_000_000_000_000_000,
    );
    while out.len() < size {
        out.push('x');
    }
}

/// Parses a message of run `run`; `None` for anything else (another run's
/// leftovers, a person typing in the chat page).
pub fn decode(run: u16, text: &[u8]) -> Option<Stamp> {
    if text.len() < HEADER || text[0] != b'R' {
        return None;
    }
    let field = |from: usize, len: usize| -> Option<u64> {
        let digits = text.get(from..from + len)?;
        let mut n = 0u64;
        for &d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u64::from(d - b'0');
        }
        (text.get(from + len) == Some(&b'.')).then_some(n)
    };
    if field(1, 4)? != u64::from(run % 10_000) {
        return None;
    }
    Some(Stamp {
        sender: field(6, 6)? as u32,
        seq: field(13, 10)?,
        sent_ns: field(24, 16)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_the_requested_size_without_spaces() {
        let stamp = Stamp {
            sender: 42,
            seq: 1_234_567,
            sent_ns: 98_765_432_100,
        };
        let mut s = String::new();
        encode(7, stamp, 64, &mut s);
        assert_eq!(s.len(), 64);
        assert!(!s.contains(' '));
        assert_eq!(decode(7, s.as_bytes()), Some(stamp));
        assert_eq!(decode(8, s.as_bytes()), None, "another run's message");
        encode(7, stamp, 10, &mut s);
        assert_eq!(s.len(), HEADER, "never shorter than the header");
        assert_eq!(decode(7, s.as_bytes()), Some(stamp));
    }

    #[test]
    fn rejects_foreign_text() {
        assert_eq!(decode(1, b"hello"), None);
        assert_eq!(decode(1, &[b'R'; 80]), None);
    }
}
