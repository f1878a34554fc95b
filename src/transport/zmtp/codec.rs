//! ZMTP 3.1 bytes (RFC 23/37): the 64-byte greeting, frames, and the few
//! commands topo speaks (READY, ERROR, PING, PONG, SUBSCRIBE, CANCEL).
//! Every length read from the wire is checked against a limit before a byte
//! is reserved for it; nothing here does I/O except [`Reader`].

use super::ZmtpError;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

pub const GREETING_LEN: usize = 64;
/// The smallest read buffer a connection keeps.
const MIN_CHUNK: usize = 512;
const MORE: u8 = 0x01;
const LONG: u8 = 0x02;
const COMMAND: u8 = 0x04;

/// Our greeting: ZMTP 3.1, NULL mechanism. The signature's padding ends in 1
/// as libzmq's does (an old peer reads it as a one-byte identity length).
pub fn greeting(as_server: bool) -> [u8; GREETING_LEN] {
    let mut g = [0u8; GREETING_LEN];
    g[0] = 0xFF;
    g[8] = 1;
    g[9] = 0x7F;
    g[10] = 3;
    g[11] = 1;
    g[12..16].copy_from_slice(b"NULL");
    g[32] = u8::from(as_server);
    g
}

/// What a peer's greeting says that matters: whether it speaks 3.1 (and so
/// understands PING).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerGreeting {
    pub v31: bool,
}

/// Checks a peer's greeting: signature, version 3.x, mechanism NULL.
pub fn parse_greeting(g: &[u8; GREETING_LEN]) -> Result<PeerGreeting, ZmtpError> {
    if g[0] != 0xFF || g[9] & 0x01 == 0 {
        return Err(ZmtpError::Signature);
    }
    let (major, minor) = (g[10], g[11]);
    if major < 3 {
        return Err(ZmtpError::Version(major, minor));
    }
    let mechanism = &g[12..32];
    let end = mechanism.iter().position(|&b| b == 0).unwrap_or(20);
    if &mechanism[..end] != b"NULL" || mechanism[end..].iter().any(|&b| b != 0) {
        let name = String::from_utf8_lossy(&mechanism[..end]).into_owned();
        return Err(ZmtpError::Mechanism(name));
    }
    Ok(PeerGreeting {
        v31: major > 3 || minor >= 1,
    })
}

/// One frame's header followed by `body`, as a single buffer.
pub fn frame(flags: u8, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(9 + body.len());
    put_header(&mut out, flags, body.len());
    out.put_slice(body);
    out.freeze()
}

/// A single-frame data message made of `parts` joined, encoded once (a PUB
/// shares the result among its subscribers).
pub fn message(parts: &[&[u8]]) -> Bytes {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut out = BytesMut::with_capacity(9 + len);
    put_header(&mut out, 0, len);
    for p in parts {
        out.put_slice(p);
    }
    out.freeze()
}

fn put_header(out: &mut BytesMut, flags: u8, len: usize) {
    if len > 255 {
        out.put_u8(flags | LONG);
        out.put_u64(len as u64);
    } else {
        out.put_u8(flags);
        out.put_u8(len as u8);
    }
}

/// A command frame: name length, name, data.
pub fn command(name: &str, data: &[u8]) -> Bytes {
    let mut body = Vec::with_capacity(1 + name.len() + data.len());
    body.push(name.len() as u8);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(data);
    frame(COMMAND, &body)
}

/// READY with the one property topo announces.
pub fn ready(socket_type: &str) -> Bytes {
    let mut data = Vec::new();
    put_property(&mut data, "Socket-Type", socket_type.as_bytes());
    command("READY", &data)
}

fn put_property(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

/// ERROR, sent before closing a peer that broke the handshake.
pub fn error(reason: &str) -> Bytes {
    let reason = &reason.as_bytes()[..reason.len().min(255)];
    let mut data = vec![reason.len() as u8];
    data.extend_from_slice(reason);
    command("ERROR", &data)
}

/// PING with a TTL (how long the peer may wait for our next traffic, in
/// tenths of a second) and no context.
pub fn ping(ttl_deciseconds: u16) -> Bytes {
    command("PING", &ttl_deciseconds.to_be_bytes())
}

/// The 3.0 subscription message (libzmq 4.3 PUBs accept it from any peer).
pub fn subscribe_message(prefix: &[u8]) -> Bytes {
    message(&[&[1], prefix])
}

/// A command a peer sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Ready {
        socket_type: String,
    },
    Error(String),
    Ping {
        context: Bytes,
    },
    Pong,
    Subscribe(Bytes),
    Cancel(Bytes),
    /// A command topo has no use for (ignored, as RFC 37 allows).
    Other(String),
}

