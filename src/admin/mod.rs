//! The admin server of `topo up` (default 127.0.0.1:7070): what the running
//! topology is, for `topo plan` (`GET /api/topology`) and for people: the
//! live page at `/` (`www/admin.html`, embedded), its event stream
//! (`GET /api/events`, SSE), `GET /api/view`, `POST /api/probe`, and
//! `POST /api/fault` (the demo's fault switches, which the runtime applies).
//! Otherwise it only reads: the applied state and the nodes' `/healthz`.
//! Only requests naming its own address, and changes only from its own page
//! ([`guard`]); what it serves never holds a password.

pub mod guard;
pub mod live;
pub mod view;

pub use live::{LiveFeed, Shared};

use crate::fault::{Fault, FaultCommand, FaultError, FaultRequest};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
    /// The page with its token in it.
    page: Arc<str>,
    /// Where fault switches go (`None`: nobody applies them).
    faults: Option<mpsc::Sender<FaultRequest>>,
}

/// The largest `POST /api/fault` body: a node or edge name and an action.
const FAULT_BODY: usize = 4096;
/// How long a fault switch may take (stopping a node takes up to ~2 s).
const FAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

const PAGE: &str = include_str!("../../www/admin.html");
/// Replaced by the token in the served page.
const TOKEN_SLOT: &str = "{{TOPO_TOKEN}}";

fn router(state: AppState, guard: guard::Guard) -> Router {
    Router::new()
        .route(
            "/",
            get(|State(state): State<AppState>| async move { Html(state.page.to_string()) }),
        )
        .route("/api/topology", get(topology))
        .route("/api/view", get(view))
        .route("/api/events", get(events))
        .route("/api/probe", post(run_probe))
        .route(
            "/api/fault",
            post(fault).layer(axum::extract::DefaultBodyLimit::max(FAULT_BODY)),
        )
        .route("/healthz", get(healthz))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(guard, guard::check))
}

/// The applied file, its passwords replaced by `***` (`topo plan` keeps
/// the new file's password for a broker whose URL is otherwise the same).
async fn topology(State(state): State<AppState>) -> Response {
    let mut applied = state.shared.borrow().applied.clone();
    applied.source = redact_source(&applied.source);
    Json(applied).into_response()
}

/// Every literal password of a `redis://` or `rediss://` URL in `text`
/// replaced by `***`; a `${VAR}` password is a name, not a secret, and stays.
pub fn redact_source(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("redis") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let scheme_len = if from.starts_with("rediss://") {
            9
        } else if from.starts_with("redis://") {
            8
        } else {
            out.push_str("redis");
            rest = &from[5..];
            continue;
        };
        out.push_str(&from[..scheme_len]);
        let url = &from[scheme_len..];
        // The authority ends at a path, or where YAML text around it does.
        let end = url
            .find(|c: char| c == '/' || c.is_whitespace() || "\"'#,]}".contains(c))
            .unwrap_or(url.len());
        let authority = &url[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, pass)) if !is_variable(pass) && !pass.is_empty() => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    _ => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &url[end..];
    }
    out.push_str(rest);
    out
}

fn is_variable(text: &str) -> bool {
    text.starts_with("${") && text.ends_with('}') && text[2..].find('}') == Some(text.len() - 3)
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

/// Why a `POST /api/fault` body asks for no switch (400).
#[derive(Debug, thiserror::Error)]
enum BadFault {
    #[error("{action}: which node? (\"node\": NAME)")]
    NoNode { action: String },
    #[error("{action}: which edge? (\"edge\": ID)")]
    NoEdge { action: String },
    #[error("no edge {0:?} that can be cut (a ZeroMQ SUB or a Redis subscription)")]
    NotCuttable(String),
    /// The action as sent, cut to 40 characters.
    #[error(
        "unknown action {0:?} (stop, start, cut, restore, broker-down, broker-up, restore-all)"
    )]
    UnknownAction(String),
}

/// `POST /api/fault`: `{"action": "stop"|"start", "node": N}`,
/// `{"action": "cut"|"restore", "edge": ID}` (a ZeroMQ SUB or Redis
/// subscription edge of the view), `{"action": "broker-down"|"broker-up",
/// "node": N}`, or `{"action": "restore-all"}`. Answers the switches on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultBody {
    action: String,
    node: Option<String>,
    edge: Option<String>,
}

