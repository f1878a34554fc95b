//! One chat node: binds its listeners, connects its links, and runs its tasks
//! under its own cancellation token and task tracker, in a `node=<name>` span.
//! It trusts the `Topology` it is given and never decides which nodes run.

pub mod relay;
pub mod wiring;
pub mod ws;

use crate::model::{Limits, Wiring};
use crate::transport::{Counters, Inbox, LinkKind, LinkStatus};
use relay::Core;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use wiring::{Env, Wired};

/// Messages from links waiting for the node's router; when full, the links
/// wait (a ZeroMQ PUB then drops for us, Redis pushes are dropped and counted).
const INBOX: usize = 1024;

/// Why a node could not start. Names the node and the address, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("node {node}: cannot bind {what} {addr}: {reason}")]
    Bind {
        node: String,
        what: &'static str,
        addr: SocketAddr,
        reason: String,
    },
    #[error("node {node}: cannot reach redis {broker}: {reason}")]
    Redis {
        node: String,
        /// The redacted URL (`RedisUrl`'s Display).
        broker: String,
        reason: String,
    },
}

/// A running node.
pub struct NodeHandle {
    pub name: String,
    /// Where its HTTP server listens, if it has one.
    pub http: Option<SocketAddr>,
    pub core: Arc<Core>,
    links: Links,
    wired: tokio::sync::Mutex<Wired>,
    /// The client limits its HTTP server applies to new connections.
    limits: watch::Sender<Arc<Limits>>,
    /// Kept for links that a reload adds; the router ends on cancel.
    inbox: Inbox,
    tasks: Tasks,
}

/// The statuses of a node's links, shared with `/healthz`; replaced by a reload.
pub type Links = Arc<RwLock<Vec<Arc<LinkStatus>>>>;

impl NodeHandle {
    /// The node's links now (a snapshot).
    pub fn links(&self) -> Vec<Arc<LinkStatus>> {
        self.links.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What the node runs now.
    pub async fn wiring(&self) -> Wiring {
        self.wired.lock().await.wiring.clone()
    }

    /// Resolves once every ZeroMQ SUB of this node is connected and has sent
    /// its subscription (see `Running::wait_links_up` for what that guarantees).
    pub async fn wait_links_up(&self) {
        for link in self.links().iter().filter(|l| l.kind == LinkKind::ZmqSub) {
            link.wait_up().await;
        }
    }

    /// Rewires the node's links in place to `new` (hot reload) and applies
    /// its limits: the outbox at once, the client limits to connections
    /// accepted from now on. Its HTTP server and clients stay. A new
    /// `limits.send_queue` needs a restart (see `diff`) and is ignored here.
    /// On an error nothing changed.
    pub async fn rewire(&self, new: &Wiring, generation: u64) -> Result<(), StartError> {
        let mut wired = self.wired.lock().await;
        let env = Env {
            core: &self.core,
            inbox: &self.inbox,
            tasks: &self.tasks,
        };
        let applied = wired
            .apply(new, &env)
            .instrument(self.tasks.span.clone())
            .await;
        *self.links.write().unwrap_or_else(|e| e.into_inner()) = wired.statuses();
        if applied.is_ok() {
            // What runs now (its send_queue unchanged).
            let now = &wired.wiring.limits;
            self.limits.send_if_modified(|l| {
                let changed = **l != *now;
                if changed {
                    *l = Arc::new(now.clone());
                }
                changed
            });
            self.core.set_generation(generation);
        }
        applied
    }

    /// Stops every task of the node: clients get a 1001 close frame, sockets close.
    pub async fn stop(&self) {
        self.tasks.cancel.cancel();
        self.tasks.tracker.close();
        self.tasks.tracker.wait().await;
    }
}

/// Starts the node `wiring` describes. Nothing keeps running when this
/// fails: listeners and connections are made first, tasks spawned after.
pub async fn start(
    wiring: &Wiring,
    parent: &CancellationToken,
    generation: u64,
) -> Result<NodeHandle, StartError> {
    let span = tracing::info_span!("node", node = %wiring.name);
    let tasks = Tasks {
        cancel: parent.child_token(),
        tracker: TaskTracker::new(),
        span: span.clone(),
    };
    start_with(wiring, tasks, generation).instrument(span).await
}

async fn start_with(
    wiring: &Wiring,
    tasks: Tasks,
    generation: u64,
) -> Result<NodeHandle, StartError> {
    let http = match wiring.http {
        Some(addr) => {
            Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| StartError::Bind {
                        node: wiring.name.clone(),
                        what: "http",
                        addr,
                        reason: io_reason(&e),
                    })?,
            )
        }
        None => None,
    };
    let counters = Arc::new(Counters::default());
    let core = Core::new(
        wiring.name.clone(),
        generation,
        wiring.relay,
        counters,
        Vec::new(),
    )
    .with_backlog(wiring.limits.send_queue);
    let core = Arc::new(core);
    let (inbox, inbox_rx) = mpsc::channel(INBOX);
    let mut wired = Wired::empty(wiring);
    let env = Env {
        core: &core,
        inbox: &inbox,
        tasks: &tasks,
    };
    if let Err(e) = wired.apply(wiring, &env).await {
        // Only link tasks of a partial start could exist: none does, but be sure.
        tasks.cancel.cancel();
        return Err(e);
    }
    // Everything is bound and connected: from here on nothing can fail.
    let links: Links = Arc::new(RwLock::new(wired.statuses()));
    tasks.spawn(relay::route(core.clone(), inbox_rx, tasks.cancel.clone()));
    let limits = watch::Sender::new(Arc::new(wiring.limits.clone()));
    let mut http_addr = None;
    if let Some(listener) = http {
        http_addr = listener.local_addr().ok();
        let http = ws::Http {
            core: core.clone(),
            links: links.clone(),
            cancel: tasks.cancel.clone(),
            tracker: tasks.tracker.clone(),
            span: tasks.span.clone(),
            limits: limits.subscribe(),
            connections: Arc::default(),
        };
        tasks.spawn(serve_http(listener, http));
    }
    if let Some(addr) = http_addr {
        warn_if_every_interface("http", addr);
    }
    tracing::info!(http = ?http_addr, links = wired.statuses().len(), generation, "node ready");
    Ok(NodeHandle {
        name: wiring.name.clone(),
        http: http_addr,
        core,
        links,
        wired: tokio::sync::Mutex::new(wired),
        limits,
        inbox,
        tasks,
    })
}

/// Where a node's tasks run: its token, its tracker, its span.
pub struct Tasks {
    cancel: CancellationToken,
    tracker: TaskTracker,
    span: tracing::Span,
}

impl Tasks {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(task.instrument(self.span.clone()));
    }
}

/// The HTTP server; on cancel it stops accepting and lets sessions close.
async fn serve_http(listener: tokio::net::TcpListener, http: ws::Http) {
    let shutdown = http.cancel.clone().cancelled_owned();
    let app = ws::router(http);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "http server failed");
    }
}

/// Binding 0.0.0.0 (or `::`) exposes the node to other machines: say so.
fn warn_if_every_interface(what: &'static str, addr: SocketAddr) {
    if addr.ip().is_unspecified() {
        tracing::warn!(what, %addr, "binding every interface: reachable from other machines");
    }
}

/// "address in use" rather than the OS's longer wording for the common case.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => "address in use".into(),
        std::io::ErrorKind::AddrNotAvailable => "address not available".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}