impl Command {
    pub fn name(&self) -> &str {
        match self {
            Command::Ready { .. } => "READY",
            Command::Error(_) => "ERROR",
            Command::Ping { .. } => "PING",
            Command::Pong => "PONG",
            Command::Subscribe(_) => "SUBSCRIBE",
            Command::Cancel(_) => "CANCEL",
            Command::Other(name) => name,
        }
    }
}

/// PONG echoing a PING's context.
pub fn pong(context: &[u8]) -> Bytes {
    command("PONG", context)
}

/// Parses a command frame's body; a truncated or malformed body is an error.
pub fn parse_command(mut body: Bytes) -> Result<Command, ZmtpError> {
    let Some(&len) = body.first() else {
        return Err(ZmtpError::Malformed("command"));
    };
    let len = usize::from(len);
    if body.len() < 1 + len {
        return Err(ZmtpError::Malformed("command"));
    }
    let name = body.slice(1..1 + len);
    body.advance(1 + len);
    Ok(match &name[..] {
        b"READY" => Command::Ready {
            socket_type: socket_type(body)?,
        },
        b"ERROR" => {
            let reason = match body.first() {
                Some(&n) if body.len() > usize::from(n) => &body[1..1 + usize::from(n)],
                _ => return Err(ZmtpError::Malformed("ERROR")),
            };
            Command::Error(String::from_utf8_lossy(reason).into_owned())
        }
        b"PING" => {
            if body.len() < 2 || body.len() > 2 + 16 {
                return Err(ZmtpError::Malformed("PING"));
            }
            Command::Ping {
                context: body.slice(2..),
            }
        }
        b"PONG" => Command::Pong,
        b"SUBSCRIBE" => Command::Subscribe(body),
        b"CANCEL" => Command::Cancel(body),
        other => Command::Other(String::from_utf8_lossy(other).into_owned()),
    })
}

/// The Socket-Type property of READY's metadata; every property must be
/// well formed, and Socket-Type must be there.
fn socket_type(mut props: Bytes) -> Result<String, ZmtpError> {
    let malformed = ZmtpError::Malformed("READY");
    let mut found = None;
    while !props.is_empty() {
        let n = usize::from(props[0]);
        if props.len() < 1 + n + 4 {
            return Err(malformed);
        }
        let name = props.slice(1..1 + n);
        props.advance(1 + n);
        let len = props.get_u32() as usize;
        if props.len() < len {
            return Err(malformed);
        }
        let value = props.split_to(len);
        if name.eq_ignore_ascii_case(b"Socket-Type") {
            found = Some(String::from_utf8_lossy(&value).into_owned());
        }
    }
    found.ok_or(malformed)
}

/// What [`Reader::next`] yields.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    Command(Command),
    /// A data message: its first frame (topo ignores the others, but they
    /// count towards the size limit).
    Message(Bytes),
}

/// Reads frames from one peer into a buffer that grows only to the size of
/// the frame at hand, which is at most `limit` bytes. Cancel-safe: a partly
/// read frame stays in the buffer for the next call.
pub struct Reader<R> {
    io: R,
    buf: BytesMut,
    limit: usize,
    /// Bytes reserved per read when the frame at hand needs fewer: it
    /// doubles while reads fill it, up to `max_chunk`, and halves while they
    /// use little of it, so a busy peer gets few large reads and a quiet
    /// one holds a small buffer.
    chunk: usize,
    max_chunk: usize,
    /// Inside a multipart message: its first frame and the bytes so far.
    first: Option<Bytes>,
    total: usize,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(io: R, limit: usize, max_chunk: usize) -> Reader<R> {
        Reader {
            io,
            buf: BytesMut::new(),
            limit,
            chunk: MIN_CHUNK.min(max_chunk),
            max_chunk,
            first: None,
            total: 0,
        }
    }

