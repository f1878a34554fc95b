//! The HTTP side of a chat node: the chat page at `/`, WebSocket sessions on
//! `/ws` and on `/` (when the request asks to upgrade), `/healthz`, 404 else.
//! Sessions only talk to `relay::Core`; they never touch a link directly.

use super::relay::Core;
use crate::transport::Text;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

const PAGE: &str = include_str!("../../www/index.html");

/// Socket buffers per connection: tungstenite's 128 KiB defaults cost about
/// 135 KiB per client (CRATES.md §5). The write buffer still lets one flush
/// carry several queued messages.
const READ_BUFFER: usize = 4096;
const WRITE_BUFFER: usize = 4096;
/// Messages written per flush at most, so one busy client flushes regularly.
const MAX_BATCH: usize = 64;
/// A close frame to a client that stopped reading is abandoned after this.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);

const GOING_AWAY: u16 = 1001;
const UNSUPPORTED: u16 = 1003;
const POLICY: u16 = 1008;

#[derive(Clone)]
pub struct Http {
    pub core: Arc<Core>,
    pub links: super::Links,
    /// The node's token: cancelled, every session says goodbye (1001).
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    /// The node's span: axum runs handlers in its own tasks, outside of it.
    pub span: tracing::Span,
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
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(ws) => accept(http, ws),
        Err(_) => Html(PAGE).into_response(),
    }
}

async fn ws_only(State(http): State<Http>, ws: WebSocketUpgrade) -> Response {
    accept(http, ws)
}

fn accept(http: Http, ws: WebSocketUpgrade) -> Response {
    // Tracked from the request on, so shutdown also waits for upgrades in flight.
    let tracked = http.tracker.token();
    let span = http.span.clone();
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| {
            async move {
                session(socket, http).await;
                drop(tracked);
            }
            .instrument(span)
        })
}

/// `/healthz`: see [`crate::transport::Counters`] for what `messages` counts
/// and [`crate::transport::LinkStatus`] for the per-link `sent`/`received`/`via`.
async fn healthz(State(http): State<Http>) -> Json<serde_json::Value> {
    let links: Vec<_> = http
        .links
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|l| {
            let key = match l.kind {
                crate::transport::LinkKind::Redis => "broker",
                _ => "endpoint",
            };
            let mut link = serde_json::json!({
                "kind": l.kind.as_str(),
                key: l.address,
                "state": l.state().to_string(),
                "sent": l.sent(),
                "received": l.received(),
            });
            if l.kind == crate::transport::LinkKind::Redis {
                link["via"] = l.received_via().into_iter().collect();
            }
            link
        })
        .collect();
    let core = &http.core;
    Json(serde_json::json!({
        "node": core.name,
        "generation": core.generation(),
        "clients": core.hub.clients(),
        "links": links,
        "messages": {"in": core.counters.incoming(), "out": core.counters.outgoing()},
    }))
}

/// One client: this task reads, a writer task (tracked by the node) writes.
async fn session(socket: WebSocket, http: Http) {
    if http.cancel.is_cancelled() {
        return;
    }
    let (rx, _guard) = http.core.hub.join();
    tracing::debug!(clients = http.core.hub.clients(), "client connected");
    let (sink, stream) = socket.split();
    // Cancelled by the writer when it stops, so the reader stops too.
    let session = http.cancel.child_token();
    // Reader -> writer: close with this frame. One slot: the reader sends at most one.
    let (close_tx, close_rx) = mpsc::channel(1);
    let writer = writer(sink, rx, close_rx, http.cancel.clone(), session.clone());
    let writer = http.tracker.spawn(writer.in_current_span());
    reader(stream, &http.core, close_tx, session).await;
    let _ = writer.await;
    tracing::debug!("client disconnected");
}

async fn reader(
    mut stream: SplitStream<WebSocket>,
    core: &Core,
    close: mpsc::Sender<CloseFrame>,
    session: CancellationToken,
) {
    loop {
        let frame = tokio::select! {
            _ = session.cancelled() => return,
            frame = stream.next() => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => core.from_client(text),
            Some(Ok(Message::Binary(_))) => {
                let frame = close_frame(UNSUPPORTED, "binary frames are not supported");
                let _ = close.send(frame).await;
                return;
            }
            Some(Ok(Message::Close(_))) | None => return,
            Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
            Some(Err(e)) => {
                tracing::debug!(error = %e, "client read error");
                return;
            }
        }
    }
}

/// Sends everything queued for this client, then flushes once: one write
/// syscall carries many messages under load.
async fn writer(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: broadcast::Receiver<Text>,
    mut close: mpsc::Receiver<CloseFrame>,
    node: CancellationToken,
    session: CancellationToken,
) {
    let _stop_reader = session.drop_guard();
    let goodbye = loop {
        let first = tokio::select! {
            biased;
            _ = node.cancelled() => break Some(close_frame(GOING_AWAY, "node shutting down")),
            frame = close.recv() => break frame,
            msg = rx.recv() => msg,
        };
        let batch = tokio::select! {
            _ = node.cancelled() => break Some(close_frame(GOING_AWAY, "node shutting down")),
            r = write_batch(&mut sink, &mut rx, first) => match r {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::debug!(error = %e, "client write error");
                    return;
                }
            },
        };
        match batch {
            Batch::Sent => {}
            Batch::Lagged(missed) => {
                tracing::warn!(missed, "client too slow, disconnecting it");
                break Some(close_frame(POLICY, "too slow: messages were lost"));
            }
            Batch::Closed => break Some(close_frame(GOING_AWAY, "node shutting down")),
        }
    };
    if let Some(frame) = goodbye {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
    }
}

enum Batch {
    Sent,
    /// The client fell this many messages behind.
    Lagged(u64),
    /// The hub is gone: the node is being torn down.
    Closed,
}

/// Writes `first` and whatever else is queued (up to [`MAX_BATCH`]), then flushes.
async fn write_batch(
    sink: &mut SplitSink<WebSocket, Message>,
    rx: &mut broadcast::Receiver<Text>,
    first: Result<Text, broadcast::error::RecvError>,
) -> Result<Batch, axum::Error> {
    use broadcast::error::{RecvError, TryRecvError};
    match first {
        Ok(text) => sink.feed(Message::Text(text)).await?,
        Err(RecvError::Lagged(n)) => return Ok(Batch::Lagged(n)),
        Err(RecvError::Closed) => return Ok(Batch::Closed),
    }
    let mut outcome = Batch::Sent;
    for _ in 1..MAX_BATCH {
        match rx.try_recv() {
            Ok(text) => sink.feed(Message::Text(text)).await?,
            Err(TryRecvError::Lagged(n)) => {
                outcome = Batch::Lagged(n);
                break;
            }
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    sink.flush().await?;
    Ok(outcome)
}

fn close_frame(code: u16, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: reason.into(),
    }
}
