//! One chat node: binds its listeners, connects its links, and runs its tasks
//! under its own cancellation token and task tracker, in a `node=<name>` span.
//! It trusts the `Topology` it is given and never decides which nodes run.

pub mod relay;
pub mod ws;

use crate::model::{NodeId, RedisLink, RedisUrl, Topology, ZmqPublish};
use crate::transport::{self, Counters, LinkKind, LinkState, LinkStatus, Outbound};
use relay::Core;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

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
    pub id: NodeId,
    pub name: String,
    /// Where its HTTP server listens, if it has one.
    pub http: Option<SocketAddr>,
    pub links: Arc<Vec<Arc<LinkStatus>>>,
    pub core: Arc<Core>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl NodeHandle {
    /// Resolves once every ZeroMQ SUB of this node is connected and has sent
    /// its subscription (see `Running::wait_links_up` for what that guarantees).
    pub async fn wait_links_up(&self) {
        for link in self.links.iter().filter(|l| l.kind == LinkKind::ZmqSub) {
            link.wait_up().await;
        }
    }

    /// Stops every task of the node: clients get a 1001 close frame, sockets close.
    pub async fn stop(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Starts node `id`. Nothing keeps running when this fails: listeners and
/// connections are made first, and tasks are spawned only once all succeeded.
pub async fn start(
    topology: &Topology,
    id: NodeId,
    parent: &CancellationToken,
    generation: u64,
) -> Result<NodeHandle, StartError> {
    let span = tracing::info_span!("node", node = %topology.node(id).name);
    start_in_span(topology, id, parent, generation, span.clone())
        .instrument(span)
        .await
}

async fn start_in_span(
    topology: &Topology,
    id: NodeId,
    parent: &CancellationToken,
    generation: u64,
    span: tracing::Span,
) -> Result<NodeHandle, StartError> {
    let bound = bind(topology, id).await?;
    // Everything is bound and connected: from here on nothing can fail.
    let tasks = Tasks {
        cancel: parent.child_token(),
        tracker: TaskTracker::new(),
        span,
    };
    Ok(launch(topology, id, bound, tasks, generation))
}

/// Starts several nodes: every listener of every node is bound first, then
/// all are launched, so no SUB dials a PUB that is bound a moment later
/// (zeromq retries such a connect only after 50 ms or more). Nothing runs
/// when one fails.
pub async fn start_many(
    topology: &Topology,
    ids: &[NodeId],
    parent: &CancellationToken,
    generation: u64,
) -> Result<Vec<NodeHandle>, StartError> {
    let mut bound = Vec::with_capacity(ids.len());
    for &id in ids {
        let span = tracing::info_span!("node", node = %topology.node(id).name);
        let b = bind(topology, id).instrument(span.clone()).await?;
        bound.push((id, b, span));
    }
    let handles = bound
        .into_iter()
        .map(|(id, b, span)| {
            let _entered = span.enter();
            let tasks = Tasks {
                cancel: parent.child_token(),
                tracker: TaskTracker::new(),
                span: span.clone(),
            };
            launch(topology, id, b, tasks, generation)
        })
        .collect();
    Ok(handles)
}

/// What a node holds before its tasks run: listeners and connections.
struct Bound<'t> {
    http: Option<tokio::net::TcpListener>,
    publish: Option<(&'t ZmqPublish, transport::zmq::BoundPub)>,
    redis: Option<(&'t RedisLink, &'t RedisUrl, transport::redis::Connected)>,
}

async fn bind(topology: &Topology, id: NodeId) -> Result<Bound<'_>, StartError> {
    let node = topology.node(id);
    let bind_error = |what, addr, reason: String| StartError::Bind {
        node: node.name.clone(),
        what,
        addr,
        reason,
    };
    let http = match node.http {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| bind_error("http", addr, io_reason(&e)))?,
        ),
        None => None,
    };
    let publish = match node.zmq.as_ref().and_then(|z| z.publish.as_ref()) {
        Some(p) => {
            // Bound here so that a taken port is a plain io::Error.
            let listener = std::net::TcpListener::bind(p.bind)
                .map_err(|e| bind_error("zmq pub", p.bind, io_reason(&e)))?;
            let bound = transport::zmq::bind_pub(listener)
                .await
                .map_err(|e| bind_error("zmq pub", p.bind, e.to_string()))?;
            Some((p, bound))
        }
        None => None,
    };
    let redis = match &node.redis {
        Some(link) => {
            let url = &topology.broker(link.broker).url;
            let connected = transport::redis::connect(link, url)
                .await
                .map_err(|reason| StartError::Redis {
                    node: node.name.clone(),
                    broker: url.to_string(),
                    reason,
                })?;
            Some((link, url, connected))
        }
        None => None,
    };
    Ok(Bound {
        http,
        publish,
        redis,
    })
}