    /// Fills exactly `out` (the greeting), from buffered bytes first.
    pub async fn read_exact(&mut self, out: &mut [u8]) -> Result<(), ZmtpError> {
        while self.buf.len() < out.len() {
            self.fill(out.len() - self.buf.len()).await?;
        }
        out.copy_from_slice(&self.buf.split_to(out.len()));
        Ok(())
    }

    /// The next command or complete data message.
    pub async fn next(&mut self) -> Result<Item, ZmtpError> {
        loop {
            match self.decode()? {
                Some(item) => return Ok(item),
                None => {
                    let want = self.missing();
                    self.fill(want).await?;
                }
            }
        }
    }

    /// Reads at least one byte, reserving room for `want` more (bounded by
    /// the frame limit, checked in `decode` before `want` is known).
    async fn fill(&mut self, want: usize) -> Result<(), ZmtpError> {
        if self.buf.is_empty() && self.buf.capacity() > 2 * self.chunk.max(want) {
            // Grown for a burst that is over: let it go.
            self.buf = BytesMut::new();
        }
        self.buf.reserve(want.max(self.chunk));
        let n = self.io.read_buf(&mut self.buf).await?;
        if n >= self.chunk {
            self.chunk = (self.chunk * 2).min(self.max_chunk);
        } else if n < self.chunk / 4 {
            self.chunk = (self.chunk / 2).max(MIN_CHUNK.min(self.max_chunk));
        }
        if n == 0 {
            return Err(if self.buf.is_empty() && self.first.is_none() {
                ZmtpError::Closed
            } else {
                ZmtpError::Truncated
            });
        }
        Ok(())
    }

    /// Bytes still missing for the frame at the front of the buffer.
    fn missing(&self) -> usize {
        match self.header() {
            Ok(Some((_, head, size))) => (head + size as usize).saturating_sub(self.buf.len()),
            _ => 9usize.saturating_sub(self.buf.len()),
        }
    }

    /// The front frame's flags, header length and body size, once the
    /// header is complete; errors for bad flags and oversize frames.
    fn header(&self) -> Result<Option<(u8, usize, u64)>, ZmtpError> {
        let Some(&flags) = self.buf.first() else {
            return Ok(None);
        };
        if flags & !(MORE | LONG | COMMAND) != 0 {
            return Err(ZmtpError::Flags(flags));
        }
        if flags & (MORE | COMMAND) == MORE | COMMAND {
            return Err(ZmtpError::Flags(flags));
        }
        let (head, size) = if flags & LONG != 0 {
            if self.buf.len() < 9 {
                return Ok(None);
            }
            (
                9,
                u64::from_be_bytes(self.buf[1..9].try_into().unwrap_or([0xFF; 8])),
            )
        } else {
            if self.buf.len() < 2 {
                return Ok(None);
            }
            (2, u64::from(self.buf[1]))
        };
        let so_far = if flags & COMMAND == 0 { self.total } else { 0 };
        if size.saturating_add(so_far as u64) > self.limit as u64 {
            return Err(ZmtpError::TooLarge {
                size: size.saturating_add(so_far as u64),
                limit: self.limit,
            });
        }
        Ok(Some((flags, head, size)))
    }

