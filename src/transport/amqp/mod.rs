//! The AMQP (RabbitMQ) link: one connection and channel per node that
//! declares the exchange and the node's queue, binds it, publishes the
//! node's messages and consumes the queue. One task owns it all and
//! reconnects with backoff (re-declaring, re-binding, re-consuming); while
//! the link is down, messages wait in the outbox as for Redis.
//!
//! A durable node (a named queue) consumes only while at least one client
//! is connected: until then RabbitMQ keeps its messages. A delivery is
//! acknowledged only after the router handed it to the hub ([`Ack`]); one
//! that arrives when the last client has just left is requeued. The node's
//! own messages come back through its queue and are recognised by their
//! `app_id` (`topo:<node>`), so the body stays the chat text unchanged.
//! Publications are confirmed by RabbitMQ ([`confirms`]); what is not
//! when a connection dies is published again, and receivers drop such
//! repeats ([`dedup`]). A durable queue's `max_length` drops are
//! dead-lettered to a companion queue and counted.
//! The fault switch "broker down" ([`AmqpControl::sever`]) closes the
//! session and keeps the task from reconnecting until it is let go: the
//! link then behaves as in a real outage (down, outbox, flush on return).
//! Never logs the connection string: only the redacted URL.

mod confirms;
mod dedup;

use super::outbox::Outbox;
use super::queue::QueuedOutbound;
use super::retry::{backoff, sleep_or_cancelled};
use super::{Ack, Counters, Inbox, LinkState, LinkStatus, Origin, Received, Text};
use crate::model::{AmqpWiring, ExchangeKind};
use confirms::Unconfirmed;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// Messages waiting for the link's task. When full (RabbitMQ slow), new
/// messages are dropped and counted: local delivery never waits for it.
const PUBLISH_QUEUE: usize = 4096;
/// How long connecting and declaring may take, at start and per retry.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnection backoff: 50 ms doubling to this, plus jitter, so a broker
/// that came back is found within about 0.8 s.
const RETRY_CAP: Duration = Duration::from_millis(400);
/// How often a live link re-reads its queue's depth for `/healthz`.
const DEPTH_EVERY: Duration = Duration::from_secs(1);

/// Why an AMQP link could not be made. Displays without the password.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    CertificateAuthority(#[from] crate::config::read::ReadError),
    #[error("{file}: {why}")]
    BadCertificateAuthority { file: String, why: String },
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error("timed out")]
    TimedOut,
    /// RabbitMQ closed the channel with PRECONDITION_FAILED (406) on the
    /// queue's declaration: it exists with other arguments (declared by a
    /// topo before dead-lettering, or with another max_length).
    #[error(
        "queue `{queue}` already exists with other arguments ({reason}); \
         delete it (`rabbitmqctl delete_queue {queue}`, which drops what it holds) \
         or give the node another queue name"
    )]
    QueueArguments { queue: String, reason: String },
}

/// The direct exchange (durable, shared by every node of a server) that a
/// durable queue dead-letters to, with its own name as the routing key.
pub const DROPPED_EXCHANGE: &str = "topo.dropped";
/// At most this many dead-lettered messages wait for their count in a
/// companion queue (it only fills while no topo serves the node; beyond,
/// RabbitMQ drops them uncounted).
const DROPPED_BACKLOG: i64 = 10_000;

/// A connection with the exchange, queue and bindings declared.
pub struct Session {
    connection: Connection,
    channel: Channel,
    /// The queue's name (RabbitMQ names an exclusive one).
    queue: String,
    /// Messages ready in the queue when it was declared.
    depth: u32,
    /// A durable queue's companion: what `max_length` dropped from it.
    dropped_queue: Option<String>,
    /// The connection's events; an error means it is gone.
    events: std::pin::Pin<Box<dyn futures_util::Stream<Item = lapin::Event> + Send + Sync>>,
}

fn properties() -> ConnectionProperties {
    ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current())
}

