//! A SUB connection: dial a PUB, handshake, subscribe to one prefix, and
//! hand every message to a bounded channel. Messages the channel cannot take
//! yet wait in a queue of at most `hwm`; beyond it they are dropped and
//! counted, so a busy consumer never stops us from answering heartbeats.
//! Reconnecting is the caller's loop (it owns the link's state and logs).

use super::codec::{self, Command, Item, Reader};
use super::{Options, Role, Stats, ZmtpError, handshake, write_timed};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

/// The largest read buffer: a PUB sends many small frames at once.
const READ_CHUNK: usize = 16 * 1024;

/// Hooks of one SUB session, so the caller can keep its own state.
pub trait SubscriberEvents<T> {
    /// The handshake is done and the subscription sent.
    fn up(&mut self);
    /// Turns a message's first frame into what the channel carries; `None`
    /// skips it.
    fn convert(&mut self, frame: Bytes) -> Option<T>;
}

/// One SUB socket's settings.
pub struct Subscriber {
    pub prefix: Bytes,
    pub options: Options,
    pub stats: Arc<Stats>,
}

impl Subscriber {
    /// Dials `addr` (`host:port`) once, giving up after `limit`.
    pub async fn dial(addr: &str, limit: Duration) -> Result<TcpStream, ZmtpError> {
        match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Ok(stream) => Ok(stream?),
            Err(_) => Err(ZmtpError::Io(std::io::ErrorKind::TimedOut.into())),
        }
    }

    /// Runs one connection until it fails (`Err`) or until `cancel` or the
    /// channel closes (`Ok`).
    pub async fn session<T>(
        &self,
        stream: TcpStream,
        out: &mpsc::Sender<T>,
        events: &mut impl SubscriberEvents<T>,
        cancel: &CancellationToken,
    ) -> Result<(), ZmtpError> {
        let options = &self.options;
        let _ = stream.set_nodelay(true);
        let (read, mut write) = stream.into_split();
        let mut reader = Reader::new(read, options.max_message, READ_CHUNK);
        let greeting = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            g = handshake(&mut reader, &mut write, Role::Sub, options) => g?,
        };
        let timeout = options.heartbeat_timeout;
        write_timed(&mut write, &codec::subscribe_message(&self.prefix), timeout).await?;
        let _counted = self.stats.connected();
        events.up();

        let mut inbound = Inbound {
            pending: VecDeque::new(),
            dropping: 0,
        };
        let start = tokio::time::Instant::now() + options.heartbeat_interval;
        let mut beat = tokio::time::interval_at(start, options.heartbeat_interval);
        let mut heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                permit = out.reserve(), if !inbound.pending.is_empty() => {
                    let Ok(permit) = permit else { return Ok(()) };
                    inbound.pop(permit);
                }
                item = reader.next() => {
                    heard = tokio::time::Instant::now();
                    match item? {
                        Item::Message(frame) => {
                            let Some(message) = events.convert(frame) else { continue };
                            if !inbound.push(message, out, options.hwm, &self.stats) {
                                return Ok(());
                            }
                        }
                        Item::Command(Command::Ping { context }) => {
                            write_timed(&mut write, &codec::pong(&context), timeout).await?
                        }
                        Item::Command(Command::Error(reason)) => return Err(ZmtpError::Peer(reason)),
                        Item::Command(_) => {}
                    }
                }
                _ = beat.tick() => {
                    // A 3.0 peer cannot answer PING: then only TCP notices a loss.
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
}

/// Messages the channel could not take yet, at most `hwm`.
struct Inbound<T> {
    pending: VecDeque<T>,
    /// Dropped in the current episode of a full queue.
    dropping: u64,
}

impl<T> Inbound<T> {
    /// Hands `message` on, or queues it, or drops it (counted, logged once
    /// per episode) when `hwm` are waiting; `false` once the channel closed.
    fn push(&mut self, message: T, out: &mpsc::Sender<T>, hwm: usize, stats: &Stats) -> bool {
        if self.pending.is_empty() {
            match out.try_send(message) {
                Ok(()) => {}
                Err(TrySendError::Full(message)) => self.pending.push_back(message),
                Err(TrySendError::Closed(_)) => return false,
            }
        } else if self.pending.len() < hwm {
            self.pending.push_back(message);
        } else {
            stats.add_dropped();
            if self.dropping == 0 {
                tracing::warn!(
                    hwm,
                    "zmq sub inbound queue full, dropping messages until the node catches up"
                );
            }
            self.dropping += 1;
        }
        true
    }

    fn pop(&mut self, permit: mpsc::Permit<'_, T>) {
        if let Some(next) = self.pending.pop_front() {
            permit.send(next);
        }
        if self.pending.is_empty() && self.dropping > 0 {
            tracing::info!(dropped = self.dropping, "zmq sub caught up");
            self.dropping = 0;
        }
    }
}
