//! RFC 6455 framing for the server side of a node, as pure functions over
//! bytes: the incremental [`Decoder`] of client frames (masked, bounded
//! before anything is allocated) and the encoding of server frames
//! (unmasked). A [`TextFrame`] is a whole server frame built once per
//! message and node, so every client of the node writes the same bytes.
//! No I/O here: `session` reads and writes the socket.

use super::close::CloseCode;
use bytes::{BufMut, Bytes, BytesMut};

/// RFC 6455 §5.5: a control frame's payload is at most 125 bytes.
pub const MAX_CONTROL: usize = 125;
/// The longest header: 2 bytes, an 8-byte length and a 4-byte mask.
const MAX_HEAD: usize = 14;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A ping with no payload, as the server sends it.
pub const PING: &[u8] = &[0x80 | OP_PING, 0];

/// Why a client's bytes are not a valid WebSocket stream (or not one the
/// node accepts); each maps to the close code the node answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("client frame not masked")]
    Unmasked,
    #[error("reserved bits set ({0:#04x})")]
    Reserved(u8),
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    #[error("control frame of {0} bytes (at most 125)")]
    ControlTooLong(u64),
    #[error("fragmented control frame")]
    FragmentedControl,
    #[error("frame length with the most significant bit set")]
    LengthTopBit,
    #[error("continuation frame outside a fragmented message")]
    StrayContinuation,
    #[error("new message before the fragmented one ended")]
    Interleaved,
    #[error("invalid close frame")]
    BadClose,
    #[error("message of {len} bytes or more, over the limit of {max}")]
    TooBig { len: u64, max: usize },
    #[error("text message is not valid UTF-8")]
    Utf8,
}

impl FrameError {
    /// The close code the node sends back.
    pub fn close_code(&self) -> CloseCode {
        match self {
            FrameError::TooBig { .. } => CloseCode::TooBig,
            FrameError::Utf8 => CloseCode::InvalidData,
            _ => CloseCode::Protocol,
        }
    }
}

/// What a finished client frame meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole text message (its fragments joined), valid UTF-8.
    Text(String),
    /// A fragment of a message ended; the message goes on.
    Fragment,
    /// A binary frame started (the chat speaks text only: not read further).
    Binary,
    /// A ping, with the payload its pong must carry.
    Ping(Vec<u8>),
    Pong,
    /// A close frame: its code (none if it had no payload).
    Close(Option<u16>),
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    len: u64,
}

/// The frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct Current {
    head: Head,
    /// Payload bytes read so far (also the mask's phase).
    done: u64,
}

/// Turns a client's byte stream into [`Event`]s, fed whatever the socket
/// returned. Between frames it holds at most 13 header bytes inline; a
/// payload is kept on the heap only while its frame (or message) is
/// incomplete, sized from the header once the limit is checked.
#[derive(Debug)]
pub struct Decoder {
    head: [u8; MAX_HEAD],
    have: u8,
    current: Option<Current>,
    /// Inside a fragmented text message (its first frame had no FIN).
    fragmented: bool,
    /// The text message so far.
    message: Vec<u8>,
    /// The control frame's payload so far (may interleave a fragmented message).
    control: Vec<u8>,
    /// After the node closed: payloads skipped, nothing checked, only a
    /// close frame reported.
    discarding: bool,
    max_message: usize,
}

