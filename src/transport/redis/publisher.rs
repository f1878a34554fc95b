//! The publishing task of a Redis link: PUBLISH in order, in pipelines,
//! while the link is up; while it is down (or a publication fails) messages
//! wait in the bounded outbox, flushed in order once the subscribers are
//! back, retried with capped backoff and jitter.

use super::conn::{Conn, Mode};
use super::shared::SharedPublisher;
use super::{RETRY_CAP, lock};
use crate::transport::echo::EchoFilter;
use crate::transport::outbox::Outbox;
use crate::transport::retry::{backoff, sleep_or_cancelled};
use crate::transport::{Counters, LinkState, LinkStatus, Text};
use backon::ExponentialBackoff;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Most PUBLISH commands sent in one pipeline.
const BATCH: usize = 256;
/// One publication attempt at most (the manager may be reconnecting).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// After a reconnection, publishing waits until the subscribers of our
/// channel are back (see [`subscribers_back`]), at most this long: Redis
/// delivers only to those subscribed at that moment, and the other nodes
/// retry at most 0.8 s apart.
const FLUSH_GRACE: Duration = Duration::from_millis(1500);

pub(super) struct RedisPublisher {
    conn: SharedPublisher,
    /// PUBLISH, or SPUBLISH for a sharded link.
    mode: Mode,
    /// The current publish channel (a reload may change it).
    channel: watch::Receiver<String>,
    filter: Arc<Mutex<EchoFilter>>,
    counters: Arc<Counters>,
    /// Written by the receiver: `Up` once every subscription is confirmed.
    status: Arc<LinkStatus>,
    outbox: Outbox,
    /// The outbox's size; a reload may change it.
    outbox_limit: watch::Receiver<usize>,
    /// The channel of our last publication and how many clients received it
    /// (PUBLISH's reply): after a reconnection, the outbox waits for that
    /// many subscribers. On another channel (a reload moved it) the number
    /// is unknown and the outbox waits out the whole grace period.
    reach: (String, i64),
}

impl RedisPublisher {
    pub(super) fn new(
        conn: SharedPublisher,
        mode: Mode,
        channel: watch::Receiver<String>,
        filter: Arc<Mutex<EchoFilter>>,
        counters: Arc<Counters>,
        status: Arc<LinkStatus>,
        outbox_limit: watch::Receiver<usize>,
    ) -> RedisPublisher {
        let reach = (channel.borrow().clone(), 0);
        let outbox = Outbox::new(*outbox_limit.borrow());
        RedisPublisher {
            conn,
            mode,
            channel,
            filter,
            counters,
            status,
            outbox,
            outbox_limit,
            reach,
        }
    }

