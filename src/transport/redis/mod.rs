//! The Redis link: a publishing connection (shared by the process's links
//! to the same broker URL: `shared`), one RESP3 subscribing connection
//! that reconnects and resubscribes by itself, and the echo
//! filter between them. On a Redis Cluster broker both are cluster
//! connections (`conn`), classic or sharded (SPUBLISH/SSUBSCRIBE). This file connects, starts the two tasks
//! (`publisher`: outbox, backoff; `receiver`: pushes, link state) and
//! rewires a running link. Never logs the connection string: only the
//! redacted URL.

mod conn;
mod publisher;
mod receiver;
mod shared;

use super::echo::{EchoFilter, PENDING_LIMIT};
use super::queue::QueuedOutbound;
use super::{Counters, Inbox, LinkStatus, Origin};
use crate::model::{RedisUrl, RedisWiring};
use conn::{Conn, Mode};
use publisher::RedisPublisher;
use receiver::Receiver;
use redis::PushInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use shared::SharedPublisher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// Messages waiting to be published. When full (Redis slow or down), new
/// messages are dropped and logged: local delivery never waits for Redis.
const PUBLISH_QUEUE: usize = 4096;
/// Pushes (received messages) waiting for the receiver task. The client's
/// reader must never block, so when full a push is dropped and counted.
const PUSH_QUEUE: usize = 8192;
/// Reconnection and publication retries back off up to this, plus up to as
/// much again of jitter: attempts are at most 0.8 s apart.
const RETRY_CAP: Duration = Duration::from_millis(400);
/// How long `start` may take to reach the server and subscribe.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Both connections up and every SUBSCRIBE/PSUBSCRIBE confirmed.
pub struct Connected {
    publisher: SharedPublisher,
    subscriber: Conn,
    pushes: mpsc::Receiver<PushInfo>,
}

/// Reconnects forever with capped exponential backoff
/// and jitter: 50 ms doubling to [`RETRY_CAP`], and the crate adds up to as
/// much again at random, so attempts are at most 0.8 s apart.
fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(usize::MAX)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(RETRY_CAP)
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
}

/// Why a Redis link could not be made or rewired. The Redis error is kept
/// as it is, so that a caller can tell an authentication failure
/// (`ErrorKind::AuthenticationFailed`) from an unreachable server (`is_io_error`).
/// Displays without the connection string (no password).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The `ca:` bundle could not be read (bounded like a topology file).
    #[error(transparent)]
    CertificateAuthority(#[from] crate::config::read::ReadError),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("timed out")]
    TimedOut,
}

/// A client for `url` (RESP3 for the subscriber, whose pushes need it);
/// `rediss://` trusts the broker's `ca:` when given, else the system's roots.
fn new_client(url: &RedisUrl, resp3: bool) -> Result<redis::Client, LinkError> {
    let mut secret = url.connection_string();
    if resp3 {
        secret.push_str("?protocol=resp3");
    }
    if url.tls {
        // rustls needs one process-wide crypto provider; the first call wins.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let client = match (&url.ca, url.tls) {
        (Some(ca), true) => {
            let root = crate::config::read::read_certificate(ca)?;
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root),
            };
            redis::Client::build_with_tls(secret.as_str(), certificates)
        }
        _ => redis::Client::open(secret.as_str()),
    };
    Ok(client?)
}

/// Connects and subscribes. The error text never contains the password.
pub async fn connect(link: &RedisWiring) -> Result<Connected, LinkError> {
    let publisher = shared::publisher(&link.url).await?;
    let (mut subscriber, pushes) = if link.url.cluster {
        connect_cluster(&link.url).await?
    } else {
        connect_single(&link.url).await?
    };
    if !link.subscribe.is_empty() {
        within(subscriber.subscribe(Mode::of(link.sharded), &link.subscribe)).await?;
    }
    if !link.patterns.is_empty() {
        within(subscriber.psubscribe(&link.patterns)).await?;
    }
    Ok(Connected {
        publisher,
        subscriber,
        pushes,
    })
}