/// Where a node's tasks run: its token, its tracker, its span.
struct Tasks {
    cancel: CancellationToken,
    tracker: TaskTracker,
    span: tracing::Span,
}

impl Tasks {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(task.instrument(self.span.clone()));
    }
}

fn launch(
    topology: &Topology,
    id: NodeId,
    bound: Bound<'_>,
    tasks: Tasks,
    generation: u64,
) -> NodeHandle {
    let node = topology.node(id);
    let counters = Arc::new(Counters::default());
    let (inbox, inbox_rx) = mpsc::channel(INBOX);
    let mut links = Vec::new();
    let mut outbound: Vec<Box<dyn Outbound>> = Vec::new();
    if let Some((p, socket)) = bound.publish {
        let address = format!("tcp://{}", p.bind);
        links.push(Arc::new(LinkStatus::new(
            LinkKind::ZmqPub,
            address,
            LinkState::Up,
        )));
        let (handle, task) = socket.run(p.topic.clone(), counters.clone(), tasks.cancel.clone());
        tasks.spawn(task);
        outbound.push(Box::new(handle));
    }
    for sub in node.zmq.iter().flat_map(|z| &z.subscribe) {
        let endpoint = sub.endpoint.to_string();
        let status = LinkStatus::new(LinkKind::ZmqSub, endpoint.clone(), LinkState::Connecting);
        let status = Arc::new(status);
        links.push(status.clone());
        let filter = node
            .zmq
            .as_ref()
            .map(|z| z.filter.clone())
            .unwrap_or_default();
        let task = transport::zmq::sub_task(
            endpoint,
            filter,
            inbox.clone(),
            status,
            tasks.cancel.clone(),
        );
        tasks.spawn(task);
    }
    if let Some((link, url, connected)) = bound.redis {
        let status = Arc::new(LinkStatus::new(
            LinkKind::Redis,
            url.to_string(),
            LinkState::Up,
        ));
        links.push(status.clone());
        let cancel = tasks.cancel.clone();
        let (handle, publisher, receiver) =
            connected.run(link, counters.clone(), inbox.clone(), status, cancel);
        tasks.spawn(publisher);
        tasks.spawn(receiver);
        outbound.push(Box::new(handle));
    }
    // Only the links hold the inbox now: the router ends when they all do.
    drop(inbox);
    let core = Core::new(
        node.name.clone(),
        generation,
        node.relay,
        counters,
        outbound,
    );
    let core = Arc::new(core);
    tasks.spawn(relay::route(core.clone(), inbox_rx, tasks.cancel.clone()));
    let links = Arc::new(links);
    let mut http_addr = None;
    if let Some(listener) = bound.http {
        http_addr = listener.local_addr().ok();
        let http = ws::Http {
            core: core.clone(),
            links: links.clone(),
            cancel: tasks.cancel.clone(),
            tracker: tasks.tracker.clone(),
            span: tasks.span.clone(),
        };
        tasks.spawn(serve_http(listener, http));
    }
    tracing::info!(http = ?http_addr, links = links.len(), "node ready");
    NodeHandle {
        id,
        name: node.name.clone(),
        http: http_addr,
        links,
        core,
        cancel: tasks.cancel,
        tracker: tasks.tracker,
    }
}

/// The HTTP server; on cancel it stops accepting and lets sessions close.
async fn serve_http(listener: tokio::net::TcpListener, http: ws::Http) {
    let shutdown = http.cancel.clone().cancelled_owned();
    let app = ws::router(http);
    // Writers already coalesce queued frames into one flush; Nagle would
    // only hold the next flush back until the client's delayed ACK (~40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "http server failed");
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
