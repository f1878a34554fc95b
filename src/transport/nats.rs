//! The NATS link: one client connection (to one server of the broker's
//! list, failing over to the others), echo off so the server never sends
//! the node its own publications (rule 1), one subscription per filter
//! (in the queue group when there is one), and a publishing task with the
//! bounded outbox of `transport::outbox` for the time the link is down.
//! [`NatsControl`] rewires a live link on its connection (reload): new
//! filters, another queue group, another publish subject, the outbox's
//! size; and holds it down (the admin page's "broker down" switch: the
//! link reads down, messages wait in the outbox, what arrives is dropped
//! and counted). Never logs the credentials: only the redacted URL.

use super::outbox::Outbox;
use super::queue::QueuedOutbound;
use super::retry::{backoff, sleep_or_cancelled};
use super::{Counters, Inbox, LinkState, LinkStatus, Origin, Received, Text};
use crate::diff::NatsRewire;
use crate::model::{NatsAuth, NatsUrl, NatsWiring};
use async_nats::{Client, ConnectOptions, Event, Subscriber};
use futures_util::{FutureExt, StreamExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::StreamMap;
use tokio_util::sync::CancellationToken;

/// Messages waiting to be published; when full (NATS slow or down) new
/// messages are dropped and logged: local delivery never waits for NATS.
const PUBLISH_QUEUE: usize = 4096;
/// Reconnection attempts back off up to this plus as much again of
/// jitter; the first attempt after a loss is immediate (another server).
const RETRY_CAP: Duration = Duration::from_millis(400);
/// How long `connect` may take to reach a server and confirm the subscriptions.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// One publication (or flush) attempt at most.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// Messages a subscription may hold before the client drops (and reports)
/// them as a slow consumer; the receiving task drains them into the inbox.
const SUBSCRIPTION_CAPACITY: usize = 8192;

/// Why a NATS link could not be made. Displays without credentials.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Connect(#[from] async_nats::ConnectError),
    #[error(transparent)]
    Subscribe(#[from] async_nats::SubscribeError),
    #[error(transparent)]
    Flush(#[from] async_nats::client::FlushError),
    #[error("a subject is not valid for NATS: {0}")]
    Subject(String),
    #[error("timed out")]
    TimedOut,
}

/// A connected client, its subscriptions confirmed by the server, and the
/// link's status (which the client's events keep up to date from now on).
pub struct Connected {
    client: Client,
    subscriptions: Vec<(Key, Subscriber)>,
    pub status: Arc<LinkStatus>,
    /// The fault switch, read by the client's event callback too (a
    /// reconnection while it is on must not read up).
    severed: Arc<AtomicBool>,
}

/// One subscription of a link: its filter, and the queue group it joined
/// (a rewiring to another group subscribes the filter again beside it).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Sub {
    filter: String,
    queue: Option<String>,
}

type Key = Arc<Sub>;

fn key(filter: &str, queue: &Option<String>) -> Key {
    Arc::new(Sub {
        filter: filter.to_owned(),
        queue: queue.clone(),
    })
}

/// The delay before reconnection attempt `attempts` (1-based): none for
/// the first (the client moves on to another server), then the shared
/// capped backoff.
fn reconnect_delay(attempts: usize) -> Duration {
    match attempts {
        0 | 1 => Duration::ZERO,
        n => backoff(Duration::from_millis(50), RETRY_CAP)
            .nth(n - 2)
            .unwrap_or(RETRY_CAP),
    }
}

fn options(
    url: &NatsUrl,
    status: Arc<LinkStatus>,
    severed: Arc<AtomicBool>,
    name: &str,
) -> ConnectOptions {
    let span = tracing::Span::current();
    let mut options = ConnectOptions::new()
        .no_echo()
        .name(format!("topo {name}"))
        .connection_timeout(Duration::from_secs(2))
        .ping_interval(Duration::from_secs(10))
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(move |event| {
            let (status, span, severed) = (status.clone(), span.clone(), severed.clone());
            async move { on_event(&status, &severed, &span, event) }
        });
    options = match url.credentials() {
        NatsAuth::None => options,
        NatsAuth::Token(token) => options.token(token.clone()),
        NatsAuth::User { user, password } => {
            options.user_and_password(user.clone(), password.clone())
        }
    };
    if url.tls {
        // rustls needs one process-wide crypto provider; the first call wins.
        let _ = rustls::crypto::ring::default_provider().install_default();
        options = options.require_tls(true);
        if let Some(ca) = &url.ca {
            options = options.add_root_certificates(ca.clone());
        }
    }
    options
}

/// Called from the client's own task: the link's state, and a log line
/// per change in the node's span.
fn on_event(status: &LinkStatus, severed: &AtomicBool, span: &tracing::Span, event: Event) {
    let _entered = span.enter();
    match event {
        Event::Connected => {
            if !severed.load(Relaxed) {
                status.set(LinkState::Up);
            }
            tracing::info!("nats link up");
        }
        Event::Disconnected => {
            status.set(LinkState::Down);
            tracing::warn!("nats link down, reconnecting");
        }
        Event::SlowConsumer(sid) => {
            tracing::warn!(sid, "nats subscription too slow, messages dropped");
        }
        other => tracing::info!(event = %other, "nats"),
    }
}

/// Connects to one of the broker's servers and subscribes; ready when the
/// server has confirmed every subscription (a PING answered after them).
pub async fn connect(node: &str, link: &NatsWiring) -> Result<Connected, LinkError> {
    let status = Arc::new(LinkStatus::new(
        super::LinkKind::Nats,
        link.url.to_string(),
        LinkState::Connecting,
    ));
    let addresses: Vec<async_nats::ServerAddr> = link
        .url
        .server_addresses()
        .iter()
        .map(|a| a.parse())
        .collect::<Result<_, _>>()
        .map_err(|e: std::io::Error| LinkError::Subject(e.to_string()))?;
    let severed = Arc::new(AtomicBool::new(false));
    let client = within(async {
        Ok::<_, LinkError>(
            options(&link.url, status.clone(), severed.clone(), node)
                .connect(addresses)
                .await?,
        )
    })
    .await?;
    let subscriptions = subscribe(&client, &link.subscribe, &link.queue).await?;
    status.set(LinkState::Up);
    Ok(Connected {
        client,
        subscriptions,
        status,
        severed,
    })
}

/// Subscribes `filters` (in `queue` if any) and waits until the server
/// has them (a PING answered after them). On an error the subscriptions
/// made are dropped, which unsubscribes them.
async fn subscribe(
    client: &Client,
    filters: &[String],
    queue: &Option<String>,
) -> Result<Vec<(Key, Subscriber)>, LinkError> {
    let mut subscriptions = Vec::with_capacity(filters.len());
    for filter in filters {
        let subject = filter.clone();
        let subscriber = within(async {
            Ok::<_, LinkError>(match queue {
                Some(queue) => client.queue_subscribe(subject, queue.clone()).await?,
                None => client.subscribe(subject).await?,
            })
        })
        .await?;
        subscriptions.push((key(filter, queue), subscriber));
    }
    within(async { Ok::<_, LinkError>(client.flush().await?) }).await?;
    Ok(subscriptions)
}

async fn within<T>(f: impl Future<Output = Result<T, LinkError>>) -> Result<T, LinkError> {
    tokio::time::timeout(START_TIMEOUT, f)
        .await
        .unwrap_or(Err(LinkError::TimedOut))
}

impl Connected {
    /// The publishing handle, the handle that rewires the link in place,
    /// and the two tasks (publisher, receiver) to spawn.
    pub fn run(
        self,
        publish: &str,
        counters: Arc<Counters>,
        inbox: Inbox,
        outbox: usize,
        cancel: CancellationToken,
    ) -> (
        QueuedOutbound,
        NatsControl,
        impl Future<Output = ()> + Send + 'static,
        impl Future<Output = ()> + Send + 'static,
    ) {
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        let (subject, subject_rx) = watch::channel(publish.to_owned());
        let (outbox_limit, outbox_limit_rx) = watch::channel(outbox);
        // One rewiring at a time (the node's wiring lock); one slot is enough.
        let (swaps, swaps_rx) = mpsc::channel(1);
        let publisher = Publisher {
            client: self.client.clone(),
            subject: subject_rx,
            counters,
            status: self.status.clone(),
            outbox: Outbox::new(outbox),
            outbox_limit: outbox_limit_rx,
        };
        let control = NatsControl {
            client: self.client.clone(),
            subject,
            outbox_limit,
            swaps,
            status: self.status.clone(),
            severed: self.severed.clone(),
            lost: Arc::new(AtomicU64::new(0)),
        };
        let receiver = Receiver {
            client: self.client,
            inbox,
            status: self.status,
            not_text: 0,
            severed: self.severed,
            lost: control.lost.clone(),
        };
        (
            QueuedOutbound::new(Origin::Nats, tx),
            control,
            publisher.run(rx, cancel.clone()),
            receiver.run(self.subscriptions, swaps_rx, cancel),
        )
    }
}

/// Subscriptions the receiver takes over and the ones it unsubscribes,
/// and the signal that it did.
struct Swap {
    add: Vec<(Key, Subscriber)>,
    remove: Vec<Key>,
    done: oneshot::Sender<()>,
}

/// Rewires a running NATS link on its connection (hot reload): the client
/// and its connection stay, so the subscriptions a change leaves alone
/// never stop delivering, and the publisher (its outbox, its state) runs
/// on throughout.
pub struct NatsControl {
    client: Client,
    subject: watch::Sender<String>,
    outbox_limit: watch::Sender<usize>,
    swaps: mpsc::Sender<Swap>,
    status: Arc<LinkStatus>,
    severed: Arc<AtomicBool>,
    /// Messages dropped while severed, in this episode.
    lost: Arc<AtomicU64>,
}

impl NatsControl {
    /// Holds the link down (`true`) as if its servers were unreachable:
    /// it reads down, so the publisher holds messages in the outbox, and
    /// what the subscriptions deliver is dropped (and counted); `false`
    /// lets it back (up again if the connection is). Whether it moved.
    pub fn sever(&self, on: bool) -> bool {
        if self.severed.swap(on, Relaxed) == on {
            return false;
        }
        if on {
            tracing::warn!(broker = %self.status.address, "nats link cut (fault switch): messages wait in the outbox");
            self.status.set(LinkState::Down);
        } else {
            let lost = self.lost.swap(0, Relaxed);
            tracing::info!(broker = %self.status.address, lost, "nats link restored (fault switch)");
            if self.client.connection_state() == async_nats::connection::State::Connected {
                self.status.set(LinkState::Up);
            }
        }
        true
    }

    /// Resizes the outbox (`limits.outbox`); when it shrinks below what it
    /// holds, the oldest messages are dropped and counted.
    pub fn set_outbox(&self, limit: usize) {
        self.outbox_limit
            .send_if_modified(|l| std::mem::replace(l, limit) != limit);
    }

    /// Moves the link from `old` to `new` (same servers) as `change` (the
    /// node's delta, computed by `diff`) says. New subscriptions are made
    /// and confirmed by the server first, then the removed ones dropped:
    /// for that moment a message matching both an old and a new filter may
    /// arrive twice, never zero times. When subscribing fails, nothing
    /// changed (the new subscriptions are dropped again).
    pub async fn rewire(
        &self,
        old: &NatsWiring,
        new: &NatsWiring,
        change: &NatsRewire,
    ) -> Result<(), LinkError> {
        // A subscription's queue group is fixed: another group is every
        // filter subscribed anew.
        let (add, remove): (&[String], &[String]) = if change.queue {
            (&new.subscribe, &old.subscribe)
        } else {
            (&change.subscribe.add, &change.subscribe.remove)
        };
        let add = subscribe(&self.client, add, &new.queue).await?;
        self.subject.send_replace(new.publish.clone());
        let remove = remove.iter().map(|f| key(f, &old.queue)).collect();
        let (done, took) = oneshot::channel();
        let swap = Swap { add, remove, done };
        if self.swaps.send(swap).await.is_ok() {
            let _ = took.await;
        }
        // The unsubscriptions went out before this PING: when it is
        // answered the server has dropped them. A failure here only delays
        // that; the change is made.
        if within(async { Ok::<_, LinkError>(self.client.flush().await?) })
            .await
            .is_err()
        {
            tracing::warn!("nats unsubscriptions not confirmed yet");
        }
        Ok(())
    }
}

/// Hands every message of every subscription to the node's inbox, in the
/// order each subscription delivers them, and takes rewirings in between.
/// Holds the client: the connection lives as long as this task.
struct Receiver {
    client: Client,
    inbox: Inbox,
    status: Arc<LinkStatus>,
    not_text: u64,
    severed: Arc<AtomicBool>,
    lost: Arc<AtomicU64>,
}

impl Receiver {
    async fn run(
        mut self,
        subscriptions: Vec<(Key, Subscriber)>,
        mut swaps: mpsc::Receiver<Swap>,
        cancel: CancellationToken,
    ) {
        let mut all: StreamMap<Key, Subscriber> = subscriptions.into_iter().collect();
        loop {
            let (sub, message) = tokio::select! {
                _ = cancel.cancelled() => break,
                Some(swap) = swaps.recv() => {
                    if !self.swap(&mut all, swap, &cancel).await {
                        break;
                    }
                    continue;
                }
                // An empty map is over at once: wait for a rewiring instead.
                Some(next) = all.next(), if !all.is_empty() => next,
            };
            if !self.forward(&sub.filter, message, &cancel).await {
                break;
            }
        }
        drop(self.client);
    }

    /// Takes over the new subscriptions and unsubscribes the removed ones,
    /// after forwarding what they already received. `false`: the node is
    /// going away.
    async fn swap(
        &mut self,
        all: &mut StreamMap<Key, Subscriber>,
        swap: Swap,
        cancel: &CancellationToken,
    ) -> bool {
        for (key, subscriber) in swap.add {
            all.insert(key, subscriber);
        }
        for key in swap.remove {
            let Some(mut subscriber) = all.remove(&key) else {
                continue;
            };
            if let Err(e) = subscriber.unsubscribe().await {
                tracing::warn!(filter = key.filter, error = %e, "nats unsubscribe failed");
            }
            while let Some(Some(message)) = subscriber.next().now_or_never() {
                if !self.forward(&key.filter, message, cancel).await {
                    return false;
                }
            }
        }
        let _ = swap.done.send(());
        true
    }

    /// `false`: the node is going away.
    async fn forward(
        &mut self,
        filter: &str,
        message: async_nats::Message,
        cancel: &CancellationToken,
    ) -> bool {
        if self.severed.load(Relaxed) {
            self.lost.fetch_add(1, Relaxed);
            return true;
        }
        self.status.add_received_via("", filter.as_bytes());
        let Ok(text) = Text::try_from(message.payload) else {
            self.not_text += 1;
            if self.not_text.is_power_of_two() {
                tracing::warn!(dropped = self.not_text, "nats payload not UTF-8, dropped");
            }
            return true;
        };
        let received = Received {
            origin: Origin::Nats,
            text,
            ack: None,
        };
        // A full inbox pushes back onto this subscription; the client then
        // holds up to SUBSCRIPTION_CAPACITY and reports a slow consumer.
        tokio::select! {
            _ = cancel.cancelled() => false,
            sent = self.inbox.send(received) => sent.is_ok(),
        }
    }
}

struct Publisher {
    client: Client,
    subject: watch::Receiver<String>,
    counters: Arc<Counters>,
    status: Arc<LinkStatus>,
    outbox: Outbox,
    outbox_limit: watch::Receiver<usize>,
}
impl Publisher {
    /// Publishes while the link is up; while it is down (or a publication
    /// failed) messages wait in the outbox and go out, in order, when the
    /// client is connected again (to this server or another one).
    async fn run(mut self, mut rx: mpsc::Receiver<Text>, cancel: CancellationToken) {
        let mut state = self.status.watch();
        let mut retry = backoff(Duration::from_millis(50), RETRY_CAP);
        loop {
            let up = *state.borrow_and_update() == LinkState::Up;
            if up && !self.outbox.is_empty() {
                let held = self.outbox.peek(256);
                let sent = self.publish(&held).await;
                self.outbox.sent(sent, &self.status.outbox);
                if sent == held.len() {
                    retry = backoff(Duration::from_millis(50), RETRY_CAP);
                    if self.outbox.is_empty() {
                        tracing::info!(
                            flushed = self.status.outbox.flushed(),
                            "nats outbox flushed"
                        );
                    }
                } else {
                    let delay = retry.next().unwrap_or(RETRY_CAP);
                    if sleep_or_cancelled(&cancel, delay).await {
                        return;
                    }
                }
                continue;
            }
            let text = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = state.changed() => continue,
                Ok(()) = self.outbox_limit.changed() => {
                    self.resize_outbox();
                    continue;
                }
                text = rx.recv() => match text {
                    Some(text) => text,
                    None => return,
                },
            };
            if !up || self.publish(std::slice::from_ref(&text)).await == 0 {
                self.hold(text);
            }
        }
    }

    fn resize_outbox(&mut self) {
        let limit = *self.outbox_limit.borrow_and_update();
        let dropped = self.outbox.set_limit(limit, &self.status.outbox);
        tracing::info!(limit, dropped, "nats outbox resized");
    }

    fn hold(&mut self, text: Text) {
        let stats = &self.status.outbox;
        if self.outbox.hold(text, stats) > 0 && stats.dropped().is_power_of_two() {
            tracing::warn!(
                dropped = stats.dropped(),
                "nats outbox full, oldest messages dropped"
            );
        }
    }

    /// Hands a batch to the client in order; returns how many it took (the
    /// caller keeps the rest).
    async fn publish(&mut self, batch: &[Text]) -> usize {
        let mut sent = 0;
        let subject = async_nats::Subject::from(self.subject.borrow().clone());
        for text in batch {
            let payload = bytes::Bytes::copy_from_slice(text.as_bytes());
            let publish = self.client.publish(subject.clone(), payload);
            match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
                Ok(Ok(())) => sent += 1,
                _ => break,
            }
        }
        self.counters.add_out(sent as u64);
        self.status.add_sent(sent as u64);
        sent
    }
}
