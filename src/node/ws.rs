//! The HTTP side of a chat node: the chat page at `/`, WebSocket sessions on
//! `/ws` and on `/` (when the request asks to upgrade), `/healthz`, 404 else.
//! Sessions only talk to `router::NodeRouter`; they never touch a link directly.
//! Enforces the node's client limits: origins and connection count at the
//! upgrade, message size (1009), UTF-8 (1007), binary (1003), keepalive,
//! and a bounded backlog per client (1008) so one stalled client costs the
//! others nothing.

use super::close::CloseCode;
use super::router::NodeRouter;
use crate::health::{Health, HealthLink, Messages, OutboxHealth};
use crate::model::Limits;
use crate::serve::ConnState;
use crate::transport::Text;
use axum::BoxError;
use axum::Extension;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::header::{HOST, ORIGIN, SEC_WEBSOCKET_KEY};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

const PAGE: &str = include_str!("../../www/index.html");

/// Socket buffers per connection: tungstenite's 128 KiB defaults cost about
/// 135 KiB per client. tungstenite zero-fills the whole read buffer before
/// its first read and keeps it for the connection's life, so it is resident
/// at once: 256 bytes rather than 1 KiB saves 768 bytes per idle client. It
/// grows for a larger frame, which is then read 256 bytes per read call: a
/// chat line takes one read, a 64 KiB message 256. The write buffer (empty
/// until a message is written) lets one flush carry several queued messages.
const READ_BUFFER: usize = 256;
const WRITE_BUFFER: usize = 4096;
/// Messages written per flush at most, so one busy client flushes regularly.
const MAX_BATCH: usize = 64;
/// A close frame to a client that stopped reading is abandoned after this.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);

/// How often a writer blocked on a full socket looks at its backlog.
const STALL_CHECK: Duration = Duration::from_millis(20);

#[derive(Clone)]
pub struct Http {
    pub router: Arc<NodeRouter>,
    pub links: super::Links,
    /// The node's token: cancelled, every session says goodbye (1001).
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    /// The node's span: axum runs handlers in its own tasks, outside of it.
    pub span: tracing::Span,
    /// The node's client limits; a reload replaces them, and each connection
    /// keeps those it was accepted under.
    pub limits: watch::Receiver<Arc<Limits>>,
    /// WebSocket connections open or being upgraded, for `max_connections`.
    pub connections: Arc<AtomicUsize>,
}

pub fn router(http: Http) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/ws", get(ws_only))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(http)
}

async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}

/// The chapter's client connects to the root, so `/` upgrades when asked to.
async fn root(
    State(http): State<Http>,
    conn: Option<Extension<ConnState>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(ws) => accept(http, conn, &headers, ws),
        Err(_) => Html(PAGE).into_response(),
    }
}

async fn ws_only(
    State(http): State<Http>,
    conn: Option<Extension<ConnState>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    accept(http, conn, &headers, ws)
}

/// Checks the key, the origin and the connection limit, then upgrades with
/// the node's message size limit (tungstenite refuses bigger frames early).
fn accept(
    http: Http,
    conn: Option<Extension<ConnState>>,
    headers: &HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !key_valid(headers.get(SEC_WEBSOCKET_KEY)) {
        return (StatusCode::BAD_REQUEST, "invalid Sec-WebSocket-Key\n").into_response();
    }
    let limits = http.limits.borrow().clone();
    if !origin_allowed(&limits.origins, headers) {
        tracing::info!(origin = ?headers.get(ORIGIN), "websocket upgrade refused: origin not allowed");
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    let Some(slot) = Slot::take(&http.connections, limits.max_connections) else {
        tracing::warn!(
            limit = limits.max_connections,
            "websocket upgrade refused: connection limit reached"
        );
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    };
    let max = limits.max_message_bytes;
    // Tracked from the request on, so shutdown also waits for upgrades in
    // flight. Boxed: axum's task keeps the closure below for as long as the
    // session runs, and the session's future holds it again.
    let upgrade = Box::new(Upgrade {
        tracked: http.tracker.token(),
        http,
        conn,
        limits,
        slot,
    });
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            // Split here, outside the task's future: an async block keeps
            // what it captures for as long as it runs, and a WebSocket is
            // about 500 bytes; split, it lives once, in the halves' lock.
            let (sink, stream) = socket.split();
            let span = upgrade.http.span.clone();
            upgrade.run(sink, stream).instrument(span)
        })
}

