//! A PUB socket: accepts subscribers on a listener, keeps each one's
//! subscriptions, and fans every message out to the subscribers whose
//! prefixes match. Each subscriber has its own queue of at most `hwm`
//! messages: a slow one loses its own messages (counted), never anyone
//! else's, and `send` never waits.

use super::codec::{self, Command, Item, Reader};
use super::{Options, Role, Stats, ZmtpError, handshake, write_timed};
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Connections beyond this are closed at once (each costs a task and buffers).
const MAX_PEERS: usize = 1024;
/// Prefixes one subscriber may hold, and their bytes in all; more closes
/// its connection (prefixes stay in memory as long as the connection).
const MAX_SUBSCRIPTIONS: usize = 1024;
const MAX_SUBSCRIPTION_BYTES: usize = 64 * 1024;
/// A write gathers queued frames up to about this many bytes.
const BATCH: usize = 64 * 1024;
/// What a subscriber sends us is small: subscriptions, PING, PONG.
const READ_CHUNK: usize = 256;

/// The sending side of a PUB socket; cheap to share.
#[derive(Clone)]
pub struct ZmtpPublisher {
    shared: Arc<Shared>,
}

struct Shared {
    options: Options,
    stats: Arc<Stats>,
    peers: Mutex<Vec<Arc<Peer>>>,
}

/// One subscriber as `send` sees it.
struct Peer {
    addr: SocketAddr,
    queue: mpsc::Sender<Bytes>,
    /// Prefix and how many times it was subscribed (libzmq counts them too).
    subscriptions: Mutex<Vec<(Bytes, u32)>>,
    /// Messages dropped in the current episode of a full queue.
    dropping: AtomicU64,
}

impl Peer {
    fn wants(&self, body: &[u8]) -> bool {
        let subs = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        subs.iter().any(|(prefix, _)| body.starts_with(prefix))
    }

    fn subscribe(&self, prefix: Bytes) -> Result<(), ZmtpError> {
        let mut subs = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, n)) = subs.iter_mut().find(|(p, _)| *p == prefix) {
            *n = n.saturating_add(1);
            return Ok(());
        }
        let bytes: usize = subs.iter().map(|(p, _)| p.len()).sum::<usize>() + prefix.len();
        if subs.len() >= MAX_SUBSCRIPTIONS || bytes > MAX_SUBSCRIPTION_BYTES {
            return Err(ZmtpError::Subscriptions {
                count: MAX_SUBSCRIPTIONS,
                bytes: MAX_SUBSCRIPTION_BYTES,
            });
        }
        subs.push((prefix, 1));
        Ok(())
    }

    fn cancel(&self, prefix: &[u8]) {
        let mut subs = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = subs.iter().position(|(p, _)| p == prefix) {
            subs[i].1 -= 1;
            if subs[i].1 == 0 {
                subs.swap_remove(i);
            }
        }
    }

    /// Acts on what the subscriber sent; a PING's PONG is returned to send.
    fn take(&self, item: Item) -> Result<Option<Bytes>, ZmtpError> {
        match item {
            Item::Message(m) => match m.first() {
                Some(1) => self.subscribe(m.slice(1..))?,
                Some(0) => self.cancel(&m[1..]),
                // XSUB may send other messages upstream: none for us.
                _ => {}
            },
            Item::Command(Command::Subscribe(prefix)) => self.subscribe(prefix)?,
            Item::Command(Command::Cancel(prefix)) => self.cancel(&prefix),
            Item::Command(Command::Ping { context }) => return Ok(Some(codec::pong(&context))),
            Item::Command(Command::Error(reason)) => return Err(ZmtpError::Peer(reason)),
            Item::Command(_) => {}
        }
        Ok(None)
    }

    fn dropped(&self, stats: &Stats, hwm: usize) {
        stats.add_dropped();
        if self.dropping.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(peer = %self.addr, hwm, "zmq subscriber too slow: its queue is full, dropping its messages until it catches up");
        }
    }

    fn caught_up(&self) {
        let n = self.dropping.swap(0, Ordering::Relaxed);
        if n > 0 {
            tracing::info!(peer = %self.addr, dropped = n, "zmq subscriber caught up");
        }
    }
}