/// Re-reads the number of messages ready in the session's queue (a passive
/// declare): a durable queue fills while its node has no client, and
/// `/healthz` should say so then, not only as of the last connection.
async fn refresh_depth(session: &Session, status: &LinkStatus) -> Result<(), LinkError> {
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let queue = session
        .channel
        .queue_declare(&session.queue, options, FieldTable::default())
        .await?;
    let depth = u64::from(queue.message_count());
    status.queue_depth.store(depth, Ordering::Relaxed);
    Ok(())
}

/// Checks a `ca:` bundle as the TLS stack will read it. lapin's stack skips
/// what it cannot parse without a word, which would turn a broken file
/// into an unknown-issuer failure naming the server instead of the file.
/// (The file may have changed since validation, which only looks for PEM.)
fn check_authority(file: &std::path::Path, pem: &[u8]) -> Result<(), LinkError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let bad = |why: String| LinkError::BadCertificateAuthority {
        file: file.display().to_string(),
        why,
    };
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate bundle ({e})")))?;
    let mut roots = rustls::RootCertStore::empty();
    let (usable, unusable) = roots.add_parsable_certificates(certificates);
    if usable == 0 {
        return Err(bad(format!(
            "no usable certificate authority in it ({unusable} unreadable)"
        )));
    }
    Ok(())
}

/// Connects, declares and binds; the error text never holds the password.
pub async fn connect(link: &AmqpWiring) -> Result<Session, LinkError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, open(link)).await {
        Ok(result) => result,
        Err(_) => Err(LinkError::TimedOut),
    }
}

/// Connects to `url`: over TLS for `amqps://`, trusting its `ca:` if any.
async fn dial(url: &crate::model::AmqpUrl) -> Result<Connection, LinkError> {
    let mut tls = lapin::tcp::OwnedTLSConfig::default();
    if url.tls {
        // rustls needs one process-wide crypto provider (the first call
        // wins); without it lapin's I/O thread panics and the connection
        // only times out.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    if let (true, Some(ca)) = (url.tls, &url.ca) {
        let pem = crate::config::read::read_certificate(ca)?;
        check_authority(ca, &pem)?;
        tls.cert_chain = Some(String::from_utf8_lossy(&pem).into_owned());
    }
    let secret = url.connection_string();
    Ok(Connection::connect_with_config(&secret, properties(), tls).await?)
}

async fn open(link: &AmqpWiring) -> Result<Session, LinkError> {
    let connection = dial(&link.url).await?;
    let events = Box::pin(connection.events_listener());
    let channel = connection.create_channel().await?;
    let kind = match link.kind {
        ExchangeKind::Fanout => lapin::ExchangeKind::Fanout,
        ExchangeKind::Topic => lapin::ExchangeKind::Topic,
        ExchangeKind::Direct => lapin::ExchangeKind::Direct,
    };
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(&link.exchange, kind, durable, FieldTable::default())
        .await?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(i64::from(link.max_length)),
    );
    let dropped_queue = match &link.queue {
        Some(queue) => Some(declare_dropped(&channel, queue, &mut arguments).await?),
        None => None,
    };
    let (name, options) = match &link.queue {
        Some(name) => (
            name.as_str(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
        ),
        None => (
            "",
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
        ),
    };
    let queue = channel
        .queue_declare(name, options, arguments)
        .await
        .map_err(|error| match precondition_failed(&error) {
            Some(reason) => LinkError::QueueArguments {
                queue: name.to_owned(),
                reason,
            },
            None => LinkError::Amqp(error),
        })?;
    let queue_name = queue.name().to_string();
    for key in &link.bind {
        channel
            .queue_bind(
                &queue_name,
                &link.exchange,
                key,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    channel
        .basic_qos(link.prefetch, BasicQosOptions::default())
        .await?;
    // A message counts as sent once RabbitMQ confirms it: one handed over
    // just before the connection dies is then published again, not lost.
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(Session {
        connection,
        channel,
        queue: queue_name,
        depth: queue.message_count(),
        dropped_queue,
        events,
    })
}

/// Declares what counts the drops of durable `queue`: the shared
/// dead-letter exchange and the queue's companion bound to it, and adds to
/// `arguments` (the queue's) where to dead-letter. Returns the companion.
async fn declare_dropped(
    channel: &Channel,
    queue: &str,
    arguments: &mut FieldTable,
) -> Result<String, lapin::Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let direct = lapin::ExchangeKind::Direct;
    channel
        .exchange_declare(DROPPED_EXCHANGE, direct, durable, FieldTable::default())
        .await?;
    let companion = crate::model::amqp_dropped_queue(queue);
    let mut bounded = FieldTable::default();
    bounded.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(DROPPED_BACKLOG),
    );
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel.queue_declare(&companion, options, bounded).await?;
    let key = queue;
    let options = QueueBindOptions::default();
    channel
        .queue_bind(
            &companion,
            DROPPED_EXCHANGE,
            key,
            options,
            FieldTable::default(),
        )
        .await?;
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(DROPPED_EXCHANGE.into()),
    );
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(queue.into()),
    );
    Ok(companion)
}