    fn decode(&mut self) -> Result<Option<Item>, ZmtpError> {
        loop {
            let Some((flags, head, size)) = self.header()? else {
                return Ok(None);
            };
            let size = size as usize;
            if self.buf.len() < head + size {
                return Ok(None);
            }
            // A copy, not a view into the read buffer: a message handed on to
            // slow clients must not pin the whole buffer it arrived in, and
            // the buffer, owned alone, is reused for the next reads.
            let body = Bytes::copy_from_slice(&self.buf[head..head + size]);
            self.buf.advance(head + size);
            if flags & COMMAND != 0 {
                if self.first.is_some() {
                    return Err(ZmtpError::Malformed(
                        "multipart message (a command inside it)",
                    ));
                }
                return parse_command(body).map(|c| Some(Item::Command(c)));
            }
            self.total += size;
            let first = self.first.take().unwrap_or(body);
            if flags & MORE != 0 {
                self.first = Some(first);
                continue;
            }
            self.total = 0;
            return Ok(Some(Item::Message(first)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8], limit: usize) -> Vec<Result<Item, String>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut r = Reader::new(bytes, limit, 64);
            let mut out = Vec::new();
            loop {
                match r.next().await {
                    Ok(item) => out.push(Ok(item)),
                    Err(ZmtpError::Closed) => return out,
                    Err(e) => {
                        out.push(Err(e.to_string()));
                        return out;
                    }
                }
            }
        })
    }

    #[test]
    fn greetings_round_trip_and_bad_ones_are_named() {
        let g = greeting(true);
        assert_eq!(parse_greeting(&g).unwrap(), PeerGreeting { v31: true });
        let mut bad = g;
        bad[0] = 0x00;
        assert!(matches!(parse_greeting(&bad), Err(ZmtpError::Signature)));
        let mut old = g;
        old[10] = 2;
        assert!(matches!(
            parse_greeting(&old),
            Err(ZmtpError::Version(2, 1))
        ));
        let mut plain = g;
        plain[12..17].copy_from_slice(b"PLAIN");
        assert!(matches!(parse_greeting(&plain), Err(ZmtpError::Mechanism(m)) if m == "PLAIN"));
        let mut v30 = g;
        v30[11] = 0;
        assert_eq!(parse_greeting(&v30).unwrap(), PeerGreeting { v31: false });
    }

    #[test]
    fn frames_short_long_multipart_and_commands() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&message(&[b"chat hi"]));
        wire.extend_from_slice(&message(&[&[b'x'; 300]]));
        wire.extend_from_slice(&frame(MORE, b"first"));
        wire.extend_from_slice(&frame(0, b"second"));
        wire.extend_from_slice(&ready("PUB"));
        wire.extend_from_slice(&ping(50));
        wire.extend_from_slice(&command("SUBSCRIBE", b"chat"));
        let items = read_all(&wire, 1000);
        assert_eq!(items.len(), 6, "{items:?}");
        assert_eq!(items[0], Ok(Item::Message(Bytes::from_static(b"chat hi"))));
        assert!(matches!(&items[1], Ok(Item::Message(b)) if b.len() == 300));
        assert_eq!(items[2], Ok(Item::Message(Bytes::from_static(b"first"))));
        let ready = Command::Ready {
            socket_type: "PUB".into(),
        };
        assert_eq!(items[3], Ok(Item::Command(ready)));
        let ping = Command::Ping {
            context: Bytes::new(),
        };
        assert_eq!(items[4], Ok(Item::Command(ping)));
        let sub = Command::Subscribe(Bytes::from_static(b"chat"));
        assert_eq!(items[5], Ok(Item::Command(sub)));
    }

    #[test]
    fn a_huge_declared_length_is_refused_before_any_allocation() {
        let mut wire = vec![LONG];
        wire.extend_from_slice(&(1u64 << 62).to_be_bytes());
        let items = read_all(&wire, 1000);
        assert!(
            items[0].as_ref().unwrap_err().contains("exceeds"),
            "{items:?}"
        );
        // A multipart message is limited as a whole.
        let mut wire = frame(MORE, &[0; 600]).to_vec();
        wire.extend_from_slice(&frame(0, &[0; 600]));
        let items = read_all(&wire, 1000);
        assert!(
            items[0].as_ref().unwrap_err().contains("exceeds"),
            "{items:?}"
        );
    }

    #[test]
    fn bad_flags_truncation_and_malformed_commands_are_errors() {
        let items = read_all(&[0x08, 0], 1000);
        assert!(items[0].as_ref().unwrap_err().contains("flags"));
        let items = read_all(&[COMMAND | MORE, 0], 1000);
        assert!(items[0].as_ref().unwrap_err().contains("flags"));
        let items = read_all(&[0, 5, b'a'], 1000);
        assert!(items[0].as_ref().unwrap_err().contains("truncated"));
        let items = read_all(&frame(COMMAND, &[9, b'R']), 1000);
        assert!(items[0].as_ref().unwrap_err().contains("malformed"));
        // READY whose property length runs past the end.
        let items = read_all(&command("READY", &[11, b'S']), 1000);
        assert!(items[0].as_ref().unwrap_err().contains("malformed"));
        let items = read_all(&command("READY", &[]), 1000);
        assert!(items[0].as_ref().unwrap_err().contains("malformed"));
    }
}
