//! The WebSocket close codes a chat node sends (RFC 6455 section 7.4.1),
//! declared once so the node, the docs and the tests cannot disagree.

/// Why a node closed a client's WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum CloseCode {
    /// The node is stopping or was removed by a reload.
    GoingAway = 1001,
    /// The client broke the framing rules of RFC 6455 (an unmasked frame,
    /// reserved bits, an unknown opcode, a long or fragmented control frame).
    Protocol = 1002,
    /// The client sent a binary frame; the chat speaks text only.
    Unsupported = 1003,
    /// A text message was not valid UTF-8.
    InvalidData = 1007,
    /// The client broke a rule with no code of its own: it stopped answering
    /// pings, or read too slowly and its backlog filled.
    Policy = 1008,
    /// A message was over the node's `max_message` limit.
    TooBig = 1009,
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_rfc_numbers() {
        let codes = [
            (CloseCode::GoingAway, 1001),
            (CloseCode::Protocol, 1002),
            (CloseCode::Unsupported, 1003),
            (CloseCode::InvalidData, 1007),
            (CloseCode::Policy, 1008),
            (CloseCode::TooBig, 1009),
        ];
        for (code, number) in codes {
            assert_eq!(u16::from(code), number, "{code:?}");
        }
    }
}
