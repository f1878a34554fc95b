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
//! The fault switch "broker down" ([`AmqpControl::sever`]) closes the
//! session and keeps the task from reconnecting until it is let go: the
//! link then behaves as in a real outage (down, outbox, flush on return).
//! Never logs the connection string: only the redacted URL.

use super::outbox::Outbox;
use super::queue::QueuedOutbound;
use super::retry::{backoff, sleep_or_cancelled};
use super::{Ack, Counters, Inbox, LinkState, LinkStatus, Origin, Received, Text};
use crate::model::{AmqpWiring, ExchangeKind};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
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
/// Bodies larger than this are dropped (and acknowledged): RabbitMQ itself
/// accepts up to 128 MiB, a chat client never needs it.
const MAX_BODY: usize = 16 * 1024 * 1024;
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
}

/// A connection with the exchange, queue and bindings declared.
pub struct Session {
    connection: Connection,
    channel: Channel,
    /// The queue's name (RabbitMQ names an exclusive one).
    queue: String,
    /// Messages ready in the queue when it was declared.
    depth: u32,
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
    let queue = channel.queue_declare(name, options, arguments).await?;
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
    Ok(Session {
        connection,
        channel,
        queue: queue_name,
        depth: queue.message_count(),
        events,
    })
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

struct Runner {
    task: LinkTask,
    publish: mpsc::Receiver<Text>,
    rewires: mpsc::Receiver<Rewire>,
    severs: mpsc::Receiver<Sever>,
    /// The fault switch is on: no session until it is let go.
    severed: bool,
    outbox: Outbox,
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

    fn hold(&mut self, text: Text) {
        let stats = &self.task.status.outbox;
        self.outbox.hold(text, stats);
    }

    /// Runs one session: publishes, consumes (while allowed), acknowledges.
    async fn serve(&mut self, mut session: Session, cancel: &CancellationToken) -> End {
        let status = self.task.status.clone();
        status
            .queue_depth
            .store(u64::from(session.depth), Ordering::Relaxed);
        // A new channel: tags of the old one mean nothing now.
        while self.acks.try_recv().is_ok() {}
        if self.flush(&session).await.is_err() {
            return End::Lost;
        }
        let mut consumer: Option<Consumer> = None;
        let mut presence = self.task.presence.clone();
        let mut depth_tick = tokio::time::interval(DEPTH_EVERY);
        depth_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            let wanted = self.task.link.queue.is_none() || *presence.borrow_and_update() > 0;
            if wanted && consumer.is_none() {
                match self.consume(&session).await {
                    Ok(c) => consumer = Some(c),
                    Err(_) => break End::Lost,
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
                    break End::Lost;
                }
            }
            let next = async {
                match consumer.as_mut() {
                    Some(c) => c.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break End::Cancelled,
                event = session.events.next() => match event {
                    Some(lapin::Event::Error(_)) | None => break End::Lost,
                    Some(_) => continue,
                },
                _ = presence.changed() => continue,
                _ = depth_tick.tick() => {
                    if refresh_depth(&session, &status).await.is_err() {
                        break End::Lost;
                    }
                }
                Some((next, reply)) = self.rewires.recv() => {
                    let result = self.rebind(&session, next).await;
                    let failed = result.is_err();
                    let _ = reply.send(result);
                    if failed {
                        break End::Lost;
                    }
                }
                Some((on, reply)) = self.severs.recv() => {
                    if on && !self.severed {
                        // Closed before answering: the switch returns with the link down.
                        close(&session, "held down by a fault switch").await;
                        self.switch(on, reply);
                        break End::Severed;
                    }
                    self.switch(on, reply);
                }
                Some(tag) = self.acks.recv() => {
                    if session.channel.basic_ack(tag, BasicAckOptions::default()).await.is_err() {
                        break End::Lost;
                    }
                }
                text = self.publish.recv() => match text {
                    Some(text) => {
                        if self.send(&session, &text).await.is_err() {
                            self.hold(text);
                            break End::Lost;
                        }
                    }
                    None => break End::Cancelled,
                },
                delivery = next => match delivery {
                    Some(Ok(delivery)) => {
                        if !self.received(&session, delivery, cancel).await {
                            break End::Lost;
                        }
                    }
                    Some(Err(_)) | None => break End::Lost,
                },
            }
        };
        if matches!(end, End::Cancelled) {
            close(&session, "node stopped").await;
        }
        end
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

    /// Publishes what waited in the outbox, oldest first.
    async fn flush(&mut self, session: &Session) -> Result<(), lapin::Error> {
        while !self.outbox.is_empty() {
            for text in self.outbox.peek(256) {
                self.send(session, &text).await?;
                self.outbox.sent(1, &self.task.status.outbox);
            }
        }
        Ok(())
    }

    async fn send(&self, session: &Session, text: &Text) -> Result<(), lapin::Error> {
        let mut properties = BasicProperties::default().with_app_id(self.app_id.clone());
        if self.task.link.queue.is_some() {
            properties = properties.with_delivery_mode(2); // persistent
        }
        session
            .channel
            .basic_publish(
                &self.task.link.exchange,
                &self.task.link.publish,
                BasicPublishOptions::default(),
                text.as_bytes(),
                properties,
            )
            .await?;
        self.task.counters.add_out(1);
        self.task.status.add_sent(1);
        Ok(())
    }

    /// One delivery: an echo or a bad body is acknowledged and dropped; one
    /// that finds no client on a durable node is requeued; the rest go to
    /// the router, which acknowledges them once the hub has them. False
    /// when the channel failed.
    async fn received(
        &self,
        session: &Session,
        delivery: lapin::message::Delivery,
        cancel: &CancellationToken,
    ) -> bool {
        let tag = delivery.delivery_tag;
        let echo = delivery.properties.app_id().as_ref() == Some(&self.app_id);
        let text = (delivery.data.len() <= MAX_BODY && !echo)
            .then(|| String::from_utf8(delivery.data).ok())
            .flatten();
        let Some(text) = text else {
            let options = BasicAckOptions::default();
            return session.channel.basic_ack(tag, options).await.is_ok();
        };
        if self.task.link.queue.is_some() && *self.task.presence.borrow() == 0 {
            let options = BasicRejectOptions { requeue: true };
            return session.channel.basic_reject(tag, options).await.is_ok();
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
        entry.queues.extend(link.queue.clone());
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
