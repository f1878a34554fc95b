//! ZeroMQ links on topo's own ZMTP (`transport::zmtp`): the node's PUB
//! socket (frames `<topic> <text>`) and one SUB connection per upstream, each
//! in its own task so a PUB that is down never stalls the others. No routing
//! decisions here: received text goes to the inbox.

use super::zmtp::{Options, Subscriber, SubscriberEvents, ZmtpPublisher};
use super::{Counters, Inbox, LinkState, LinkStatus, Origin, Outbound, Received, Text};
use crate::model::Limits;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A SUB dial attempt gives up after this long and starts again.
const CONNECT_ATTEMPT: Duration = Duration::from_secs(1);
/// Pause between dial attempts while the PUB is not there (libzmq's
/// reconnect interval too): a late or restarted PUB is found within it.
const RETRY: Duration = Duration::from_millis(100);
/// Pause after a PUB broke the protocol, so a broken peer costs little.
const RETRY_AFTER_VIOLATION: Duration = Duration::from_secs(1);
/// Room for `<topic> ` on top of the node's largest message: a frame from a
/// node with the same limits is never refused.
const TOPIC_ALLOWANCE: usize = 1024;

/// The ZMTP settings of a node's sockets, from its limits.
pub fn options(limits: &Limits) -> Options {
    Options {
        max_message: limits.max_message_bytes + TOPIC_ALLOWANCE,
        hwm: limits.zmq_hwm,
        ..Options::default()
    }
}

/// The message of a frame: everything after the first space (the topic is
/// before it). A frame without a space carries no message and gives `None`.
pub fn decode_frame(frame: &Bytes) -> Option<Bytes> {
    let space = frame.iter().position(|&b| b == b' ')?;
    Some(frame.slice(space + 1..))
}

/// The node's side of its PUB socket: frames `<topic> <text>`, the topic
/// as it is at each message (a reload may change it).
pub struct ZmqPub {
    publisher: ZmtpPublisher,
    topic: watch::Receiver<String>,
    counters: Arc<Counters>,
    status: Arc<LinkStatus>,
}

impl Outbound for ZmqPub {
    fn origin(&self) -> Origin {
        Origin::Zmq
    }

    /// Hands the frame to each subscriber's queue; a full queue drops for
    /// that subscriber only (counted in the link's `dropped`), so this is
    /// always `true`.
    fn publish(&self, text: &Text) -> bool {
        // Counted before the hand-over: once it is in a subscriber's queue a
        // peer may have it, and a `/healthz` read after that must count it.
        self.counters.add_out(1);
        self.status.add_sent(1);
        let topic = self.topic.borrow();
        self.publisher
            .send(&[topic.as_bytes(), b" ", text.as_bytes()]);
        true
    }
}

/// A PUB socket bound to its listener, not yet accepting.
pub struct BoundPub {
    listener: tokio::net::TcpListener,
    options: Options,
}

/// Takes over a listener the caller bound (so a taken port is reported as
/// a plain `io::Error`).
pub fn bind_pub(listener: std::net::TcpListener, options: Options) -> std::io::Result<BoundPub> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    Ok(BoundPub { listener, options })
}

impl BoundPub {
    /// The handle that publishes, and the task that accepts subscribers.
    pub fn run(
        self,
        topic: watch::Receiver<String>,
        counters: Arc<Counters>,
        status: Arc<LinkStatus>,
        cancel: CancellationToken,
    ) -> (ZmqPub, impl Future<Output = ()> + Send + 'static) {
        let publisher = ZmtpPublisher::new(self.options, status.zmtp.clone());
        let task = publisher.clone().serve(self.listener, cancel);
        let handle = ZmqPub {
            publisher,
            topic,
            counters,
            status,
        };
        (handle, task)
    }
}

/// Feeds a SUB's messages to the node's inbox and its state to the link status.
struct Events<'a> {
    endpoint: &'a str,
    status: &'a LinkStatus,
    first: bool,
}

impl SubscriberEvents<Received> for Events<'_> {
    fn up(&mut self) {
        if self.first {
            tracing::info!(endpoint = %self.endpoint, "zmq sub connected");
        } else {
            tracing::info!(endpoint = %self.endpoint, "zmq sub reconnected");
        }
        self.first = false;
        self.status.set(LinkState::Up);
    }

    fn convert(&mut self, frame: Bytes) -> Option<Received> {
        let text = message_text(frame)?;
        self.status.add_received();
        Some(Received {
            origin: Origin::Zmq,
            text,
            ack: None,
        })
    }
}

/// One upstream: dial (retrying until its PUB exists), subscribe with
/// `filter`, and feed every message into the inbox until cancelled. A lost
/// or silent PUB is dialled again at once; one that broke the protocol
/// (logged and counted as rejected) after a second.
pub async fn sub_task(
    endpoint: String,
    filter: String,
    options: Options,
    inbox: Inbox,
    status: Arc<LinkStatus>,
    cancel: CancellationToken,
) {
    let addr = endpoint
        .strip_prefix("tcp://")
        .unwrap_or(&endpoint)
        .to_owned();
    let subscriber = Subscriber {
        prefix: Bytes::from(filter.into_bytes()),
        options,
        stats: status.zmtp.clone(),
    };
    let mut events = Events {
        endpoint: &endpoint,
        status: &status,
        first: true,
    };
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            s = Subscriber::dial(&addr, CONNECT_ATTEMPT) => s,
        };
        let pause = match stream {
            Err(e) => {
                tracing::debug!(error = %e, %endpoint, "zmq sub not connected yet, retrying");
                RETRY
            }
            Ok(stream) => match subscriber
                .session(stream, &inbox, &mut events, &cancel)
                .await
            {
                Ok(()) => return,
                Err(e) if e.is_violation() => {
                    subscriber.stats.add_rejected();
                    tracing::warn!(%endpoint, error = %e, "zmq sub closed its connection to a misbehaving publisher");
                    RETRY_AFTER_VIOLATION
                }
                Err(e) => {
                    if status.state() == LinkState::Up {
                        tracing::warn!(%endpoint, error = %e, "zmq sub lost its publisher, reconnecting");
                    }
                    RETRY
                }
            },
        };
        status.set(LinkState::Connecting);
        if super::retry::sleep_or_cancelled(&cancel, pause).await {
            return;
        }
    }
}

/// The chat text of a received message (first frame only), or `None` (logged)
/// for frames that carry no valid UTF-8 message.
fn message_text(frame: Bytes) -> Option<Text> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_keeps_everything_after_the_first_space() {
        let d = |s: &'static str| decode_frame(&Bytes::from_static(s.as_bytes()));
        assert_eq!(d("chat hello world").as_deref(), Some(&b"hello world"[..]));
        assert_eq!(d("chat  two").as_deref(), Some(&b" two"[..]));
        assert_eq!(d("chat ").as_deref(), Some(&b""[..]));
        assert_eq!(d("chatonly"), None);
    }
}