/// What an accepted upgrade carries into its session.
struct Upgrade {
    http: Http,
    conn: Option<Extension<ConnState>>,
    /// The limits the connection was accepted under.
    limits: Arc<Limits>,
    /// Released when the session ends, then the tracker's token.
    slot: Slot,
    tracked: tokio_util::task::task_tracker::TaskTrackerToken,
}

impl Upgrade {
    async fn run(
        self: Box<Self>,
        sink: SplitSink<WebSocket, Message>,
        stream: SplitStream<WebSocket>,
    ) {
        if let Some(Extension(conn)) = &self.conn {
            conn.upgraded();
            // Whoever closes, the peer may still be sending (a message too
            // big, say): read it off before closing.
            conn.drain_on_close();
        }
        session(sink, stream, &self.http, &self.limits).await;
        let Upgrade { slot, tracked, .. } = *self;
        drop(slot);
        drop(tracked);
    }
}

/// RFC 6455 §4.1: the key is 16 bytes, base64-encoded: 24 characters, the
/// last two `==`, and the 22nd carrying only two bits (A, Q, g or w).
fn key_valid(key: Option<&HeaderValue>) -> bool {
    let Some(key) = key.map(HeaderValue::as_bytes) else {
        return false;
    };
    let base64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    key.len() == 24
        && key[..21].iter().all(base64)
        && b"AQgw".contains(&key[21])
        && &key[22..] == b"=="
}

/// Browsers always send `Origin`; other clients may omit it, and could
/// forge it anyway, so a request without one is let through. With no
/// `origins:`, only the node's own origin (`Origin` naming the `Host` the
/// request was sent to) and the admin server of this process are allowed;
/// `origins: ["*"]` allows any.
fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    if is_admin_origin(origin) {
        return true;
    }
    if !allowed.is_empty() {
        return false;
    }
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// The origins of the admin servers in this process (its page's send
/// boxes are WebSocket clients of every node).
static ADMIN_ORIGINS: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Lets the page of the admin server at `addr` open WebSockets on every
/// node of this process, whatever their `origins:`.
pub fn allow_admin_origin(addr: std::net::SocketAddr) {
    let mut origins = vec![format!("http://{addr}")];
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        let port = addr.port();
        origins.push(format!("http://localhost:{port}"));
        origins.push(format!("http://127.0.0.1:{port}"));
        origins.push(format!("http://[::1]:{port}"));
    }
    let mut list = ADMIN_ORIGINS.write().unwrap_or_else(|e| e.into_inner());
    for origin in origins {
        if !list.contains(&origin) {
            list.push(origin);
        }
    }
}

fn is_admin_origin(origin: &str) -> bool {
    ADMIN_ORIGINS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|a| a.eq_ignore_ascii_case(origin))
}