type Subscribing = (Conn, mpsc::Receiver<PushInfo>);

/// A link's publishing connection (made once per broker URL: `shared`).
async fn publishing(url: &RedisUrl) -> Result<Conn, LinkError> {
    if url.cluster {
        let client = cluster_client(url, None::<fn(PushInfo) -> Result<(), ()>>)?;
        return Ok(Conn::Cluster(within(client.get_async_connection()).await?));
    }
    let client = new_client(url, false)?;
    // The managers retry forever, even the first time: try once plainly so
    // that an unreachable server is reported at start instead of awaited.
    probe(&client).await?;
    let publisher = within(ConnectionManager::new_with_config(client, manager_config())).await?;
    Ok(Conn::Single(publisher))
}

async fn connect_single(url: &RedisUrl) -> Result<Subscribing, LinkError> {
    let client = new_client(url, true)?;
    let (sender, pushes) = push_channel();
    let config = manager_config()
        .set_push_sender(sender)
        .set_automatic_resubscription();
    let subscriber = first_connection(client, config).await?;
    Ok((Conn::Single(subscriber), pushes))
}

/// The subscribing cluster connection from the seeds. The crate connects
/// to every node of the slot map, routes by slot, refreshes the map on
/// MOVED and on errors, and resubscribes what it tracks.
async fn connect_cluster(url: &RedisUrl) -> Result<Subscribing, LinkError> {
    let (sender, pushes) = push_channel();
    let subscriber = within(cluster_client(url, Some(sender))?.get_async_connection()).await?;
    Ok((Conn::Cluster(subscriber), pushes))
}

fn cluster_client(
    url: &RedisUrl,
    pushes: Option<impl redis::aio::AsyncPushSender>,
) -> Result<redis::cluster::ClusterClient, LinkError> {
    let mut builder = redis::cluster::ClusterClientBuilder::new(url.seed_connection_strings())
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .min_retry_wait(20)
        .max_retry_wait(RETRY_CAP.as_millis() as u64);
    if url.tls {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if let Some(ca) = &url.ca {
            let root = crate::config::read::read_certificate(ca)?;
            builder = builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root),
            });
        }
    }
    if let Some(pushes) = pushes {
        builder = builder
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes);
    }
    Ok(builder.build()?)
}

/// Where the client's reader hands pushes over. It must never block, so
/// when the queue is full a push is dropped and counted.
fn push_channel() -> (
    impl Fn(PushInfo) -> Result<(), ()> + Send + Sync + 'static,
    mpsc::Receiver<PushInfo>,
) {
    let (tx, pushes) = mpsc::channel(PUSH_QUEUE);
    let dropped = AtomicU64::new(0);
    // Called from the client's own reader task: log in the node's span.
    let span = tracing::Span::current();
    let sender = move |info: PushInfo| match tx.try_send(info) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => {
            let n = dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                span.in_scope(|| {
                    tracing::warn!(dropped = n, "redis receive queue full, messages dropped")
                });
            }
            Ok(())
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
    };
    (sender, pushes)
}

/// How long a subscribing connection may take before a plain attempt
/// checks why: long enough that a server answering normally is never probed.
const PROBE_AFTER: Duration = Duration::from_millis(200);

/// The subscribing connection's manager, once connected. The managers retry
/// forever, even the first time: when it is slow to connect, one plain
/// attempt tells an unreachable server or refused credentials (reported at
/// start) from a slow one (awaited, within [`START_TIMEOUT`]). Probing only
/// then spares a thousand nodes on one server a thousand extra connections.
async fn first_connection(
    client: redis::Client,
    config: ConnectionManagerConfig,
) -> Result<ConnectionManager, LinkError> {
    let why = async {
        tokio::time::sleep(PROBE_AFTER).await;
        match probe(&client).await {
            Err(e) => e,
            Ok(()) => std::future::pending().await,
        }
    };
    tokio::select! {
        made = within(ConnectionManager::new_with_config(client.clone(), config)) => made,
        e = why => Err(e),
    }
}

