//! The NATS link: one client connection (to one server of the broker's
//! list, failing over to the others), echo off so the server never sends
//! the node its own publications (rule 1), one subscription per filter
//! (in the queue group when there is one), and a publishing task with the
//! bounded outbox of `transport::outbox` for the time the link is down.
//! Never logs the credentials: only the redacted URL.

use super::outbox::Outbox;
use super::queue::QueuedOutbound;
use super::retry::{backoff, sleep_or_cancelled};
use super::{Counters, Inbox, LinkState, LinkStatus, Origin, Received, Text};
use crate::model::{NatsAuth, NatsUrl, NatsWiring};
use async_nats::{Client, ConnectOptions, Event, Subscriber};
use futures_util::StreamExt;
use futures_util::stream::SelectAll;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
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
    subscriptions: Vec<(String, Subscriber)>,
    pub status: Arc<LinkStatus>,
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

fn options(url: &NatsUrl, status: Arc<LinkStatus>, name: &str) -> ConnectOptions {
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
            let (status, span) = (status.clone(), span.clone());
            async move { on_event(&status, &span, event) }
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
fn on_event(status: &LinkStatus, span: &tracing::Span, event: Event) {
    let _entered = span.enter();
    match event {
        Event::Connected => {
            status.set(LinkState::Up);
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
    let client = within(async {
        Ok::<_, LinkError>(
            options(&link.url, status.clone(), node)
                .connect(addresses)
                .await?,
        )
    })
    .await?;
    let mut subscriptions = Vec::with_capacity(link.subscribe.len());
    for filter in &link.subscribe {
        let subject = filter.clone();
        let subscriber = within(async {
            Ok::<_, LinkError>(match &link.queue {
                Some(queue) => client.queue_subscribe(subject, queue.clone()).await?,
                None => client.subscribe(subject).await?,
            })
        })
        .await?;
        subscriptions.push((filter.clone(), subscriber));
    }
    within(async { Ok::<_, LinkError>(client.flush().await?) }).await?;
    status.set(LinkState::Up);
    Ok(Connected {
        client,
        subscriptions,
        status,
    })
}

async fn within<T>(f: impl Future<Output = Result<T, LinkError>>) -> Result<T, LinkError> {
    tokio::time::timeout(START_TIMEOUT, f)
        .await
        .unwrap_or(Err(LinkError::TimedOut))
}

impl Connected {
    /// The publishing handle and the two tasks (publisher, receiver) to spawn.
    pub fn run(
        self,
        publish: &str,
        counters: Arc<Counters>,
        inbox: Inbox,
        outbox: usize,
        cancel: CancellationToken,
    ) -> (
        QueuedOutbound,
        impl Future<Output = ()> + Send + 'static,
        impl Future<Output = ()> + Send + 'static,
    ) {
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        let publisher = Publisher {
            client: self.client.clone(),
            subject: publish.to_owned(),
            counters,
            status: self.status.clone(),
            outbox: Outbox::new(outbox),
        };
        let receiver = receive(
            self.client,
            self.subscriptions,
            inbox,
            self.status,
            cancel.clone(),
        );
        (
            QueuedOutbound::new(Origin::Nats, tx),
            publisher.run(rx, cancel),
            receiver,
        )
    }
}

/// Hands every message of every subscription to the node's inbox, in the
/// order each subscription delivers them. Holds the client: the connection
/// lives as long as this task.
async fn receive(
    client: Client,
    subscriptions: Vec<(String, Subscriber)>,
    inbox: Inbox,
    status: Arc<LinkStatus>,
    cancel: CancellationToken,
) {
    let mut all: SelectAll<_> = subscriptions
        .into_iter()
        .map(|(filter, subscriber)| subscriber.map(move |m| (filter.clone(), m)))
        .collect();
    let mut not_text = 0u64;
    loop {
        let (filter, message) = tokio::select! {
            _ = cancel.cancelled() => break,
            next = all.next() => match next {
                Some(next) => next,
                None => break,
            },
        };
        status.add_received_via("", filter.as_bytes());
        let Ok(text) = Text::try_from(message.payload) else {
            not_text += 1;
            if not_text.is_power_of_two() {
                tracing::warn!(dropped = not_text, "nats payload not UTF-8, dropped");
            }
            continue;
        };
        let received = Received {
            origin: Origin::Nats,
            text,
        };
        // A full inbox pushes back onto this subscription; the client then
        // holds up to SUBSCRIPTION_CAPACITY and reports a slow consumer.
        tokio::select! {
            _ = cancel.cancelled() => break,
            sent = inbox.send(received) => if sent.is_err() { break },
        }
    }
    drop(client);
}

struct Publisher {
    client: Client,
    subject: String,
    counters: Arc<Counters>,
    status: Arc<LinkStatus>,
    outbox: Outbox,
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
        for text in batch {
            let payload = bytes::Bytes::copy_from_slice(text.as_bytes());
            let publish = self.client.publish(self.subject.clone(), payload);
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
