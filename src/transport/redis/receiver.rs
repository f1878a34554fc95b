//! The receiving task of a Redis link: turns pushes into messages for the
//! node's inbox (own echoes and non-UTF-8 dropped), tracks the link's state
//! from (dis)connection pushes, and installs a rewired echo filter in order.
//! A fault switch (the admin page's "broker down") makes it act as if the
//! connection were lost: the link reads down, pushes are dropped (and
//! counted), the publisher holds messages in the outbox until it is undone.
//!
//! On a cluster the link also watches for lost subscriptions: a node's
//! disconnection (its master may be failing over) or a `sunsubscribe` the
//! server sends when a slot moves. It then reads down and subscribes again
//! (the cluster client routes to the slot's current owner, refreshing its
//! slot map when the old one fails) until it succeeds.

use super::conn::{Conn, Mode};
use super::{Fence, Wanted, lock};
use crate::transport::echo::{EchoFilter, Via};
use crate::transport::{Inbox, LinkState, LinkStatus, Origin, Received, Text};
use redis::{PushInfo, PushKind, Value};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// One subscription attempt at most: while a shard fails over, attempts
/// routed to its dead master hang in the client's own retries, and the
/// sooner one is abandoned the sooner the promoted replica is tried.
const RESUBSCRIBE_TIMEOUT: Duration = Duration::from_millis(300);
/// Between attempts: constant and short, because a failover's end is what
/// the link waits for, and Redis promotes a replica within a few seconds.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_millis(100);

pub(super) struct Receiver {
    /// Kept alive: dropping the manager stops its reconnection. A cluster
    /// link also subscribes through it again (see the module doc).
    conn: Conn,
    mode: Mode,
    wanted: Arc<Mutex<Wanted>>,
    /// Set while handling a push: the subscriptions must be made again.
    lost_subscription: std::sync::atomic::AtomicBool,
    filter: Arc<Mutex<EchoFilter>>,
    inbox: Inbox,
    status: Arc<LinkStatus>,
    /// The fault switch: `true` while the admin page holds the link down.
    severed: watch::Receiver<bool>,
    /// The connection's own state (from pushes), whatever the switch says.
    connected: std::sync::atomic::AtomicBool,
    /// Messages dropped while severed, in this episode.
    lost: std::sync::atomic::AtomicU64,
}

impl Receiver {
    pub(super) fn new(
        (conn, mode, wanted): (Conn, Mode, Arc<Mutex<Wanted>>),
        filter: Arc<Mutex<EchoFilter>>,
        inbox: Inbox,
        status: Arc<LinkStatus>,
        severed: watch::Receiver<bool>,
    ) -> Receiver {
        Receiver {
            conn,
            mode,
            wanted,
            lost_subscription: false.into(),
            filter,
            inbox,
            status,
            severed,
            connected: true.into(),
            lost: 0.into(),
        }
    }

    fn is_severed(&self) -> bool {
        *self.severed.borrow()
    }

    /// The switch moved: down at once; back up only if the connection is.
    fn switched(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.is_severed() {
            tracing::warn!(broker = %self.status.address, "redis link cut (fault switch): messages wait in the outbox");
            self.status.set(LinkState::Down);
            lock(&self.filter).clear();
        } else {
            let lost = self.lost.swap(0, Relaxed);
            tracing::info!(broker = %self.status.address, lost, "redis link restored (fault switch)");
            if self.connected.load(Relaxed) {
                self.status.set(LinkState::Up);
            }
        }
    }

    pub(super) async fn run(
        mut self,
        mut pushes: mpsc::Receiver<PushInfo>,
        mut fences: mpsc::Receiver<Fence>,
        cancel: CancellationToken,
    ) {
        self.status.set(LinkState::Up);
        let mut resubscribing: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
        loop {
            if resubscribing.is_none()
                && self
                    .lost_subscription
                    .swap(false, std::sync::atomic::Ordering::Relaxed)
            {
                resubscribing = Some(Box::pin(self.resubscription()));
            }
            let push = tokio::select! {
                _ = cancel.cancelled() => return,
                () = async { resubscribing.as_mut().expect("checked").await }, if resubscribing.is_some() => {
                    resubscribing = None;
                    self.resubscribed();
                    continue;
                }
                // Closed: the control is gone with the node; keep receiving.
                Ok(()) = self.severed.changed() => {
                    self.switched();
                    continue;
                }
                Some(fence) = fences.recv() => {
                    let ((publish, subscribe, patterns), ack) = *fence;
                    // Everything queued before the rewiring is judged by the old filter.
                    while let Ok(push) = pushes.try_recv() {
                        if !self.forward(push, &cancel).await {
                            return;
                        }
                    }
                    let mut filter = lock(&self.filter);
                    let next = filter.rewired(&publish, &subscribe, &patterns);
                    *filter = next;
                    drop(filter);
                    let _ = ack.send(());
                    continue;
                }
                push = pushes.recv() => match push {
                    Some(push) => push,
                    None => return,
                },
            };
            if !self.forward(push, &cancel).await {
                return;
            }
        }
    }