impl ZmtpPublisher {
    pub fn new(options: Options, stats: Arc<Stats>) -> ZmtpPublisher {
        ZmtpPublisher {
            shared: Arc::new(Shared {
                options,
                stats,
                peers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Queues the single-frame message `parts` (joined) for every matching
    /// subscriber, encoded once. Never waits; returns how many took it.
    pub fn send(&self, parts: &[&[u8]]) -> usize {
        let peers = self.shared.peers.lock().unwrap_or_else(|e| e.into_inner());
        if peers.is_empty() {
            return 0;
        }
        let wire = codec::message(parts);
        let body = &wire[wire.len() - parts.iter().map(|p| p.len()).sum::<usize>()..];
        let mut queued = 0;
        for peer in peers.iter().filter(|p| p.wants(body)) {
            match peer.queue.try_send(wire.clone()) {
                Ok(()) => queued += 1,
                Err(TrySendError::Full(_)) => {
                    peer.dropped(&self.shared.stats, self.shared.options.hwm)
                }
                // Its connection is ending; it leaves the list in a moment.
                Err(TrySendError::Closed(_)) => {}
            }
        }
        queued
    }

    /// Subscribers connected now.
    pub fn peers(&self) -> usize {
        self.shared
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Accepts subscribers until `cancel`, then waits for their connections to close.
    pub async fn serve(self, listener: TcpListener, cancel: CancellationToken) {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, addr)) if connections.len() < MAX_PEERS => {
                        let shared = self.shared.clone();
                        connections.spawn(connection(shared, stream, addr, cancel.clone()));
                    }
                    Ok((_, addr)) => {
                        tracing::debug!(peer = %addr, max = MAX_PEERS, "zmq pub: too many connections, closed");
                    }
                    Err(e) => {
                        // Out of descriptors, typically: let some close first.
                        tracing::debug!(error = %e, "zmq pub accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                },
            }
        }
        while connections.join_next().await.is_some() {}
    }
}

async fn connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    addr: SocketAddr,
    cancel: CancellationToken,
) {
    match session(&shared, stream, addr, &cancel).await {
        Ok(()) => {}
        Err(e) if e.is_violation() => {
            shared.stats.add_rejected();
            tracing::warn!(peer = %addr, error = %e, "zmq pub closed a subscriber's connection");
        }
        Err(e) => tracing::debug!(peer = %addr, error = %e, "zmq subscriber gone"),
    }
}

/// Removes a subscriber from the fan-out when its session ends, however it ends.
struct Registered<'a> {
    shared: &'a Shared,
    peer: Arc<Peer>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut peers = self.shared.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.retain(|p| !Arc::ptr_eq(p, &self.peer));
    }
}

async fn session(
    shared: &Arc<Shared>,
    stream: TcpStream,
    addr: SocketAddr,
    cancel: &CancellationToken,
) -> Result<(), ZmtpError> {
    let options = &shared.options;
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut reader = Reader::new(read, options.max_message, READ_CHUNK);
    let greeting = tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        g = handshake(&mut reader, &mut write, Role::Pub, options) => g?,
    };
    let (queue, mut rx) = mpsc::channel(options.hwm.max(1));
    let peer = Arc::new(Peer {
        addr,
        queue,
        subscriptions: Mutex::new(Vec::new()),
        dropping: AtomicU64::new(0),
    });
    shared
        .peers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(peer.clone());
    let registered = Registered { shared, peer };
    let _counted = shared.stats.connected();
    tracing::debug!(peer = %addr, "zmq subscriber connected");

    let timeout = options.heartbeat_timeout;
    let start = tokio::time::Instant::now() + options.heartbeat_interval;
    let mut beat = tokio::time::interval_at(start, options.heartbeat_interval);
    let mut heard = tokio::time::Instant::now();
    let mut batch = BytesMut::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            item = reader.next() => {
                heard = tokio::time::Instant::now();
                if let Some(reply) = registered.peer.take(item?)? {
                    write_timed(&mut write, &reply, timeout).await?;
                }
            }
            Some(first) = rx.recv() => {
                flush(first, &mut rx, &mut batch, &mut write, timeout).await?;
                if rx.is_empty() {
                    registered.peer.caught_up();
                    // An idle subscriber keeps no batch buffer.
                    batch = BytesMut::new();
                }
            }
            _ = beat.tick() => {
                if greeting.v31 {
                    if heard.elapsed() >= timeout {
                        return Err(ZmtpError::Silent(timeout));
                    }
                    write_timed(&mut write, &codec::ping(options.ttl()), timeout).await?;
                }
            }
        }
    }
}

/// Writes `first` and whatever else is queued (up to about `BATCH` bytes)
/// in one write; a lone frame is written as it is, without a copy.
async fn flush<W: tokio::io::AsyncWrite + Unpin>(
    first: Bytes,
    rx: &mut mpsc::Receiver<Bytes>,
    batch: &mut BytesMut,
    write: &mut W,
    timeout: std::time::Duration,
) -> Result<(), ZmtpError> {
    if rx.is_empty() {
        return write_timed(write, &first, timeout).await;
    }
    batch.extend_from_slice(&first);
    while batch.len() < BATCH {
        let Ok(next) = rx.try_recv() else { break };
        batch.extend_from_slice(&next);
    }
    let result = write_timed(write, batch, timeout).await;
    batch.clear();
    result
}
