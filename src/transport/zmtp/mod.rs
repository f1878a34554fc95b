//! topo's own ZMTP 3.1 (RFC 23/37) over tokio TCP: exactly PUB and SUB with
//! the NULL mechanism, wire-compatible with libzmq 4.3 (XPUB/XSUB peers
//! too). Bounded everywhere a peer could make it grow: frame and message
//! size, handshake time, per-subscriber and inbound queues (HWM), and
//! heartbeats that notice a silent peer. It knows nothing of topics or chat.

pub mod codec;
pub mod publisher;
pub mod subscriber;

use codec::{Command, Item, PeerGreeting, Reader};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

pub use publisher::ZmtpPublisher;
pub use subscriber::{Subscriber, SubscriberEvents};

/// What `/healthz` shows of a socket's peers.
#[derive(Debug, Default)]
pub struct Stats {
    peers: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
}

impl Stats {
    /// Peers connected now (a PUB's subscribers; 0 or 1 for a SUB).
    pub fn peers(&self) -> u64 {
        self.peers.load(Ordering::Relaxed)
    }

    /// Connections closed because the peer broke the protocol or a limit.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Messages dropped because a queue was at its HWM.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn add_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    fn add_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a peer as connected until the guard is dropped.
    fn connected(self: &Arc<Self>) -> PeerGuard {
        self.peers.fetch_add(1, Ordering::Relaxed);
        PeerGuard(self.clone())
    }
}

struct PeerGuard(Arc<Stats>);

impl Drop for PeerGuard {
    fn drop(&mut self) {
        self.0.peers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The limits and timers of one socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Largest frame, and largest multipart message, accepted from a peer;
    /// beyond it the connection is closed.
    pub max_message: usize,
    /// Messages queued per subscriber (PUB) or received but not yet taken
    /// (SUB); beyond it new messages are dropped and counted.
    pub hwm: usize,
    /// Greeting and READY must be complete within this.
    pub handshake_timeout: Duration,
    /// A PING this often to a 3.1 peer.
    pub heartbeat_interval: Duration,
    /// A peer that sent nothing (not even a PONG) for this long is dropped;
    /// also the longest a blocked write may take.
    pub heartbeat_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_message: 64 * 1024,
            hwm: 1000,
            handshake_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(15),
        }
    }
}

impl Options {
    /// PING's TTL: how long the peer may wait for our next bytes, in
    /// tenths of a second; capped at 65.5 s (ms still fit 16 bits, in case
    /// a peer keeps them so), far above the 15 s default.
    fn ttl(&self) -> u16 {
        let deci = self.heartbeat_timeout.as_millis() / 100;
        deci.clamp(1, 655) as u16
    }
}

/// Why one peer's connection ended. Each ends that connection only.
#[derive(Debug, thiserror::Error)]
pub enum ZmtpError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the peer closed the connection")]
    Closed,
    #[error("the connection ended inside a frame (truncated)")]
    Truncated,
    #[error("not a ZMTP greeting (bad signature)")]
    Signature,
    #[error("ZMTP version {0}.{1} is not supported (3.x needed)")]
    Version(u8, u8),
    #[error("security mechanism `{0}` is not supported (NULL only)")]
    Mechanism(String),
    #[error("frame flags {0:#04x} are invalid")]
    Flags(u8),
    #[error("a frame or message of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: u64, limit: usize },
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("handshake not completed within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("expected READY, got {0}")]
    NotReady(String),
    #[error("a {ours} socket cannot talk to a {theirs} peer")]
    SocketType { ours: &'static str, theirs: String },
    #[error("the peer reported an error: {0}")]
    Peer(String),
    #[error("no traffic for {0:?} (heartbeat)")]
    Silent(Duration),
    #[error("a write blocked for {0:?}")]
    Stalled(Duration),
    #[error("more than {count} subscriptions or {bytes} bytes of them")]
    Subscriptions { count: usize, bytes: usize },
}

impl ZmtpError {
    /// A peer that broke the protocol or a limit (counted as rejected),
    /// rather than one that went away.
    pub fn is_violation(&self) -> bool {
        !matches!(
            self,
            ZmtpError::Io(_) | ZmtpError::Closed | ZmtpError::Silent(_) | ZmtpError::Stalled(_)
        )
    }
}

/// Our socket type and the peer types it may talk to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Role {
    Pub,
    Sub,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Pub => "PUB",
            Role::Sub => "SUB",
        }
    }

    fn accepts(self, peer: &str) -> bool {
        let peer = peer.to_ascii_uppercase();
        match self {
            Role::Pub => peer == "SUB" || peer == "XSUB",
            Role::Sub => peer == "PUB" || peer == "XPUB",
        }
    }
}

/// Greeting and READY both ways, within `options.handshake_timeout`. On a
/// violation the peer gets an ERROR command (best effort) before we close.
pub(crate) async fn handshake<R, W>(
    reader: &mut Reader<R>,
    writer: &mut W,
    role: Role,
    options: &Options,
) -> Result<PeerGreeting, ZmtpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let limit = options.handshake_timeout;
    let result = tokio::time::timeout(limit, exchange(reader, writer, role)).await;
    let result = result.unwrap_or(Err(ZmtpError::HandshakeTimeout(limit)));
    if let Err(e) = &result
        && e.is_violation()
    {
        let error = codec::error(&e.to_string());
        let _ = tokio::time::timeout(Duration::from_millis(100), writer.write_all(&error)).await;
    }
    result
}

/// `bytes` within `limit`: a peer that stops reading cannot hold us longer.
pub(crate) async fn write_timed<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    limit: Duration,
) -> Result<(), ZmtpError> {
    match tokio::time::timeout(limit, writer.write_all(bytes)).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ZmtpError::Stalled(limit)),
    }
}

async fn exchange<R, W>(
    reader: &mut Reader<R>,
    writer: &mut W,
    role: Role,
) -> Result<PeerGreeting, ZmtpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // All 64 bytes at once: libzmq reads a 3.x peer's greeting in parts but
    // needs nothing from us to send its own.
    writer
        .write_all(&codec::greeting(matches!(role, Role::Pub)))
        .await?;
    let mut greeting = [0u8; codec::GREETING_LEN];
    reader.read_exact(&mut greeting).await?;
    let peer = codec::parse_greeting(&greeting)?;
    writer.write_all(&codec::ready(role.name())).await?;
    match reader.next().await? {
        Item::Command(Command::Ready { socket_type }) if role.accepts(&socket_type) => Ok(peer),
        Item::Command(Command::Ready { socket_type }) => Err(ZmtpError::SocketType {
            ours: role.name(),
            theirs: socket_type,
        }),
        Item::Command(Command::Error(reason)) => Err(ZmtpError::Peer(reason)),
        Item::Command(other) => Err(ZmtpError::NotReady(other.name().to_owned())),
        Item::Message(_) => Err(ZmtpError::NotReady("a data message".into())),
    }
}