/// One of `max_connections`; released when dropped (also if the upgrade fails).
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        if count.fetch_add(1, Ordering::AcqRel) >= max {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(count.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `/healthz`: see [`crate::transport::Counters`] for what `messages` counts,
/// [`crate::transport::LinkStatus`] for the per-link `sent`/`received`/`via`,
/// and [`crate::transport::zmtp::Stats`] for a ZeroMQ link's `peers`/`rejected`/`dropped`.
async fn healthz(State(http): State<Http>) -> Json<Health> {
    use crate::transport::LinkKind;
    let links = http
        .links
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|l| {
            // Broker links (Redis, AMQP, NATS) have an outbox; ZeroMQ ones
            // have peers instead.
            let broker = matches!(l.kind, LinkKind::Redis | LinkKind::Amqp | LinkKind::Nats);
            // Links that count what arrived per subscription.
            let per_filter = matches!(l.kind, LinkKind::Redis | LinkKind::Nats);
            let depth = l.queue_depth.load(std::sync::atomic::Ordering::Relaxed);
            HealthLink {
                kind: l.kind,
                endpoint: (!broker).then(|| l.address.clone()),
                broker: broker.then(|| l.address.clone()),
                state: l.state(),
                sent: l.sent(),
                received: l.received(),
                peers: (!broker).then(|| l.zmtp.peers()),
                rejected: (!broker).then(|| l.zmtp.rejected()),
                dropped: (!broker).then(|| l.zmtp.dropped()),
                via: per_filter.then(|| l.received_via().into_iter().collect()),
                queue_depth: (l.kind == LinkKind::Amqp && depth != u64::MAX).then_some(depth),
                outbox: broker.then(|| OutboxHealth {
                    queued: l.outbox.queued(),
                    dropped: l.outbox.dropped(),
                    flushed: l.outbox.flushed(),
                }),
            }
        })
        .collect();
    let router = &http.router;
    Json(Health {
        node: router.name.clone(),
        generation: router.generation(),
        clients: router.hub.clients() as u64,
        links,
        messages: Messages {
            incoming: router.counters.incoming(),
            outgoing: router.counters.outgoing(),
        },
        pid: std::process::id(),
    })
}

/// One client: this task reads, a writer task (tracked by the node) writes.
async fn session(
    sink: SplitSink<WebSocket, Message>,
    stream: SplitStream<WebSocket>,
    http: &Http,
    limits: &Limits,
) {
    if http.cancel.is_cancelled() {
        return;
    }
    let (rx, _guard) = http.router.hub.join();
    tracing::debug!(clients = http.router.hub.clients(), "client connected");
    // Cancelled by the writer when it stops, so the reader stops too.
    let session = http.cancel.child_token();
    // Reader -> writer: close with this frame. A oneshot, not an mpsc: an
    // mpsc allocates a block of 32 slots (~1.3 KiB) per connection.
    let (close_tx, close_rx) = oneshot::channel();
    let writer = Writer {
        sink,
        rx,
        close: close_rx,
        node: http.cancel.clone(),
        send_queue: limits.send_queue,
        ping_interval: limits.ping_interval,
    };
    let writer = http
        .tracker
        .spawn(writer.run(session.clone()).in_current_span());
    let idle = limits.idle_timeout;
    reader(stream, &http.router, close_tx, session, idle).await;
    let _ = writer.await;
    tracing::debug!("client disconnected");
}

async fn reader(
    mut stream: SplitStream<WebSocket>,
    router: &NodeRouter,
    close: oneshot::Sender<CloseFrame>,
    session: CancellationToken,
    idle_timeout: Duration,
) {
    // Any frame (a pong too) proves the peer alive; the timer is re-armed
    // only when it fires, not per message.
    let mut last_seen = Instant::now();
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let goodbye = loop {
        let frame = tokio::select! {
            _ = session.cancelled() => return,
            _ = &mut idle => {
                if last_seen.elapsed() >= idle_timeout {
                    tracing::info!(?idle_timeout, "client silent, dropping it");
                    break close_frame(CloseCode::Policy, "idle timeout: no pong");
                }
                idle.as_mut().reset((last_seen + idle_timeout).into());
                continue;
            }
            frame = stream.next() => frame,
        };
        last_seen = Instant::now();
        match frame {
            Some(Ok(Message::Text(text))) => router.from_client(text),
            Some(Ok(Message::Binary(_))) => {
                break close_frame(CloseCode::Unsupported, "binary frames are not supported");
            }
            Some(Ok(Message::Close(_))) | None => return,
            Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
            Some(Err(e)) => match refusal(e) {
                Ok(frame) => break frame,
                Err(e) => {
                    tracing::debug!(error = %e, "client read error");
                    return;
                }
            },
        }
    };
    tracing::debug!(code = goodbye.code, reason = %goodbye.reason, "closing client");
    let _ = close.send(goodbye);
    drain(&mut stream).await;
}

/// The close frame for a read error caused by what the client sent (a
/// message too big: 1009, invalid UTF-8: 1007); `Err` for a lost connection.
fn refusal(e: axum::Error) -> Result<CloseFrame, BoxError> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match e.into_inner().downcast::<WsError>() {
        Ok(e) => match *e {
            WsError::Capacity(_) => Ok(close_frame(CloseCode::TooBig, "message too big")),
            WsError::Utf8(_) => Ok(close_frame(CloseCode::InvalidData, "invalid UTF-8")),
            other => Err(other.into()),
        },
        Err(other) => Err(other),
    }
}

