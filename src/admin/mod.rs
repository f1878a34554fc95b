//! The admin server of `topo up` (default 127.0.0.1:7070): what the running
//! topology is, for `topo plan` (`GET /api/topology`) and for people: the
//! live page at `/` (`www/admin.html`, embedded), its event stream
//! (`GET /api/events`, SSE), `GET /api/view`, and `POST /api/probe`. It reads
//! the applied state and the nodes' `/healthz`; it never changes the nodes.

pub mod live;
pub mod view;

pub use live::{Publisher, Shared};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub const DEFAULT_ADDR: &str = "127.0.0.1:7070";

/// The file the running topology was last (successfully) reloaded from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// The path as given to `topo up`.
    pub file: String,
    /// The file's text as applied (may contain `${VAR}`, never their values).
    pub source: String,
    /// 0 for the first start, then one more per applied reload.
    pub generation: u64,
    /// Nodes that failed to take their new configuration in that reload.
    pub failed: Vec<String>,
}

/// What the router's handlers share.
#[derive(Clone)]
struct AppState {
    shared: watch::Receiver<Shared>,
    feeds: live::Feeds,
    /// One probe at a time: two would see each other's messages.
    probing: Arc<tokio::sync::Mutex<()>>,
    cancel: CancellationToken,
}

const PAGE: &str = include_str!("../../www/admin.html");

fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/topology", get(topology))
        .route("/api/view", get(view))
        .route("/api/events", get(events))
        .route("/api/probe", post(run_probe))
        .route("/healthz", get(healthz))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state)
}

async fn topology(State(state): State<AppState>) -> Response {
    Json(state.shared.borrow().applied.clone()).into_response()
}

/// The data of the newest `topology` event (what the page draws).
async fn view(State(state): State<AppState>) -> Response {
    match state.feeds.topology.borrow().clone() {
        Some(event) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            event.data.to_string(),
        )
            .into_response(),
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn events(State(state): State<AppState>) -> Response {
    let stream = live::stream(&state.feeds, state.cancel.clone());
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `POST /api/probe`: `topo probe` on the applied topology; the report as JSON.
async fn run_probe(State(state): State<AppState>) -> Response {
    let Ok(_probing) = state.probing.try_lock() else {
        return (StatusCode::CONFLICT, "a probe is running").into_response();
    };
    let (valid, generation) = {
        let shared = state.shared.borrow();
        (shared.valid.clone(), shared.applied.generation)
    };
    let report = crate::probe::probe(&valid, crate::probe::ProbeOptions::default()).await;
    let cells: Vec<_> = report
        .cells
        .iter()
        .map(|c| serde_json::json!({"from": c.from, "to": c.to, "predicted": c.predicted, "observed": c.observed}))
        .collect();
    let unreachable: Vec<_> = report
        .unreachable
        .iter()
        .map(|(node, why)| serde_json::json!({"node": node, "error": why}))
        .collect();
    Json(serde_json::json!({
        "generation": generation,
        "agree": report.agrees(),
        "cells": cells,
        "unreachable": unreachable,
    }))
    .into_response()
}

async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    let shared = state.shared.borrow();
    let applied = &shared.applied;
    Json(serde_json::json!({
        "file": applied.file,
        "generation": applied.generation,
        "failed": applied.failed,
    }))
}

/// Binds `addr`; the caller spawns [`serve`] with the listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves the API, the live page and its event stream until `cancel`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: watch::Receiver<Shared>,
    cancel: CancellationToken,
) {
    let (feeds, poller) = live::start(shared.clone(), cancel.clone());
    let app = router(AppState {
        shared,
        feeds,
        probing: Arc::default(),
        cancel: cancel.clone(),
    });
    let server =
        axum::serve(listener, app).with_graceful_shutdown(cancel.clone().cancelled_owned());
    let (served, ()) = tokio::join!(server.into_future(), poller);
    if let Err(e) = served {
        tracing::error!(error = %e, "admin server failed");
    }
}

/// A plain HTTP/1.1 GET (`Connection: close`): the body of a 200 answer.
pub(crate) async fn http_get(
    addr: SocketAddr,
    path: &str,
    limit: std::time::Duration,
) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("nothing answers on {addr}: {e}"))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(response)
    };
    let response = tokio::time::timeout(limit, get)
        .await
        .map_err(|_| format!("{addr}: no answer within {limit:?}"))??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}: not an HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{addr}: {}", head.lines().next().unwrap_or("")));
    }
    Ok(body.to_owned())
}

/// `GET /api/topology` of a running `topo up` (what `topo plan` diffs against).
pub async fn fetch(addr: SocketAddr) -> Result<Applied, String> {
    let body = http_get(addr, "/api/topology", std::time::Duration::from_secs(5))
        .await
        .map_err(|e| e.replace("nothing answers on", "no topo up answers on"))?;
    serde_json::from_str(&body).map_err(|e| format!("{addr}: not topo's admin server: {e}"))
}