async fn fault(
    State(state): State<AppState>,
    body: Result<Json<FaultBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let refuse = |status: StatusCode, why: String| (status, why).into_response();
    let Json(body) = match body {
        Ok(body) => body,
        Err(e) => return refuse(e.status(), e.body_text()),
    };
    let Some(sender) = state.faults.clone() else {
        return refuse(
            StatusCode::NOT_IMPLEMENTED,
            "no runtime takes fault switches here".into(),
        );
    };
    let node = || {
        body.node.clone().ok_or_else(|| BadFault::NoNode {
            action: body.action.clone(),
        })
    };
    let edge = || {
        let id = body.edge.as_deref().ok_or_else(|| BadFault::NoEdge {
            action: body.action.clone(),
        })?;
        let view = state.feeds.view();
        view.as_ref()
            .and_then(|v| v.fault_of(id))
            .ok_or_else(|| BadFault::NotCuttable(id.to_owned()))
    };
    let command = match body.action.as_str() {
        "stop" | "start" => node().map(|node| FaultCommand::Set {
            fault: Fault::NodeStopped { node },
            on: body.action == "stop",
        }),
        "broker-down" | "broker-up" => node().map(|node| FaultCommand::Set {
            fault: Fault::BrokerDown { node },
            on: body.action == "broker-down",
        }),
        "cut" | "restore" => edge().map(|fault| FaultCommand::Set {
            fault,
            on: body.action == "cut",
        }),
        "restore-all" => Ok(FaultCommand::RestoreAll),
        other => Err(BadFault::UnknownAction(other.chars().take(40).collect())),
    };
    let command = match command {
        Ok(c) => c,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, why.to_string()),
    };
    let (reply, answer) = oneshot::channel();
    if sender.try_send(FaultRequest { command, reply }).is_err() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy: other switches are waiting".into(),
        );
    }
    match tokio::time::timeout(FAULT_TIMEOUT, answer).await {
        Ok(Ok(Ok(active))) => {
            let list: Vec<_> = active.iter().map(|f| f.to_string()).collect();
            Json(serde_json::json!({"faults": active, "text": list})).into_response()
        }
        Ok(Ok(Err(e @ FaultError::ProcessMode))) => {
            refuse(StatusCode::NOT_IMPLEMENTED, e.to_string())
        }
        Ok(Ok(Err(e))) => refuse(StatusCode::CONFLICT, e.to_string()),
        Ok(Err(_)) => refuse(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into()),
        Err(_) => refuse(
            StatusCode::GATEWAY_TIMEOUT,
            format!("no answer within {FAULT_TIMEOUT:?}"),
        ),
    }
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

/// The admin server's address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error(
    "admin server: cannot bind {addr}: {source} (use --admin ADDR for another address, or --no-admin)"
)]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Binds `addr`; the caller spawns [`serve`] with the listener. Anything
/// but loopback exposes the topology and the probe to the network: logged
/// here, and the caller tells its user (`reload::UpEvent::AdminExposed`).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, BindError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })?;
    if !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "the admin server is reachable from other machines: anyone who can reach {addr} sees the topology and can run probes; bind 127.0.0.1 unless that is what you want"
        );
    }
    Ok(listener)
}

/// Serves the API, the live page and its event stream until `cancel`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: watch::Receiver<Shared>,
    faults: Option<mpsc::Sender<FaultRequest>>,
    cancel: CancellationToken,
) {
    let bound = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let guard = guard::Guard::new(bound);
    let (feeds, poller) = live::start(shared.clone(), cancel.clone());
    let app = router(
        AppState {
            shared,
            feeds,
            probing: Arc::default(),
            cancel: cancel.clone(),
            page: PAGE.replace(TOKEN_SLOT, &guard.token).into(),
            faults,
        },
        guard,
    );
    let connections = TaskTracker::new();
    let server = crate::serve::serve(
        listener,
        app,
        crate::serve::Options::default(),
        cancel.clone(),
        connections.clone(),
    );
    tokio::join!(server, poller);
    connections.close();
    connections.wait().await;
}

/// How large `/healthz` of a node may be: a few links' worth of JSON.
pub(crate) const HEALTH_MAX_BYTES: usize = 1 << 20;

/// How large an answer to `/api/topology` may be (headers and body): a
/// peer that is not topo could answer without end.
pub const MAX_REPLY: usize = 8 << 20;

/// Why `topo plan` could not learn what the running `topo up` applied.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no topo up answers on {addr}: {error}")]
    NoAnswer {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error(transparent)]
    Get(crate::http_get::GetError),
    #[error("{addr}: answer larger than {} MiB, not topo's admin server", max >> 20)]
    TooLarge { addr: SocketAddr, max: usize },
    #[error("{addr}: not topo's admin server: {error}")]
    NotAdmin {
        addr: SocketAddr,
        error: serde_json::Error,
    },
}

/// `GET /api/topology` of a running `topo up` (what `topo plan` diffs against).
pub async fn fetch(addr: SocketAddr) -> Result<Applied, FetchError> {
    use crate::http_get::{GetError, get};
    let limit = std::time::Duration::from_secs(5);
    let body = get(addr, "/api/topology", limit, MAX_REPLY)
        .await
        .map_err(|e| match e {
            GetError::Connect { error, .. } => FetchError::NoAnswer { addr, error },
            GetError::TooLarge { max, .. } => FetchError::TooLarge { addr, max },
            other => FetchError::Get(other),
        })?;
    serde_json::from_str(&body).map_err(|error| FetchError::NotAdmin { addr, error })
}

#[cfg(test)]
mod tests {
    use super::redact_source;

    #[test]
    fn passwords_in_urls_are_redacted_variables_stay() {
        let text = "a: { url: \"redis://alice:p@ss@h:1/2\" }\nb: rediss://:s3cret@h\n\
                    c: redis://${USER}:${PASS}@h\nd: redis://bob@h redis://h:1 redisx";
        let out = redact_source(text);
        assert_eq!(
            out,
            "a: { url: \"redis://alice:***@h:1/2\" }\nb: rediss://:***@h\n\
             c: redis://${USER}:${PASS}@h\nd: redis://bob@h redis://h:1 redisx"
        );
    }
}
