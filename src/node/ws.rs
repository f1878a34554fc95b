//! The HTTP side of a chat node: the chat page at `/`, WebSocket sessions on
//! `/ws` and on `/` (when the request asks to upgrade), `/healthz`, 404 else.
//! Sessions only talk to `router::NodeRouter`; they never touch a link directly.
//! Enforces the node's client limits: origins and connection count at the
//! upgrade, message size (1009), UTF-8 (1007), binary (1003), keepalive,
//! and a bounded backlog per client (1008) so one stalled client costs the
//! others nothing.

use super::router::NodeRouter;
use super::session;
use crate::health::{Health, HealthLink, Messages, OutboxHealth};
use crate::model::Limits;
use crate::serve::ConnState;
use axum::Extension;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::http::header::{HOST, ORIGIN, SEC_WEBSOCKET_KEY};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::watch;
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
            let span = upgrade.http.span.clone();
            upgrade.run(socket).instrument(span)
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
    /// Not an `async fn`: an async fn's future keeps its arguments twice
    /// (as captured, and as the body's locals), and the socket is about
    /// 370 bytes. Here it lives once, captured, and the session borrows it.
    #[allow(clippy::manual_async_fn)] // on purpose, see above
    fn run(self: Box<Self>, mut socket: WebSocket) -> impl Future<Output = ()> {
        async move {
            if let Some(Extension(conn)) = &self.conn {
                conn.upgraded();
                // Whoever closes, the peer may still be sending (a message
                // too big, say): read it off before closing.
                conn.drain_on_close();
            }
            let http = &self.http;
            session::run(&mut socket, &http.router, &http.cancel, &self.limits).await;
            drop(socket);
            let Upgrade { slot, tracked, .. } = *self;
            drop(slot);
            drop(tracked);
        }
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
                rejected: match l.kind {
                    LinkKind::ZmqPub | LinkKind::ZmqSub => Some(l.zmtp.rejected()),
                    LinkKind::Amqp => Some(l.rejected()),
                    LinkKind::Redis | LinkKind::Nats => None,
                },
                dropped: match l.kind {
                    LinkKind::ZmqPub | LinkKind::ZmqSub => Some(l.zmtp.dropped()),
                    LinkKind::Amqp => Some(l.dropped.load(std::sync::atomic::Ordering::Relaxed)),
                    LinkKind::Redis | LinkKind::Nats => None,
                },
                via: per_filter.then(|| l.received_via().into_iter().collect()),
                queue_depth: (l.kind == LinkKind::Amqp && depth != u64::MAX).then_some(depth),
                unconfirmed: (l.kind == LinkKind::Amqp)
                    .then(|| l.unconfirmed.load(std::sync::atomic::Ordering::Relaxed)),
                repeated: (l.kind == LinkKind::Amqp)
                    .then(|| l.repeated.load(std::sync::atomic::Ordering::Relaxed)),
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