/// RabbitMQ's text when `error` is its PRECONDITION_FAILED (406).
fn precondition_failed(error: &lapin::Error) -> Option<String> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(e) if e.get_id() == 406 => {
            Some(e.get_message().to_string())
        }
        _ => None,
    }
}

/// Closes a session, bounded: a broker that does not answer is left to
/// the dropped connection.
async fn close(session: &Session, why: &str) {
    let closing = session.connection.close(200, why);
    let _ = tokio::time::timeout(CONNECT_TIMEOUT, closing).await;
}

/// What the link's task needs besides its session.
pub struct LinkTask {
    pub node: String,
    pub link: AmqpWiring,
    pub counters: Arc<Counters>,
    pub inbox: Inbox,
    pub status: Arc<LinkStatus>,
    /// Connected clients of the node (a durable queue is consumed only while > 0).
    pub presence: watch::Receiver<usize>,
    pub outbox: usize,
    /// Largest body delivered to the node (its `limits.max_message_bytes`:
    /// no more than a client may send it); larger ones are refused.
    /// lapin has no cap of its own: it gathers a whole body, frame by frame
    /// (each at most frame_max), before handing it over, so the check can
    /// only come after the read; RabbitMQ bounds it (`max_message_size`).
    pub max_body: usize,
}

/// A rewiring for the link's task, and where it answers.
type Rewire = (AmqpWiring, oneshot::Sender<Result<(), LinkError>>);

/// The fault switch for the link's task (on: hold down), and where it
/// answers whether the switch moved.
type Sever = (bool, oneshot::Sender<bool>);

/// Rewires a running AMQP link in place (hot reload): bindings, routing
/// key, prefetch; same server, exchange and queue (else it is replaced).
/// Also holds it down for the "broker down" fault switch.
pub struct AmqpControl {
    tx: mpsc::Sender<Rewire>,
    severs: mpsc::Sender<Sever>,
}

impl AmqpControl {
    /// Binds the new keys, unbinds the old ones, takes the new routing key
    /// and prefetch. While the link is down it only takes the new wiring,
    /// which the next connection declares.
    pub async fn rewire(&self, new: &AmqpWiring) -> Result<(), LinkError> {
        let (reply, answer) = oneshot::channel();
        if self.tx.send((new.clone(), reply)).await.is_err() {
            return Ok(()); // the link is stopping; nothing left to rewire
        }
        answer.await.unwrap_or(Ok(()))
    }

    /// Holds the link down (`true`) as if the broker were unreachable:
    /// the session is closed (an exclusive queue goes with it, a durable
    /// one keeps what arrives), the link reads `down` and what the node
    /// sends waits in the outbox. `false` lets it reconnect, which flushes
    /// the outbox. Answers once the task took it (with `true` the session
    /// is closed by then, so `/healthz` already reads down), and whether
    /// the switch moved.
    pub async fn sever(&self, on: bool) -> bool {
        let (reply, answer) = oneshot::channel();
        if self.severs.send((on, reply)).await.is_err() {
            return false; // the link is stopping
        }
        answer.await.unwrap_or(false)
    }
}