/// One plain connection attempt, closed at once.
async fn probe(client: &redis::Client) -> Result<(), LinkError> {
    match tokio::time::timeout(START_TIMEOUT, client.get_multiplexed_async_connection()).await {
        Err(_) => Err(LinkError::TimedOut),
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(_)) => Ok(()),
    }
}

async fn within<T>(f: impl Future<Output = redis::RedisResult<T>>) -> Result<T, LinkError> {
    match tokio::time::timeout(START_TIMEOUT, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(LinkError::TimedOut),
    }
}

impl Connected {
    /// The publishing handle, the handle that rewires the subscription, and
    /// the two tasks (publisher, receiver) to spawn.
    pub fn run(
        self,
        link: &RedisWiring,
        counters: Arc<Counters>,
        inbox: Inbox,
        status: Arc<LinkStatus>,
        outbox: usize,
        cancel: CancellationToken,
    ) -> (
        QueuedOutbound,
        RedisControl,
        impl Future<Output = ()> + Send + 'static,
        impl Future<Output = ()> + Send + 'static,
    ) {
        let filter = EchoFilter::new(
            &link.publish,
            &link.subscribe,
            &link.patterns,
            PENDING_LIMIT,
        );
        let filter = Arc::new(Mutex::new(filter));
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        let (channel, channel_rx) = watch::channel(link.publish.clone());
        // One rewiring at a time (the node's wiring lock); one slot is enough.
        let (fence, fences) = mpsc::channel(1);
        let (outbox_limit, outbox_limit_rx) = watch::channel(outbox);
        let (severed, severed_rx) = watch::channel(false);
        let mode = Mode::of(link.sharded);
        // What the link means to be subscribed to: the receiver resubscribes
        // it when a cluster node is lost or a slot moves; a rewiring changes
        // it before it unsubscribes anything.
        let wanted = Arc::new(Mutex::new((link.subscribe.clone(), link.patterns.clone())));
        let publisher = RedisPublisher::new(
            self.publisher,
            mode,
            channel_rx,
            filter.clone(),
            counters,
            status.clone(),
            outbox_limit_rx,
        );
        let control = RedisControl {
            conn: self.subscriber.clone(),
            mode,
            wanted: wanted.clone(),
            filter: filter.clone(),
            channel,
            fence,
            outbox_limit,
            severed,
        };
        let receiver = Receiver::new(
            (self.subscriber, mode, wanted),
            filter,
            inbox,
            status,
            severed_rx,
        );
        (
            QueuedOutbound::new(Origin::Redis, tx),
            control,
            publisher.run(rx, cancel.clone()),
            receiver.run(self.pushes, fences, cancel),
        )
    }
}

/// The channels and patterns a link means to be subscribed to.
type Wanted = (Vec<String>, Vec<String>);

/// The subscription (publish channel, channels, patterns) whose echo filter
/// the receiver installs once it has handled every push already queued, and
/// the signal that it did. The filter is derived at that moment, under the
/// lock, so that nothing the publisher remembered in between is lost.
/// Boxed: a channel allocates its slots 32 at a time, and an unboxed fence
/// would make its one-slot channel cost 2.5 KiB per link for a rare event.
type Fence = Box<((String, Vec<String>, Vec<String>), oneshot::Sender<()>)>;

/// The commands that move a live link's subscription: `RedisControl::rewire`.
#[derive(Clone, Copy, Debug)]
pub struct SubscriptionChange<'a> {
    pub subscribe: &'a [String],
    pub unsubscribe: &'a [String],
    pub psubscribe: &'a [String],
    pub punsubscribe: &'a [String],
}