    /// Publishes while the link is up; while it is down (or a publication
    /// failed) messages wait in the outbox and are published, in order,
    /// once the subscriptions are confirmed again.
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Text>, cancel: CancellationToken) {
        let mut state = self.status.watch();
        // Grown by the first messages (`recv_many` reserves what it takes):
        // reserved up front it would cost 8 KiB per link that never publishes.
        let mut batch = Vec::new();
        let mut retry = new_backoff();
        let mut was_down = false;
        let mut grace_until: Option<Instant> = None;
        loop {
            let up = *state.borrow_and_update() == LinkState::Up;
            if !up {
                was_down = true;
                grace_until = None;
            } else if was_down {
                was_down = false;
                grace_until = Some(Instant::now() + FLUSH_GRACE);
                tracing::info!(
                    held = self.outbox.len(),
                    "redis link back: publishing again after a grace period"
                );
            }
            let waiting = grace_until.filter(|t| Instant::now() < *t);
            let open = up && waiting.is_none();
            if open && !self.outbox.is_empty() {
                if self.flush_some(&cancel, &mut retry).await {
                    return;
                }
                // New messages queue behind the outbox until it is empty.
                while self.outbox.len() < BATCH
                    && let Ok(text) = rx.try_recv()
                {
                    self.hold(text);
                }
                continue;
            }
            let channel = self.channel.borrow().clone();
            let reach = match &self.reach {
                (on, n) if *on == channel => *n,
                _ => i64::MAX,
            };
            let conn = self.conn.conn();
            let mode = self.mode;
            let grace_over = async {
                match waiting {
                    Some(t) => {
                        let back = subscribers_back(conn, mode, &channel, reach);
                        let _ = tokio::time::timeout_at(t, back).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                n = rx.recv_many(&mut batch, BATCH) => if n == 0 { return },
                // Down or up: re-decide. (The watch cannot close: we hold the status.)
                _ = state.changed() => continue,
                // A reload resized the outbox. (Closed: the node is stopping.)
                Ok(()) = self.outbox_limit.changed() => {
                    self.resize_outbox();
                    continue;
                }
                _ = grace_over => {
                    grace_until = None;
                    continue;
                }
            }
            if !(open && self.publish(&batch).await) {
                if open {
                    tracing::warn!(
                        messages = batch.len(),
                        "redis publish failed, messages kept in the outbox"
                    );
                }
                for text in batch.drain(..) {
                    self.hold(text);
                }
            }
            batch.clear();
        }
    }

    /// Publishes the oldest batch of the outbox, or backs off when that
    /// fails; `true` when cancelled.
    async fn flush_some(
        &mut self,
        cancel: &CancellationToken,
        retry: &mut ExponentialBackoff,
    ) -> bool {
        let held = self.outbox.peek(BATCH);
        let sent = tokio::select! {
            _ = cancel.cancelled() => return true,
            ok = self.publish(&held) => ok,
        };
        if !sent {
            let delay = retry.next().unwrap_or(RETRY_CAP);
            return sleep_or_cancelled(cancel, delay).await;
        }
        self.outbox.sent(held.len(), &self.status.outbox);
        *retry = new_backoff();
        if self.outbox.is_empty() {
            tracing::info!(
                flushed = self.status.outbox.flushed(),
                dropped = self.status.outbox.dropped(),
                "redis outbox flushed"
            );
        }
        false
    }

    fn resize_outbox(&mut self) {
        let limit = *self.outbox_limit.borrow_and_update();
        let dropped = self.outbox.set_limit(limit, &self.status.outbox);
        tracing::info!(limit, dropped, "redis outbox resized");
    }

    fn hold(&mut self, text: Text) {
        let stats = &self.status.outbox;
        if self.outbox.hold(text, stats) > 0 && stats.dropped().is_power_of_two() {
            tracing::warn!(
                dropped = stats.dropped(),
                "redis outbox full, oldest messages dropped"
            );
        }
    }

    /// Publishes a batch in order in one pipeline, retrying once: the first
    /// command after a server restart fails with a broken pipe.
    /// `false` when it failed: the caller keeps the batch.
    async fn publish(&mut self, batch: &[Text]) -> bool {
        {
            // Remember before sending: the echo may come back before the reply.
            let mut filter = lock(&self.filter);
            for text in batch {
                filter.published(text.as_bytes());
            }
            if filter.overflowed > 0 && filter.overflowed.is_power_of_two() {
                tracing::warn!(
                    forgotten = filter.overflowed,
                    "redis echo queue full, oldest forgotten"
                );
            }
        }
        let channel = self.channel.borrow().clone();
        let mut pipe = redis::pipe();
        for (i, text) in batch.iter().enumerate() {
            pipe.cmd(self.mode.publish_command())
                .arg(&channel)
                .arg(text.as_bytes());
            if i + 1 < batch.len() {
                pipe.ignore();
            }
        }
        for _ in 0..2 {
            // The manager may be waiting out its reconnection backoff: bounded.
            let query = pipe.query_async::<Vec<i64>>(self.conn.conn());
            match tokio::time::timeout(PUBLISH_TIMEOUT, query).await {
                Ok(Ok(reach)) => {
                    if let Some(&n) = reach.last() {
                        self.reach = (channel, n);
                    }
                    self.counters.add_out(batch.len() as u64);
                    self.status.add_sent(batch.len() as u64);
                    return true;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "redis publish failed"),
                Err(_) => tracing::debug!("redis publish timed out"),
            }
        }
        false
    }
}

/// Resolves once `PUBSUB NUMSUB channel` (SHARDNUMSUB when sharded)
/// counts at least `reach` subscribers (checked every 50 ms): everyone who
/// received our last message before the outage is back. With pattern
/// subscribers (not counted by NUMSUB) it never resolves and the grace
/// period runs out.
async fn subscribers_back(conn: &mut Conn, mode: Mode, channel: &str, reach: i64) {
    let count = match mode {
        Mode::Classic => "NUMSUB",
        Mode::Sharded => "SHARDNUMSUB",
    };
    loop {
        let mut cmd = redis::cmd("PUBSUB");
        cmd.arg(count).arg(channel);
        let counted: redis::RedisResult<(String, i64)> = cmd.query_async(conn).await;
        match counted {
            Ok((_, n)) if n >= reach => return,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Between publication retries: 50 ms doubling to [`RETRY_CAP`], plus up to
/// as much again at random.
fn new_backoff() -> ExponentialBackoff {
    backoff(Duration::from_millis(50), RETRY_CAP)
}