impl LinkTask {
    /// The publishing handle, the rewiring handle, and the task to spawn,
    /// which runs `session` until `cancel`, reconnecting as needed.
    pub fn run(
        self,
        session: Session,
        cancel: CancellationToken,
    ) -> (
        QueuedOutbound,
        AmqpControl,
        impl Future<Output = ()> + Send + 'static,
    ) {
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        // One rewiring or switch at a time (the node's wiring lock).
        let (control, rewires) = mpsc::channel(1);
        let (sever, severs) = mpsc::channel(1);
        let task = async move {
            let mut runner = Runner::new(self, rx, rewires, severs);
            runner.run(Some(session), cancel).await;
        };
        let control = AmqpControl {
            tx: control,
            severs: sever,
        };
        (QueuedOutbound::new(Origin::Amqp, tx), control, task)
    }
}

/// A message on its way out, with its place in this link's sequence (its
/// `message_id`, kept when it is published again).
#[derive(Clone, Debug)]
pub struct Pending {
    seq: u64,
    text: Text,
}

struct Runner {
    task: LinkTask,
    publish: mpsc::Receiver<Text>,
    rewires: mpsc::Receiver<Rewire>,
    severs: mpsc::Receiver<Sever>,
    /// The fault switch is on: no session until it is let go.
    severed: bool,
    outbox: Outbox<Pending>,
    /// This link's boot nonce and its next sequence number.
    nonce: u64,
    next_seq: u64,
    /// What each sender's last delivery handed on was (repeats are dropped).
    seen: dedup::Seen,
    acks_tx: mpsc::UnboundedSender<u64>,
    acks: mpsc::UnboundedReceiver<u64>,
    app_id: ShortString,
    consumer_tag: String,
}

/// Why a session ended.
enum End {
    Cancelled,
    Lost,
    /// Closed for the fault switch.
    Severed,
}

impl Runner {
    fn new(
        task: LinkTask,
        publish: mpsc::Receiver<Text>,
        rewires: mpsc::Receiver<Rewire>,
        severs: mpsc::Receiver<Sever>,
    ) -> Runner {
        let (acks_tx, acks) = mpsc::unbounded_channel();
        Runner {
            app_id: format!("topo:{}", task.node).into(),
            consumer_tag: format!("topo-{}", task.node),
            outbox: Outbox::new(task.outbox),
            nonce: dedup::boot_nonce(),
            next_seq: 0,
            seen: dedup::Seen::default(),
            task,
            publish,
            rewires,
            severs,
            severed: false,
            acks_tx,
            acks,
        }
    }

    async fn run(&mut self, mut session: Option<Session>, cancel: CancellationToken) {
        let address = self.task.status.address.clone();
        loop {
            let current = match session.take() {
                Some(s) => s,
                None => match self.reconnect(&cancel).await {
                    Some(s) => s,
                    None => return,
                },
            };
            self.task.status.set(LinkState::Up);
            match self.serve(current, &cancel).await {
                End::Cancelled => return,
                End::Lost => {
                    tracing::warn!(broker = %address, "amqp link lost: messages wait in the outbox");
                    self.task.status.set(LinkState::Down);
                }
                // Already down: `reconnect` waits for the switch to go off.
                End::Severed => {}
            }
        }
    }

    /// Takes the fault switch; answers whether it moved. Turning it on
    /// outside a session needs nothing more: there is none to close, and
    /// `reconnect` checks the flag before (and after) each attempt.
    fn switch(&mut self, on: bool, reply: oneshot::Sender<bool>) {
        let moved = self.severed != on;
        self.severed = on;
        if moved {
            let broker = &self.task.status.address;
            if on {
                self.task.status.set(LinkState::Down);
                tracing::warn!(broker = %broker, "amqp link held down (fault switch): messages wait in the outbox");
            } else {
                tracing::info!(broker = %broker, "amqp link let go (fault switch): reconnecting");
            }
        }
        let _ = reply.send(moved);
    }

    /// While the switch is on: publications go to the outbox, rewirings are
    /// taken for the next session. `false` when the link is stopping.
    async fn held(&mut self, cancel: &CancellationToken) -> bool {
        while self.severed {
            tokio::select! {
                _ = cancel.cancelled() => return false,
                text = self.publish.recv() => match text {
                    Some(text) => self.hold(text),
                    None => return false,
                },
                Some((next, reply)) = self.rewires.recv() => {
                    self.task.link = next;
                    let _ = reply.send(Ok(()));
                }
                Some((on, reply)) = self.severs.recv() => self.switch(on, reply),
            }
        }
        true
    }

