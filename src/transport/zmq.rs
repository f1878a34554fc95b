//! ZeroMQ links: the node's PUB socket (frames `<topic> <text>`) and one SUB
//! socket per upstream, each in its own task so a PUB that is down never
//! stalls the others. No routing decisions here: received text goes to the inbox.

use super::{Counters, Inbox, LinkState, LinkStatus, Origin, Outbound, Received, Text};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use zeromq::{Socket, SocketEvent, SocketOptions, SocketRecv, SocketSend, ZmqMessage};

/// Frames waiting for the PUB task. When full, new messages are dropped (and
/// logged): a PUB drops for slow peers anyway, and the node must not wait.
const PUB_QUEUE: usize = 4096;

/// A SUB connect attempt gives up after this long and starts again, so the
/// crate's own backoff (which grows to 30 s) never delays a late PUB by much.
const CONNECT_ATTEMPT: Duration = Duration::from_secs(1);

/// `<topic> <text>`, built once per message.
pub fn encode_frame(topic: &str, text: &str) -> Bytes {
    let mut frame = BytesMut::with_capacity(topic.len() + 1 + text.len());
    frame.put_slice(topic.as_bytes());
    frame.put_u8(b' ');
    frame.put_slice(text.as_bytes());
    frame.freeze()
}

/// The message of a frame: everything after the first space (the topic is
/// before it). A frame without a space carries no message and gives `None`.
pub fn decode_frame(frame: &Bytes) -> Option<Bytes> {
    let space = frame.iter().position(|&b| b == b' ')?;
    Some(frame.slice(space + 1..))
}

/// The node's side of its PUB socket.
pub struct ZmqPub {
    tx: mpsc::Sender<Text>,
}

impl Outbound for ZmqPub {
    fn origin(&self) -> Origin {
        Origin::Zmq
    }

    fn publish(&self, text: &Text) -> bool {
        match self.tx.try_send(text.clone()) {
            Ok(()) => true,
            Err(_) => {
                tracing::warn!("zmq pub queue full, message dropped");
                false
            }
        }
    }
}

/// A PUB socket bound to its listener, not yet running.
pub struct BoundPub {
    socket: zeromq::PubSocket,
}

/// Binds the PUB socket on a listener the caller bound (so a taken port is
/// reported as a plain `io::Error`).
pub async fn bind_pub(listener: std::net::TcpListener) -> Result<BoundPub, zeromq::ZmqError> {
    let mut socket = zeromq::PubSocket::new();
    socket.bind_listener(listener).await?;
    Ok(BoundPub { socket })
}

impl BoundPub {
    /// The handle that publishes, and the task that owns the socket.
    /// `topic` can change while it runs (a reload); each frame takes the current one.
    pub fn run(
        self,
        topic: watch::Receiver<String>,
        counters: Arc<Counters>,
        status: Arc<LinkStatus>,
        cancel: CancellationToken,
    ) -> (ZmqPub, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(PUB_QUEUE);
        (
            ZmqPub { tx },
            pub_task(self.socket, rx, topic, counters, status, cancel),
        )
    }
}

async fn pub_task(
    mut socket: zeromq::PubSocket,
    mut rx: mpsc::Receiver<Text>,
    topic: watch::Receiver<String>,
    counters: Arc<Counters>,
    status: Arc<LinkStatus>,
    cancel: CancellationToken,
) {
    loop {
        let text = tokio::select! {
            _ = cancel.cancelled() => break,
            text = rx.recv() => match text {
                Some(text) => text,
                None => break,
            },
        };
        let frame = encode_frame(&topic.borrow(), &text);
        // PubSocket::send only queues the frame for its fan-out task.
        match socket.send(ZmqMessage::from(frame)).await {
            Ok(()) => {
                counters.add_out(1);
                status.add_sent(1);
            }
            Err(e) => tracing::warn!(error = %e, "zmq publish failed"),
        }
    }
    let errors = socket.close().await;
    if !errors.is_empty() {
        tracing::debug!(?errors, "zmq pub close");
    }
}