    /// Subscribes to everything wanted again, retrying until
    /// the cluster answers (after a failover: once the replica is promoted).
    fn resubscription(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut conn = self.conn.clone();
        let mode = self.mode;
        let (channels, patterns) = lock(&self.wanted).clone();
        async move {
            loop {
                let attempt = async {
                    if !channels.is_empty() {
                        conn.subscribe(mode, &channels).await?;
                    }
                    if !patterns.is_empty() {
                        conn.psubscribe(&patterns).await?;
                    }
                    redis::RedisResult::Ok(())
                };
                match tokio::time::timeout(RESUBSCRIBE_TIMEOUT, attempt).await {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "redis cluster resubscription failed")
                    }
                    Err(_) => tracing::debug!("redis cluster resubscription timed out"),
                }
                tokio::time::sleep(RESUBSCRIBE_PAUSE).await;
            }
        }
    }

    fn resubscribed(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.connected.store(true, Relaxed);
        if self.is_severed() {
            return;
        }
        if self.status.state() != LinkState::Up {
            tracing::info!(broker = %self.status.address, "redis cluster link up: resubscribed");
        }
        self.status.set(LinkState::Up);
    }

    /// A `sunsubscribe`/`unsubscribe` push for a channel still wanted: the
    /// server dropped it (its slot moved to another shard).
    fn dropped_by_server(&self, data: &[Value]) -> bool {
        let channel = match data.first() {
            Some(Value::BulkString(b)) => b.as_slice(),
            Some(Value::SimpleString(s)) => s.as_bytes(),
            _ => return false,
        };
        lock(&self.wanted).0.iter().any(|c| c.as_bytes() == channel)
    }

    /// Handles one push; `false` when the node is going away.
    async fn forward(&self, push: PushInfo, cancel: &CancellationToken) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let text = match push.kind {
            PushKind::Message | PushKind::PMessage | PushKind::SMessage if self.is_severed() => {
                self.lost.fetch_add(1, Relaxed);
                None
            }
            PushKind::Message | PushKind::PMessage | PushKind::SMessage => {
                self.message(push.kind, push.data)
            }
            PushKind::SUnsubscribe
                if self.conn.is_cluster() && self.dropped_by_server(&push.data) =>
            {
                tracing::warn!(
                    broker = %self.status.address,
                    "redis cluster dropped a sharded subscription (slot moved): resubscribing"
                );
                self.status.set(LinkState::Down);
                self.lost_subscription.store(true, Relaxed);
                None
            }
            PushKind::Disconnection => {
                if self.conn.is_cluster() {
                    self.lost_subscription.store(true, Relaxed);
                }
                self.connected.store(false, Relaxed);
                tracing::warn!(
                    broker = %self.status.address,
                    "redis link down: reconnecting; messages wait in the outbox"
                );
                self.status.set(LinkState::Down);
                // Whatever was in flight will not come back on the new connection.
                lock(&self.filter).clear();
                None
            }
            PushKind::Subscribe | PushKind::PSubscribe | PushKind::SSubscribe => {
                self.connected.store(true, Relaxed);
                if self.is_severed() {
                    return true;
                }
                if self.status.state() != LinkState::Up {
                    tracing::info!(broker = %self.status.address, "redis link up: resubscribed");
                }
                self.status.set(LinkState::Up);
                None
            }
            _ => None,
        };
        let Some(text) = text else { return true };
        let received = Received {
            origin: Origin::Redis,
            text,
            ack: None,
        };
        tokio::select! {
            _ = cancel.cancelled() => false,
            r = self.inbox.send(received) => r.is_ok(),
        }
    }

    /// The text of a `message` ([channel, payload]) or `pmessage` ([pattern,
    /// channel, payload]) push, unless it is our own echo or not UTF-8.
    fn message(&self, kind: PushKind, data: Vec<Value>) -> Option<Text> {
        let mut parts = data.into_iter().map(|v| match v {
            Value::BulkString(b) => Some(b),
            Value::SimpleString(s) => Some(s.into_bytes()),
            _ => None,
        });
        let pattern = match kind {
            PushKind::PMessage => Some(parts.next()??),
            _ => None,
        };
        let channel = parts.next()??;
        let payload = parts.next()??;
        let via = match &pattern {
            Some(p) => Via::Pattern(p),
            None => Via::Channel,
        };
        if lock(&self.filter).is_echo(via, &channel, &payload) {
            return None;
        }
        match Text::try_from(payload) {
            Ok(text) => {
                self.count(pattern.as_deref(), &channel);
                Some(text)
            }
            Err(_) => {
                tracing::debug!("redis message that is not UTF-8 dropped");
                None
            }
        }
    }

    /// Counts a delivered message under the subscription that brought it,
    /// named as the drawing names it (`channel`, `psubscribe pattern`).
    fn count(&self, pattern: Option<&[u8]>, channel: &[u8]) {
        match pattern {
            Some(p) => self
                .status
                .add_received_via(crate::health::PATTERN_PREFIX, p),
            None => self.status.add_received_via("", channel),
        }
    }
}