    /// Tries again with backoff until connected or cancelled; publications
    /// meanwhile go to the outbox. Never while the fault switch is on.
    async fn reconnect(&mut self, cancel: &CancellationToken) -> Option<Session> {
        let mut delays = backoff(Duration::from_millis(50), RETRY_CAP);
        loop {
            if !self.held(cancel).await {
                return None;
            }
            let link = self.task.link.clone();
            let attempt = async move { connect(&link).await };
            tokio::pin!(attempt);
            // An attempt is let finish even when the switch goes on
            // meanwhile: its session is then closed, not left half-open.
            let result = loop {
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    text = self.publish.recv() => match text {
                        Some(text) => self.hold(text),
                        None => return None,
                    },
                    Some((next, reply)) = self.rewires.recv() => {
                        // Declared by the next attempt after this one.
                        self.task.link = next;
                        let _ = reply.send(Ok(()));
                    }
                    Some((on, reply)) = self.severs.recv() => self.switch(on, reply),
                    result = &mut attempt => break result,
                }
            };
            match result {
                Ok(session) if self.severed => {
                    close(&session, "held down by a fault switch").await;
                    continue;
                }
                Ok(session) => {
                    tracing::info!(broker = %self.task.status.address, "amqp link back");
                    return Some(session);
                }
                Err(error) => tracing::debug!(%error, "amqp reconnection failed"),
            }
            let delay = delays.next().unwrap_or(RETRY_CAP);
            if sleep_or_cancelled(cancel, delay).await {
                return None;
            }
        }
    }

    /// Numbers `text`, the next of this link's sequence.
    fn number(&mut self, text: Text) -> Pending {
        let seq = self.next_seq;
        self.next_seq += 1;
        Pending { seq, text }
    }

    fn hold(&mut self, text: Text) {
        let pending = self.number(text);
        let stats = &self.task.status.outbox;
        self.outbox.hold(pending, stats);
    }

    /// Runs one session: publishes, consumes (while allowed), acknowledges.
    /// What RabbitMQ has not confirmed when it ends goes back to the front
    /// of the outbox, to be published first by the next session.
    async fn serve(&mut self, mut session: Session, cancel: &CancellationToken) -> End {
        let status = self.task.status.clone();
        status
            .queue_depth
            .store(u64::from(session.depth), Ordering::Relaxed);
        // A new channel: tags of the old one mean nothing now.
        while self.acks.try_recv().is_ok() {}
        let mut window = Unconfirmed::new(self.task.outbox);
        let end = self.session_loop(&mut session, &mut window, cancel).await;
        let unconfirmed = window.len();
        self.outbox.restore_front(window.drain(), &status.outbox);
        status.unconfirmed.store(0, Ordering::Relaxed);
        match end {
            End::Cancelled => close(&session, "node stopped").await,
            End::Lost if unconfirmed > 0 => {
                tracing::info!(unconfirmed, "amqp: unconfirmed messages back in the outbox");
            }
            End::Lost | End::Severed => {}
        }
        end
    }

    /// Waits (bounded) for the confirmations still due; what RabbitMQ
    /// refused, or did not confirm in time, goes back to the outbox's front.
    async fn settle(&mut self, window: &mut Unconfirmed) {
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        let mut back = Vec::new();
        while !window.is_empty() {
            let Ok((pending, confirmation)) =
                tokio::time::timeout_at(deadline, window.next()).await
            else {
                break;
            };
            match confirmation {
                // A new number, as for a nack in a session (see there).
                Ok(Confirmation::Nack(_)) => back.push(self.number(pending.text)),
                Err(_) => back.push(pending),
                Ok(_) => {
                    self.task.counters.add_out(1);
                    self.task.status.add_sent(1);
                }
            }
        }
        let back = back.into_iter().chain(window.drain());
        self.outbox.restore_front(back, &self.task.status.outbox);
    }

    async fn session_loop(
        &mut self,
        session: &mut Session,
        window: &mut Unconfirmed,
        cancel: &CancellationToken,
    ) -> End {
        let status = self.task.status.clone();
        let mut consumer: Option<Consumer> = None;
        // Consumed whenever connected, clients or not: counting needs no client.
        let mut dropped = match self.consume_dropped(session).await {
            Ok(dropped) => dropped,
            Err(_) => return End::Lost,
        };
        let mut presence = self.task.presence.clone();
        let mut depth_tick = tokio::time::interval(DEPTH_EVERY);
        depth_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wanted = self.task.link.queue.is_none() || *presence.borrow_and_update() > 0;
            if wanted && consumer.is_none() {
                match self.consume(session).await {
                    Ok(c) => consumer = Some(c),
                    Err(_) => return End::Lost,
                }
            } else if !wanted && consumer.is_some() {
                consumer = None;
                let options = BasicCancelOptions::default();
                if session
                    .channel
                    .basic_cancel(&self.consumer_tag, options)
                    .await
                    .is_err()
                {
                    return End::Lost;
                }
            }
            // What waited (or came back unconfirmed) goes out before anything new.
            while window.has_room() {
                let Some(pending) = self.outbox.take_front(&status.outbox) else {
                    break;
                };
                match self.send(session, &pending).await {
                    Ok(confirm) => window.push(pending, confirm),
                    Err(_) => {
                        self.outbox
                            .restore_front(std::iter::once(pending), &status.outbox);
                        return End::Lost;
                    }
                }
            }
            status
                .unconfirmed
                .store(window.len() as u64, Ordering::Relaxed);
            // A full window stops taking new messages: they wait in the
            // publish queue, whose overflow is dropped and counted.
            let take_new = window.has_room() && self.outbox.is_empty();
            let next = async {
                match consumer.as_mut() {
                    Some(c) => c.next().await,
                    None => std::future::pending().await,
                }
            };
            let next_dropped = async {
                match dropped.as_mut() {
                    Some(c) => c.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return End::Cancelled,
                event = session.events.next() => match event {
                    Some(lapin::Event::Error(_)) | None => return End::Lost,
                    Some(_) => continue,
                },
                _ = presence.changed() => continue,
                _ = depth_tick.tick() => {
                    if refresh_depth(session, &status).await.is_err() {
                        return End::Lost;
                    }
                }
                Some((next, reply)) = self.rewires.recv() => {
                    let result = self.rebind(session, next).await;
                    let failed = result.is_err();
                    let _ = reply.send(result);
                    if failed {
                        return End::Lost;
                    }
                }
                Some((on, reply)) = self.severs.recv() => {
                    if on && !self.severed {
                        // What is in flight is confirmed first, so that the
                        // switch neither loses nor repeats a message; then
                        // closed before answering: the link reads down.
                        self.settle(window).await;
                        close(session, "held down by a fault switch").await;
                        self.switch(on, reply);
                        return End::Severed;
                    }
                    self.switch(on, reply);
                }
                Some(tag) = self.acks.recv() => {
                    if session.channel.basic_ack(tag, BasicAckOptions::default()).await.is_err() {
                        return End::Lost;
                    }
                }
                (pending, confirmation) = window.next(), if !window.is_empty() => match confirmation {
                    Ok(Confirmation::Nack(_)) => {
                        // Not taken: out again, ahead of anything new (after
                        // those already in flight, so order is not kept
                        // here), with a new number: receivers may have
                        // handed on later ones, and would take it for a repeat.
                        tracing::debug!("amqp: a publication was refused (nack), publishing it again");
                        let again = self.number(pending.text);
                        self.outbox.restore_front(std::iter::once(again), &status.outbox);
                    }
                    Ok(_) => {
                        self.task.counters.add_out(1);
                        status.add_sent(1);
                    }
                    Err(_) => {
                        // The oldest unconfirmed: back first, then the rest.
                        let back = std::iter::once(pending).chain(window.drain());
                        self.outbox.restore_front(back, &status.outbox);
                        return End::Lost;
                    }
                },
                text = self.publish.recv(), if take_new => match text {
                    Some(text) => {
                        let pending = self.number(text);
                        match self.send(session, &pending).await {
                            Ok(confirm) => window.push(pending, confirm),
                            Err(_) => {
                                self.outbox.hold(pending, &status.outbox);
                                return End::Lost;
                            }
                        }
                    }
                    None => return End::Cancelled,
                },
                delivery = next_dropped => match delivery {
                    // Acknowledged on delivery (no_ack): a count, nothing to keep.
                    Some(Ok(_)) => {
                        status.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Err(_)) | None => return End::Lost,
                },
                delivery = next => match delivery {
                    Some(Ok(delivery)) => {
                        if !self.received(session, delivery, cancel).await {
                            return End::Lost;
                        }
                    }
                    Some(Err(_)) | None => return End::Lost,
                },
            }
        }
    }

    /// Moves the live queue's bindings, routing key and prefetch to `next`.
    async fn rebind(&mut self, session: &Session, next: AmqpWiring) -> Result<(), LinkError> {
        let old = &self.task.link;
        for key in next.bind.iter().filter(|k| !old.bind.contains(k)) {
            let options = QueueBindOptions::default();
            let (queue, exchange) = (&session.queue, &next.exchange);
            session
                .channel
                .queue_bind(queue, exchange, key, options, FieldTable::default())
                .await?;
        }
        for key in old.bind.iter().filter(|k| !next.bind.contains(k)) {
            let (queue, exchange) = (&session.queue, &next.exchange);
            session
                .channel
                .queue_unbind(queue, exchange, key, FieldTable::default())
                .await?;
        }
        if old.prefetch != next.prefetch {
            session
                .channel
                .basic_qos(next.prefetch, BasicQosOptions::default())
                .await?;
        }
        self.task.link = next;
        Ok(())
    }

    async fn consume(&self, session: &Session) -> Result<Consumer, lapin::Error> {
        session
            .channel
            .basic_consume(
                &session.queue,
                &self.consumer_tag,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
    }

    /// The consumer of a durable queue's companion (see [`declare_dropped`]).
    async fn consume_dropped(&self, session: &Session) -> Result<Option<Consumer>, lapin::Error> {
        let Some(queue) = &session.dropped_queue else {
            return Ok(None);
        };
        let options = BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        };
        let tag = format!("{}-dropped", self.consumer_tag);
        let consumer = session
            .channel
            .basic_consume(queue, &tag, options, FieldTable::default())
            .await?;
        Ok(Some(consumer))
    }

    /// Hands `pending` to RabbitMQ; it counts as sent once confirmed.
    async fn send(
        &self,
        session: &Session,
        pending: &Pending,
    ) -> Result<PublisherConfirm, lapin::Error> {
        // Persistent whatever this node's own queue: a receiver's durable
        // queue keeps it across a broker restart only then (RabbitMQ writes
        // nothing for the transient queues).
        let properties = BasicProperties::default()
            .with_app_id(self.app_id.clone())
            .with_message_id(dedup::message_id((self.nonce, pending.seq)).into())
            .with_delivery_mode(2);
        session
            .channel
            .basic_publish(
                &self.task.link.exchange,
                &self.task.link.publish,
                BasicPublishOptions::default(),
                pending.text.as_bytes(),
                properties,
            )
            .await
    }

    /// Counts a delivery that is over the size limit or not UTF-8; logs the
    /// first few and then at powers of two, as a flood must not flood the log.
    fn refused(&self, size: usize) {
        let refused = self.task.status.add_rejected();
        if refused <= 4 || refused.is_power_of_two() {
            let (node, limit) = (&self.task.node, self.task.max_body);
            let broker = &self.task.status.address;
            tracing::warn!(
                node = %node, broker = %broker, size, limit, refused,
                "amqp delivery refused: body over the limit or not UTF-8"
            );
        }
    }

    /// One delivery: an echo or a bad body is acknowledged and dropped; one
    /// that finds no client on a durable node is requeued; the rest go to
    /// the router, which acknowledges them once the hub has them. False
    /// when the channel failed.
    async fn received(
        &mut self,
        session: &Session,
        delivery: lapin::message::Delivery,
        cancel: &CancellationToken,
    ) -> bool {
        let tag = delivery.delivery_tag;
        let echo = delivery.properties.app_id().as_ref() == Some(&self.app_id);
        // Who sent it and which of theirs it is, when a topo link did.
        let sender = delivery.properties.app_id().clone();
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .and_then(|id| dedup::parse(id.as_str()));
        let origin = sender.zip(id);
        let size = delivery.data.len();
        let text = (!echo && size <= self.task.max_body)
            .then(|| String::from_utf8(delivery.data).ok())
            .flatten();
        let Some(text) = text else {
            if !echo {
                self.refused(size);
            }
            // Acknowledged, so RabbitMQ does not bring it again.
            let options = BasicAckOptions::default();
            return session.channel.basic_ack(tag, options).await.is_ok();
        };
        if let Some((sender, id)) = &origin
            && self.seen.is_repeat(sender.as_str(), *id)
        {
            // Handed on once already: published again after a lost
            // confirmation, or delivered again after a lost acknowledgement.
            tracing::debug!(sender = %sender, "amqp: a repeated delivery dropped");
            self.task.status.repeated.fetch_add(1, Ordering::Relaxed);
            let options = BasicAckOptions::default();
            return session.channel.basic_ack(tag, options).await.is_ok();
        }
        if self.task.link.queue.is_some() && *self.task.presence.borrow() == 0 {
            let options = BasicRejectOptions { requeue: true };
            return session.channel.basic_reject(tag, options).await.is_ok();
        }
        if let Some((sender, id)) = &origin {
            self.seen.record(sender.as_str(), *id);
        }
        self.task.status.add_received();
        let message = Received {
            origin: Origin::Amqp,
            text: Text::from(text),
            ack: Some(Ack {
                tag,
                to: self.acks_tx.clone(),
            }),
        };
        tokio::select! {
            _ = cancel.cancelled() => true,
            sent = self.task.inbox.send(message) => sent.is_ok(),
        }
    }
}