/// Rewires a running Redis link in place (hot reload): SUBSCRIBE/UNSUBSCRIBE,
/// PSUBSCRIBE/PUNSUBSCRIBE, the publish channel, and the echo filter to match;
/// and the size of its outbox. The publisher keeps running throughout, so
/// what its outbox holds, its backoff and the link's state carry over.
pub struct RedisControl {
    conn: Conn,
    mode: Mode,
    /// What the receiver keeps subscribed (see `receiver`).
    wanted: Arc<Mutex<Wanted>>,
    filter: Arc<Mutex<EchoFilter>>,
    channel: watch::Sender<String>,
    fence: mpsc::Sender<Fence>,
    outbox_limit: watch::Sender<usize>,
    /// The fault switch (see `receiver`): `true` holds the link down.
    severed: watch::Sender<bool>,
}

impl RedisControl {
    /// Holds the link down (`true`) as if the broker were unreachable, or
    /// lets it come back (`false`); `false` when it was already so.
    pub fn sever(&self, on: bool) -> bool {
        self.severed
            .send_if_modified(|s| std::mem::replace(s, on) != on)
    }

    /// Resizes the outbox (`limits.outbox`); when it shrinks below what it
    /// holds, the oldest messages are dropped and counted.
    pub fn set_outbox(&self, limit: usize) {
        self.outbox_limit
            .send_if_modified(|l| std::mem::replace(l, limit) != limit);
    }

    /// Moves the link from `old` to `new` (same server) with the commands
    /// `change` lists (the node's delta, computed by `diff`). On an error the
    /// subscriptions already changed are reverted as far as Redis lets us.
    pub async fn rewire(
        &mut self,
        old: &RedisWiring,
        new: &RedisWiring,
        change: SubscriptionChange<'_>,
    ) -> Result<(), LinkError> {
        let SubscriptionChange {
            subscribe: add_s,
            unsubscribe: gone_s,
            psubscribe: add_p,
            punsubscribe: gone_p,
        } = change;
        // While both old and new entries may deliver, recognise echoes through either.
        let mut union_s = old.subscribe.clone();
        union_s.extend(add_s.iter().cloned());
        let mut union_p = old.patterns.clone();
        union_p.extend(add_p.iter().cloned());
        {
            let mut f = lock(&self.filter);
            let next = f.rewired(&new.publish, &union_s, &union_p);
            *f = next;
        }
        self.channel.send_replace(new.publish.clone());
        *lock(&self.wanted) = (new.subscribe.clone(), new.patterns.clone());
        let result = self.commands(add_s, gone_s, add_p, gone_p).await;
        if result.is_err() {
            // Best effort: put the old subscription back.
            *lock(&self.wanted) = (old.subscribe.clone(), old.patterns.clone());
            let _ = self.commands(gone_s, add_s, gone_p, add_p).await;
            self.channel.send_replace(old.publish.clone());
        }
        let target = if result.is_ok() { new } else { old };
        // Pushes of removed entries may still be queued: the receiver judges
        // them with the union filter, then installs the final one.
        let next = (
            target.publish.clone(),
            target.subscribe.clone(),
            target.patterns.clone(),
        );
        let (ack, done) = oneshot::channel();
        if self.fence.send(Box::new((next, ack))).await.is_ok() {
            let _ = done.await;
        }
        result
    }

    async fn commands(
        &mut self,
        add_s: &[String],
        gone_s: &[String],
        add_p: &[String],
        gone_p: &[String],
    ) -> Result<(), LinkError> {
        if !add_s.is_empty() {
            within(self.conn.subscribe(self.mode, add_s)).await?;
        }
        if !add_p.is_empty() {
            within(self.conn.psubscribe(add_p)).await?;
        }
        if !gone_s.is_empty() {
            within(self.conn.unsubscribe(self.mode, gone_s)).await?;
        }
        if !gone_p.is_empty() {
            within(self.conn.punsubscribe(gone_p)).await?;
        }
        Ok(())
    }
}

/// These locks are never held across an await; a poisoned lock only
/// means a panic elsewhere, and the queues stay usable.
fn lock<T>(shared: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}
