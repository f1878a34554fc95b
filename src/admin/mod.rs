//! The admin server of `topo up` (default 127.0.0.1:7070): what the running
//! topology is, for `topo plan` and for people. A small axum router meant to
//! grow (a live page can be added beside `/api/topology`); it reads the
//! applied state and never changes the running nodes.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
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

/// Shared with the reload loop, which publishes every applied reload.
pub type AppliedState = watch::Receiver<Applied>;

pub fn router(state: AppliedState) -> Router {
    Router::new()
        .route("/api/topology", get(topology))
        .route("/healthz", get(healthz))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state)
}

async fn topology(State(state): State<AppliedState>) -> Response {
    Json(state.borrow().clone()).into_response()
}

async fn healthz(State(state): State<AppliedState>) -> Json<serde_json::Value> {
    let applied = state.borrow();
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

/// Serves until `cancel`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppliedState,
    cancel: CancellationToken,
) {
    let app = router(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "admin server failed");
    }
}

/// `GET /api/topology` of a running `topo up` (what `topo plan` diffs against).
pub async fn fetch(addr: SocketAddr) -> Result<Applied, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("no topo up answers on {addr}: {e}"))?;
        let request =
            format!("GET /api/topology HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
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
    let response = tokio::time::timeout(std::time::Duration::from_secs(5), get)
        .await
        .map_err(|_| format!("{addr}: no answer within 5 s"))??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}: not an HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{addr}: {}", head.lines().next().unwrap_or("")));
    }
    serde_json::from_str(body).map_err(|e| format!("{addr}: not topo's admin server: {e}"))
}