impl Decoder {
    /// A decoder refusing messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            head: [0; MAX_HEAD],
            have: 0,
            current: None,
            fragmented: false,
            message: Vec::new(),
            control: Vec::new(),
            discarding: false,
            max_message,
        }
    }

    /// From now on reads frames only to find the client's close frame:
    /// payloads are skipped, not stored, and nothing is refused. After an
    /// error the frame that caused it is skipped as well (its length is known).
    pub fn discard(&mut self) {
        self.discarding = true;
        self.message = Vec::new();
        self.control = Vec::new();
        self.fragmented = false;
    }

    /// Whether part of a frame has been read and the rest is awaited.
    pub fn mid_frame(&self) -> bool {
        self.have > 0 || self.current.is_some()
    }

    /// Consumes bytes of `input` until a frame ends (`Some`) or `input` is
    /// used up (`None`); call again with what is left.
    pub fn feed(&mut self, input: &mut &[u8]) -> Result<Option<Event>, FrameError> {
        loop {
            let Some(mut current) = self.current else {
                let Some(head) = self.take_head(input) else {
                    return Ok(None);
                };
                // Set before the checks: after an error the caller may go on
                // discarding, and this frame's payload is then skipped.
                self.current = Some(Current { head, done: 0 });
                if !self.discarding
                    && let Some(event) = self.start(head)?
                {
                    return Ok(Some(event));
                }
                continue;
            };
            let head = current.head;
            let want = head.len - current.done;
            let n = want.min(input.len() as u64) as usize;
            let (chunk, rest) = input.split_at(n);
            *input = rest;
            if !self.discarding {
                let into = if is_control(head.opcode) {
                    &mut self.control
                } else {
                    &mut self.message
                };
                unmask_into(into, chunk, head.mask, current.done);
            }
            current.done += n as u64;
            if current.done < head.len {
                self.current = Some(current);
                return Ok(None);
            }
            self.current = None;
            if let Some(event) = self.finish(head)? {
                return Ok(Some(event));
            }
        }
    }

    /// Collects header bytes; the header once complete.
    fn take_head(&mut self, input: &mut &[u8]) -> Option<Head> {
        loop {
            let have = self.have as usize;
            let need = if have < 2 { 2 } else { head_len(self.head[1]) };
            if have == need {
                self.have = 0;
                return Some(parse_head(&self.head[..need]));
            }
            let n = (need - have).min(input.len());
            if n == 0 {
                return None;
            }
            self.head[have..have + n].copy_from_slice(&input[..n]);
            self.have += n as u8;
            *input = &input[n..];
        }
    }

    /// Checks a header before any of its payload is read, and reserves
    /// room for the payload; an event for frames decided by their header.
    fn start(&mut self, head: Head) -> Result<Option<Event>, FrameError> {
        let first = self.head[0];
        if first & 0x70 != 0 {
            return Err(FrameError::Reserved(first & 0x70));
        }
        if head.len >> 63 != 0 {
            return Err(FrameError::LengthTopBit);
        }
        if self.head[1] & 0x80 == 0 {
            return Err(FrameError::Unmasked);
        }
        match head.opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !head.fin {
                    return Err(FrameError::FragmentedControl);
                }
                if head.len > MAX_CONTROL as u64 {
                    return Err(FrameError::ControlTooLong(head.len));
                }
                self.control = Vec::with_capacity(head.len as usize);
            }
            OP_TEXT | OP_CONTINUATION => {
                match (head.opcode, self.fragmented) {
                    (OP_TEXT, true) => return Err(FrameError::Interleaved),
                    (OP_CONTINUATION, false) => return Err(FrameError::StrayContinuation),
                    _ => {}
                }
                let room = self.max_message.saturating_sub(self.message.len());
                if head.len > room as u64 {
                    return Err(FrameError::TooBig {
                        len: self.message.len() as u64 + head.len,
                        max: self.max_message,
                    });
                }
                // Exact for a whole message in one frame; a fragmented one
                // grows by each fragment, never past the limit.
                self.message.reserve_exact(head.len as usize);
            }
            OP_BINARY if !self.fragmented => return Ok(Some(Event::Binary)),
            OP_BINARY => return Err(FrameError::Interleaved),
            other => return Err(FrameError::UnknownOpcode(other)),
        }
        Ok(None)
    }

    /// A frame's payload is complete.
    fn finish(&mut self, head: Head) -> Result<Option<Event>, FrameError> {
        if self.discarding {
            return Ok((head.opcode == OP_CLOSE).then_some(Event::Close(None)));
        }
        match head.opcode {
            OP_PING => Ok(Some(Event::Ping(std::mem::take(&mut self.control)))),
            OP_PONG => {
                self.control = Vec::new();
                Ok(Some(Event::Pong))
            }
            OP_CLOSE => {
                let payload = std::mem::take(&mut self.control);
                close_code(&payload).map(|code| Some(Event::Close(code)))
            }
            _ if !head.fin => {
                self.fragmented = true;
                Ok(Some(Event::Fragment))
            }
            _ => {
                self.fragmented = false;
                let message = std::mem::take(&mut self.message);
                String::from_utf8(message)
                    .map(|text| Some(Event::Text(text)))
                    .map_err(|_| FrameError::Utf8)
            }
        }
    }
}