/// Reads (and discards) what the client still sends until its close reply,
/// so that closing the socket with unread data does not reset the
/// connection before the client has read our close frame.
async fn drain(stream: &mut SplitStream<WebSocket>) {
    let rest = async {
        while let Some(frame) = stream.next().await {
            match frame {
                Ok(Message::Close(_)) => return,
                Ok(_) => {}
                Err(e) => {
                    if refusal(e).is_err() {
                        return;
                    }
                }
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, rest).await;
}

/// Writes what the hub delivers and a ping every `ping_interval`. A client
/// whose backlog reaches `send_queue` is disconnected (1008): while its
/// socket accepts nothing, it is never waited for (the hub does not block).
struct Writer {
    sink: SplitSink<WebSocket, Message>,
    rx: broadcast::Receiver<Text>,
    close: oneshot::Receiver<CloseFrame>,
    node: CancellationToken,
    send_queue: usize,
    ping_interval: Duration,
}

enum Out {
    Ping,
    Batch,
}

impl Writer {
    async fn run(mut self, session: CancellationToken) {
        let _stop_reader = session.drop_guard();
        let start = tokio::time::Instant::now() + self.ping_interval;
        let mut ping = tokio::time::interval_at(start, self.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Allocated per batch, sized by what is queued: an idle client holds
        // no batch (64 slots kept per client cost 2 KiB each).
        let mut batch: Vec<Text> = Vec::new();
        let goodbye = loop {
            let next = tokio::select! {
                biased;
                _ = self.node.cancelled() => break Some(close_frame(CloseCode::GoingAway, "node shutting down")),
                // Resolved once only: the loop ends with it. Err: the
                // reader ended without a frame to send.
                frame = &mut self.close => break frame.ok(),
                _ = ping.tick() => Out::Ping,
                msg = self.rx.recv() => match msg {
                    Ok(text) => {
                        batch.reserve_exact((self.rx.len() + 1).min(MAX_BATCH));
                        batch.push(text);
                        Out::Batch
                    }
                    Err(RecvError::Lagged(missed)) => break Some(self.too_slow(missed)),
                    Err(RecvError::Closed) => break Some(close_frame(CloseCode::GoingAway, "node shutting down")),
                },
            };
            if let Out::Batch = next {
                // Let the sessions woken together with this one queue their
                // messages first: one flush then carries several (a yield
                // costs far less than a write syscall).
                tokio::task::yield_now().await;
                if let Err(missed) = self.fill(&mut batch) {
                    break Some(self.too_slow(missed));
                }
            }
            let limit = self.send_queue;
            let Writer { sink, rx, node, .. } = &mut self;
            let write = async {
                match next {
                    Out::Ping => sink.send(Message::Ping(Default::default())).await,
                    Out::Batch => {
                        for text in batch.drain(..) {
                            sink.feed(Message::Text(text)).await?;
                        }
                        sink.flush().await
                    }
                }
            };
            // The write is polled first: the watch only starts when the socket is full.
            let full = tokio::select! {
                biased;
                r = write => match r {
                    Ok(()) => rx.len() >= limit,
                    Err(e) => {
                        tracing::debug!(error = %e, "client write error");
                        return;
                    }
                },
                _ = backlog_full(rx, limit) => true,
                _ = node.cancelled() => break Some(close_frame(CloseCode::GoingAway, "node shutting down")),
            };
            if full {
                let missed = self.rx.len() as u64;
                break Some(self.too_slow(missed));
            }
            batch = Vec::new();
        };
        if let Some(frame) = goodbye {
            let _ =
                tokio::time::timeout(CLOSE_TIMEOUT, self.sink.send(Message::Close(Some(frame))))
                    .await;
        }
    }

    /// Takes what else is queued, up to [`MAX_BATCH`]; `Err(missed)` if the client lagged.
    fn fill(&mut self, batch: &mut Vec<Text>) -> Result<(), u64> {
        while batch.len() < MAX_BATCH {
            match self.rx.try_recv() {
                Ok(text) => batch.push(text),
                Err(TryRecvError::Lagged(n)) => return Err(n),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        Ok(())
    }

    fn too_slow(&self, behind: u64) -> CloseFrame {
        tracing::warn!(
            behind,
            send_queue = self.send_queue,
            "client not reading, disconnecting it"
        );
        close_frame(CloseCode::Policy, "too slow: send queue full")
    }
}

/// Resolves once this client's backlog reaches `limit` messages.
async fn backlog_full(rx: &broadcast::Receiver<Text>, limit: usize) {
    while rx.len() < limit {
        tokio::time::sleep(STALL_CHECK).await;
    }
}

fn close_frame(code: CloseCode, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }
}
