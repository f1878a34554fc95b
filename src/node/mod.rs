//! One chat node: binds its listeners, connects its links, and runs its tasks
//! under its own cancellation token and task tracker, in a `node=<name>` span.
//! It trusts the `Topology` it is given and never decides which nodes run.

pub mod close;
pub mod frame;
pub mod router;
mod session;
pub mod wiring;
pub mod ws;

use crate::diff::{Change, NodeDelta};
use crate::model::{Limits, Wiring};
use crate::transport::{Counters, Inbox, LinkKind, LinkStatus};
use router::NodeRouter;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use wiring::{Env, Prepared, Wired};

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
        /// Not a `source`: the message already shows it, once.
        reason: crate::transport::redis::LinkError,
    },
    #[error("node {node}: cannot set up amqp {broker}: {reason}")]
    Amqp {
        node: String,
        /// The redacted URL (`AmqpUrl`'s Display).
        broker: String,
        reason: crate::transport::amqp::LinkError,
    },
    #[error("node {node}: cannot reach nats {broker}: {reason}")]
    Nats {
        node: String,
        /// The redacted URL (`NatsUrl`'s Display).
        broker: String,
        reason: crate::transport::nats::LinkError,
    },
    /// A change computed from another wiring than the node runs: applying
    /// its delta would not lead to its new wiring, so nothing is done.
    #[error("node {node}: runs another wiring than the change was computed from")]
    Stale { node: String },
}

/// A running node.
pub struct NodeHandle {
    pub name: String,
    /// Where its HTTP server listens, if it has one.
    pub http: Option<SocketAddr>,
    pub router: Arc<NodeRouter>,
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

    /// Rewires the node's links in place to `change.new` (a hot reload, a
    /// fault switch) as `change.delta` says, and applies its limits: the
    /// outbox at once, the client limits to connections accepted from now
    /// on. Its HTTP server and clients stay: a delta that asks for a restart
    /// is the controller's to apply; here its new address and
    /// `limits.send_queue` are ignored. On an error nothing changed.
    pub async fn rewire(&self, change: &Change, generation: u64) -> Result<(), StartError> {
        let mut wired = self.wired.lock().await;
        if wired.wiring != change.old {
            return Err(StartError::Stale {
                node: self.name.clone(),
            });
        }
        let env = Env {
            router: &self.router,
            inbox: &self.inbox,
            tasks: &self.tasks,
        };
        let applied = wired
            .apply(&change.delta.links, &change.new, &env)
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
            self.router.set_generation(generation);
        }
        applied
    }

    /// Holds the node's broker links (Redis, NATS, AMQP) down (`true`) or lets
    /// them come back: a fault switch of the admin page. `None` when it has
    /// no broker link, else whether the switch moved.
    pub async fn sever_brokers(&self, on: bool) -> Option<bool> {
        self.wired.lock().await.sever_brokers(on).await
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
    Ok(bind(wiring).await?.launch(parent, generation))
}

/// Nodes bound at once by [`start_many`]: a node's binding is mostly round
/// trips to its Redis server, so a thousand Redis nodes bound one after the
/// other wait a thousand times in a row.
const BIND_AT_ONCE: usize = 32;

/// Starts several nodes: every listener and connection of every node is
/// made first, then all are launched, so no SUB dials a PUB that is bound a
/// moment later (a SUB dials again only after 100 ms).
/// Nothing runs when one fails; the error is that of the first failing node
/// in file order, as if they had been bound one by one.
pub async fn start_many(
    wirings: &[Wiring],
    parent: &CancellationToken,
    generation: u64,
) -> Result<Vec<NodeHandle>, StartError> {
    use futures_util::{StreamExt, TryStreamExt};
    let bound: Vec<Bound> = futures_util::stream::iter(wirings)
        .map(bind)
        .buffered(BIND_AT_ONCE)
        .try_collect()
        .await?;
    let handles = bound
        .into_iter()
        .map(|b| b.launch(parent, generation))
        .collect();
    Ok(handles)
}

/// A node whose listeners are bound and whose connections are made, none
/// of its tasks running yet. Dropped instead of launched, it closes them.
pub struct Bound {
    wiring: Wiring,
    /// From [`Wired::empty`] to `wiring`: what `prepared` made and `launch` commits.
    delta: NodeDelta,
    span: tracing::Span,
    http: Option<tokio::net::TcpListener>,
    wired: Wired,
    prepared: Prepared,
}

/// The fallible half of starting the node `wiring` describes: binds its
/// HTTP listener and its PUB, connects to its Redis server.
pub async fn bind(wiring: &Wiring) -> Result<Bound, StartError> {
    let span = tracing::info_span!("node", node = %wiring.name);
    let http = match wiring.http {
        Some(addr) => Some(bind_http(&wiring.name, addr).await?),
        None => None,
    };
    let wired = Wired::empty(wiring);
    let delta = NodeDelta::between(&wired.wiring, wiring);
    let prepared = wired
        .prepare(&delta.links, wiring)
        .instrument(span.clone())
        .await?;
    Ok(Bound {
        wiring: wiring.clone(),
        delta,
        span,
        http,
        wired,
        prepared,
    })
}

async fn bind_http(node: &str, addr: SocketAddr) -> Result<tokio::net::TcpListener, StartError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::Bind {
            node: node.to_owned(),
            what: "http",
            addr,
            reason: io_reason(&e),
        })
}

impl Bound {
    pub fn name(&self) -> &str {
        &self.wiring.name
    }

    /// Spawns the node's tasks under a child of `parent`; nothing can fail.
    pub fn launch(self, parent: &CancellationToken, generation: u64) -> NodeHandle {
        let Bound {
            wiring,
            delta,
            span,
            http,
            mut wired,
            prepared,
        } = self;
        let _entered = span.enter();
        let tasks = Tasks {
            cancel: parent.child_token(),
            tracker: TaskTracker::new(),
            span: span.clone(),
        };
        let counters = Arc::new(Counters::default());
        let router = NodeRouter::new(
            wiring.name.clone(),
            generation,
            wiring.relay,
            counters,
            Vec::new(),
        )
        .with_backlog(wiring.limits.send_queue);
        let router = Arc::new(router);
        let (inbox, inbox_rx) = mpsc::channel(INBOX);
        let env = Env {
            router: &router,
            inbox: &inbox,
            tasks: &tasks,
        };
        wired.commit(prepared, &delta.links, &wiring, &env);
        let links: Links = Arc::new(RwLock::new(wired.statuses()));
        tasks.spawn(router::route(
            router.clone(),
            inbox_rx,
            tasks.cancel.clone(),
        ));
        let limits = watch::Sender::new(Arc::new(wiring.limits.clone()));
        let mut http_addr = None;
        if let Some(listener) = http {
            http_addr = listener.local_addr().ok();
            let http = ws::Http {
                router: router.clone(),
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
        NodeHandle {
            name: wiring.name.clone(),
            http: http_addr,
            router,
            links,
            wired: tokio::sync::Mutex::new(wired),
            limits,
            inbox,
            tasks,
        }
    }
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
    let cancel = http.cancel.clone();
    let tracker = http.tracker.clone();
    let app = ws::router(http);
    // Writers already coalesce queued frames into one flush; Nagle would
    // only hold the next flush back until the client's delayed ACK (~40 ms).
    let options = crate::serve::Options {
        nodelay: true,
        ..Default::default()
    };
    crate::serve::serve(listener, app, options, cancel, tracker).await;
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