/// One upstream: connect (retrying until its PUB exists), subscribe with
/// `filter`, and feed every message into the inbox until cancelled. When the
/// PUB goes away the socket is replaced by a fresh one that connects with
/// our own short retries: the crate's reconnection backs off to 30 s
/// (CRATES.md §1), ours resumes within about a second of the PUB's return.
pub async fn sub_task(
    endpoint: String,
    filter: String,
    inbox: Inbox,
    status: Arc<LinkStatus>,
    cancel: CancellationToken,
) {
    let mut first = true;
    loop {
        let mut options = SocketOptions::default();
        options.connect_timeout(CONNECT_ATTEMPT);
        let mut socket = zeromq::SubSocket::with_options(options);
        // Subscribing before connecting makes the socket send the subscription
        // as part of the connection, before `connect` returns.
        if let Err(e) = socket.subscribe(&filter).await {
            tracing::error!(error = %e, %endpoint, "zmq subscribe failed");
            return;
        }
        let events = socket.monitor();
        if !connect(&mut socket, &endpoint, &cancel).await {
            return;
        }
        if first {
            tracing::info!(%endpoint, "zmq sub connected");
        } else {
            tracing::info!(%endpoint, "zmq sub reconnected");
        }
        first = false;
        status.set(LinkState::Up);
        let lost = receive(&mut socket, events, &endpoint, &inbox, &status, &cancel).await;
        let errors = socket.close().await;
        if !errors.is_empty() {
            tracing::debug!(?errors, "zmq sub close");
        }
        if !lost {
            return;
        }
        tracing::warn!(%endpoint, "zmq sub lost its publisher, reconnecting");
        status.set(LinkState::Connecting);
    }
}

/// Feeds the inbox until the publisher is lost (`true`) or the node stops
/// or the inbox closes (`false`).
async fn receive(
    socket: &mut zeromq::SubSocket,
    mut events: impl futures_util::Stream<Item = SocketEvent> + Unpin,
    endpoint: &str,
    inbox: &Inbox,
    status: &LinkStatus,
    cancel: &CancellationToken,
) -> bool {
    let mut monitoring = true;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return false,
            event = events.next(), if monitoring => match event {
                Some(SocketEvent::Disconnected(_)) => return true,
                Some(_) => {}
                // The monitor is gone; keep receiving without it.
                None => monitoring = false,
            },
            msg = socket.recv() => match msg {
                Ok(msg) => {
                    if let Some(text) = message_text(msg) {
                        status.add_received();
                        if inbox.send(Received { origin: Origin::Zmq, text }).await.is_err() {
                            return false;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, %endpoint, "zmq sub receive error");
                    return true;
                }
            },
        }
    }
}

/// Connects, retrying until the PUB exists; `false` when cancelled first.
async fn connect(
    socket: &mut zeromq::SubSocket,
    endpoint: &str,
    cancel: &CancellationToken,
) -> bool {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return false,
            r = socket.connect(endpoint) => match r {
                Ok(()) => return true,
                Err(e) => {
                    tracing::debug!(error = %e, %endpoint, "zmq sub not connected yet, retrying");
                    if cancellable_sleep(cancel, Duration::from_millis(50)).await {
                        return false;
                    }
                }
            },
        }
    }
}

/// The chat text of a received message (first frame only), or `None` (logged)
/// for frames that carry no valid UTF-8 message.
fn message_text(msg: ZmqMessage) -> Option<Text> {
    let frame = msg.into_vec().into_iter().next()?;
    let Some(body) = decode_frame(&frame) else {
        tracing::debug!(len = frame.len(), "zmq frame without a space dropped");
        return None;
    };
    match Text::try_from(body) {
        Ok(text) => Some(text),
        Err(_) => {
            tracing::debug!("zmq frame that is not UTF-8 dropped");
            None
        }
    }
}

/// Sleeps unless cancelled first; `true` when cancelled.
async fn cancellable_sleep(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_topic_space_text() {
        assert_eq!(
            &encode_frame("chat", "hello world")[..],
            b"chat hello world"
        );
        assert_eq!(&encode_frame("chat", "")[..], b"chat ");
    }

    #[test]
    fn decoding_keeps_everything_after_the_first_space() {
        let d = |s: &'static str| decode_frame(&Bytes::from_static(s.as_bytes()));
        assert_eq!(d("chat hello world").as_deref(), Some(&b"hello world"[..]));
        assert_eq!(d("chat  two").as_deref(), Some(&b" two"[..]));
        assert_eq!(d("chat ").as_deref(), Some(&b""[..]));
        assert_eq!(d("chatonly"), None);
    }
}