/// Exchanges and named queues a run declared on one AMQP server, to delete
/// once it is over (`topo test --run`).
#[derive(Debug)]
pub struct Declared {
    url: crate::model::AmqpUrl,
    exchanges: Vec<String>,
    queues: Vec<String>,
}

/// Gives every exchange and named queue of `topology` a suffix unique to
/// this process and run, so that runs share a RabbitMQ without meeting
/// (starting a RabbitMQ per file would take seconds); returns what to delete.
pub fn isolate(topology: &mut crate::model::Topology) -> Vec<Declared> {
    use std::sync::atomic::AtomicUsize;
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let suffix = format!(
        ".topo-run-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    );
    let mut declared: Vec<Declared> = Vec::new();
    for node in &mut topology.nodes {
        let Some(link) = &mut node.amqp else { continue };
        link.exchange.push_str(&suffix);
        if let Some(queue) = &mut link.queue {
            queue.push_str(&suffix);
        }
        let url = &topology.amqp_brokers[link.broker.0].url;
        let entry = match declared.iter().position(|d| d.url == *url) {
            Some(i) => &mut declared[i],
            None => {
                declared.push(Declared {
                    url: url.clone(),
                    exchanges: Vec::new(),
                    queues: Vec::new(),
                });
                declared.last_mut().expect("just pushed")
            }
        };
        if !entry.exchanges.contains(&link.exchange) {
            entry.exchanges.push(link.exchange.clone());
        }
        if let Some(queue) = &link.queue {
            entry.queues.push(queue.clone());
            entry.queues.push(crate::model::amqp_dropped_queue(queue));
        }
    }
    declared
}

impl Declared {
    /// Deletes them, best effort (the server may be gone).
    pub async fn delete(self) {
        let work = async {
            let connection = dial(&self.url).await.ok()?;
            let channel = connection.create_channel().await.ok()?;
            for queue in &self.queues {
                let _ = channel
                    .queue_delete(queue, lapin::options::QueueDeleteOptions::default())
                    .await;
            }
            for exchange in &self.exchanges {
                let _ = channel
                    .exchange_delete(exchange, lapin::options::ExchangeDeleteOptions::default())
                    .await;
            }
            let _ = connection.close(200, "done").await;
            Some(())
        };
        let _ = tokio::time::timeout(CONNECT_TIMEOUT, work).await;
    }
}
