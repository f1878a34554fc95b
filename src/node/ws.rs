//! The HTTP side of a chat node: the chat page at `/`, WebSocket sessions on
//! `/ws` and on `/` (when the request asks to upgrade), `/healthz`, 404 else.
//! Sessions only talk to `router::NodeRouter`; they never touch a link directly.
//! The WebSocket handshake is ours (RFC 6455 §4.2): the answer is a 101
//! with the accept key, the session runs on the TCP connection hyper hands
//! over, in a task of its own, with `frame`'s codec.
//! Enforces the node's client limits: origins and connection count at the
//! upgrade, message size (1009), UTF-8 (1007), binary (1003), keepalive,
//! and a bounded backlog per client (1008) so one stalled client costs the
//! others nothing.

use super::router::NodeRouter;
use super::session;
use crate::health::{Health, HealthLink, Messages, OutboxHealth};
use crate::model::Limits;
use crate::serve::ConnState;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{
    CONNECTION, HOST, ORIGIN, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION,
    UPGRADE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use base64::Engine;
use sha1::{Digest, Sha1};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

const PAGE: &str = include_str!("../../www/index.html");

/// RFC 6455 §1.3: appended to the client's key, hashed, it proves the
/// server speaks WebSocket.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

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
async fn root(State(http): State<Http>, request: Request) -> Response {
    if asks_upgrade(request.headers()) {
        accept(http, request)
    } else {
        Html(PAGE).into_response()
    }
}

async fn ws_only(State(http): State<Http>, request: Request) -> Response {
    if !asks_upgrade(request.headers()) {
        return (StatusCode::BAD_REQUEST, "not a WebSocket upgrade\n").into_response();
    }
    accept(http, request)
}

/// `Connection: upgrade` (one token of the list) and `Upgrade: websocket`.
fn asks_upgrade(headers: &HeaderMap) -> bool {
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has_token(CONNECTION, "upgrade") && has_token(UPGRADE, "websocket")
}

/// Checks the version, the key, the origin and the connection limit, then
/// answers 101 and starts the session on the connection hyper hands over.
fn accept(http: Http, mut request: Request) -> Response {
    let headers = request.headers();
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        let version = [(SEC_WEBSOCKET_VERSION, "13")];
        return (
            StatusCode::BAD_REQUEST,
            version,
            "WebSocket version 13 only\n",
        )
            .into_response();
    }
    let key = headers.get(SEC_WEBSOCKET_KEY);
    if !key_valid(key) {
        return (StatusCode::BAD_REQUEST, "invalid Sec-WebSocket-Key\n").into_response();
    }
    let accept = key.map(|k| accept_key(k.as_bytes()));
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
    if let Some(conn) = request.extensions().get::<ConnState>() {
        // Answered 101 below: from now on a WebSocket, not a pending request.
        conn.upgraded();
        // Whoever closes, the peer may still be sending (a message too
        // big, say): read it off before closing.
        conn.drain_on_close();
    }
    let upgrade = Upgrade {
        router: http.router.clone(),
        cancel: http.cancel.clone(),
        limits,
        _slot: slot,
    };
    // Tracked from the request on, so shutdown also waits for upgrades in flight.
    let on_upgrade = hyper::upgrade::on(&mut request);
    http.tracker
        .spawn(upgrade.run(on_upgrade).instrument(http.span.clone()));
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Some(accept) = accept {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// RFC 6455 §4.2.2: base64(SHA-1(key + GUID)).
fn accept_key(key: &[u8]) -> HeaderValue {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(ACCEPT_GUID.as_bytes());
    let encoded = base64::engine::general_purpose::STANDARD.encode(sha1.finalize());
    // Base64 is always a valid header value.
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// What an accepted upgrade carries into its session: no more than it
/// needs, since the session's task keeps it for the connection's life.
struct Upgrade {
    router: Arc<NodeRouter>,
    cancel: CancellationToken,
    /// The limits the connection was accepted under.
    limits: Arc<Limits>,
    /// Held until the session ends.
    _slot: Slot,
}

impl Upgrade {
    /// Not an `async fn`: an async fn's future keeps its arguments twice
    /// (as captured, and as the body's locals). Here they live once.
    #[allow(clippy::manual_async_fn)] // on purpose, see above
    fn run(self, on_upgrade: hyper::upgrade::OnUpgrade) -> impl Future<Output = ()> {
        async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(e) => {
                    tracing::debug!(error = %e, "websocket upgrade failed");
                    return;
                }
            };
            // The TCP connection itself, not hyper's box around it.
            let Ok((mut socket, early)) = crate::serve::upgraded(upgraded) else {
                tracing::warn!("websocket upgrade on a connection of another server");
                return;
            };
            session::run(&mut socket, early, &self.router, &self.cancel, &self.limits).await;
            drop(socket);
            drop(self);
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