fn is_control(opcode: u8) -> bool {
    opcode & 0x8 != 0
}

/// The header's length from its second byte (mask included: client frames
/// must be masked, and one that is not is refused once parsed).
fn head_len(second: u8) -> usize {
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + mask
        + match second & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        }
}

fn parse_head(bytes: &[u8]) -> Head {
    let (first, second) = (bytes[0], bytes[1]);
    let (len, at) = match second & 0x7F {
        126 => (u64::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
        127 => {
            let mut be = [0; 8];
            be.copy_from_slice(&bytes[2..10]);
            (u64::from_be_bytes(be), 10)
        }
        n => (u64::from(n), 2),
    };
    let mut mask = [0; 4];
    if second & 0x80 != 0 {
        mask.copy_from_slice(&bytes[at..at + 4]);
    }
    Head {
        fin: first & 0x80 != 0,
        opcode: first & 0x0F,
        mask,
        len,
    }
}

/// Appends `chunk` to `out`, unmasked; `done` is the chunk's offset in the
/// payload (the mask's phase).
fn unmask_into(out: &mut Vec<u8>, chunk: &[u8], mask: [u8; 4], done: u64) {
    let phase = (done % 4) as usize;
    out.extend(
        chunk
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[(phase + i) % 4]),
    );
}

/// A close frame's code (RFC 6455 §5.5.1, §7.4): none, or a code a peer may
/// send followed by a UTF-8 reason.
fn close_code(payload: &[u8]) -> Result<Option<u16>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::BadClose),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !allowed {
                return Err(FrameError::BadClose);
            }
            std::str::from_utf8(reason).map_err(|_| FrameError::Utf8)?;
            Ok(Some(code))
        }
    }
}

/// The header of an unmasked server frame (FIN set) carrying `len` bytes.
fn server_head(opcode: u8, len: usize, out: &mut BytesMut) {
    out.put_u8(0x80 | opcode);
    match len {
        0..=125 => out.put_u8(len as u8),
        126..=0xFFFF => {
            out.put_u8(126);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(127);
            out.put_u64(len as u64);
        }
    }
}

/// A control frame from the server; `payload` is at most 125 bytes (a
/// client's ping payload, already bounded, or a fixed reason), cut if not.
fn control(opcode: u8, payload: &[u8]) -> Bytes {
    let payload = &payload[..payload.len().min(MAX_CONTROL)];
    let mut out = BytesMut::with_capacity(2 + payload.len());
    server_head(opcode, payload.len(), &mut out);
    out.put_slice(payload);
    out.freeze()
}

/// The pong answering a ping that carried `payload`.
pub fn pong(payload: &[u8]) -> Bytes {
    if payload.is_empty() {
        return Bytes::from_static(&[0x80 | OP_PONG, 0]);
    }
    control(OP_PONG, payload)
}

/// A close frame: `code` (none for an empty close) and `reason`.
pub fn close(code: Option<u16>, reason: &str) -> Bytes {
    let Some(code) = code else {
        return control(OP_CLOSE, &[]);
    };
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    control(OP_CLOSE, &payload)
}

/// One text message as a whole server frame (header and payload in one
/// buffer), made once per node and message and shared by every client:
/// a session writes these bytes as they are.
#[derive(Clone, Debug)]
pub struct TextFrame(Bytes);

impl TextFrame {
    pub fn new(text: &str) -> TextFrame {
        let mut out = BytesMut::with_capacity(MAX_HEAD - 4 + text.len());
        server_head(OP_TEXT, text.len(), &mut out);
        out.put_slice(text.as_bytes());
        TextFrame(out.freeze())
    }

    /// The frame as written to a socket (a cheap clone).
    pub fn wire(&self) -> Bytes {
        self.0.clone()
    }

    /// The message's bytes, without the header.
    pub fn payload(&self) -> &[u8] {
        let at = match self.0[1] {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        &self.0[at..]
    }
}

impl PartialEq<&str> for TextFrame {
    fn eq(&self, other: &&str) -> bool {
        self.payload() == other.as_bytes()
    }
}

#[cfg(test)]
mod tests;
