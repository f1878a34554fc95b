//! One chat node: binds its listeners, connects its links, and runs its tasks
//! under its own cancellation token and task tracker, in a `node=<name>` span.
//! It trusts the `Topology` it is given and never decides which nodes run.

pub mod relay;
pub mod ws;

use crate::model::{NodeId, Topology};
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
    let node = topology.node(id);
    let bind_error = |what, addr, reason: String| StartError::Bind {
        node: node.name.clone(),
        what,
        addr,
        reason,
    };
    let http_listener = match node.http {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| bind_error("http", addr, io_reason(&e)))?,
        ),
        None => None,
    };
    let http_addr = match &http_listener {
        Some(l) => Some(
            l.local_addr()
                .map_err(|e| bind_error("http", node.http.unwrap(), io_reason(&e)))?,
        ),
        None => None,
    };
    let publish = node.zmq.as_ref().and_then(|z| z.publish.as_ref());
    let bound_pub = match publish {
        Some(p) => {
            let listener = std::net::TcpListener::bind(p.bind)
                .map_err(|e| bind_error("zmq pub", p.bind, io_reason(&e)))?;
            let bound = transport::zmq::bind_pub(listener)
                .await
                .map_err(|e| bind_error("zmq pub", p.bind, e.to_string()))?;
            Some(bound)
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

    // Everything is bound and connected: from here on nothing can fail.
    let cancel = parent.child_token();
    let tracker = TaskTracker::new();
    let counters = Arc::new(Counters::default());
    let (inbox, inbox_rx) = mpsc::channel(INBOX);
    let mut links = Vec::new();
    let mut outbound: Vec<Box<dyn Outbound>> = Vec::new();
    if let (Some(bound), Some(p)) = (bound_pub, publish) {
        let address = format!("tcp://{}", p.bind);
        links.push(Arc::new(LinkStatus::new(
            LinkKind::ZmqPub,
            address,
            LinkState::Up,
        )));
        let (handle, task) = bound.run(p.topic.clone(), counters.clone(), cancel.clone());
        tracker.spawn(task.instrument(span.clone()));
        outbound.push(Box::new(handle));
    }
    if let Some(zmq) = &node.zmq {
        for sub in &zmq.subscribe {
            let endpoint = sub.endpoint.to_string();
            let status = Arc::new(LinkStatus::new(
                LinkKind::ZmqSub,
                endpoint.clone(),
                LinkState::Connecting,
            ));
            links.push(status.clone());
            let task = transport::zmq::sub_task(
                endpoint,
                zmq.filter.clone(),
                inbox.clone(),
                status,
                cancel.clone(),
            );
            tracker.spawn(task.instrument(span.clone()));
        }
    }
    if let Some((link, url, connected)) = redis {
        let status = Arc::new(LinkStatus::new(
            LinkKind::Redis,
            url.to_string(),
            LinkState::Up,
        ));
        links.push(status.clone());
        let (handle, publisher, receiver) = connected.run(
            link,
            counters.clone(),
            inbox.clone(),
            status,
            cancel.clone(),
        );
        tracker.spawn(publisher.instrument(span.clone()));
        tracker.spawn(receiver.instrument(span.clone()));
        outbound.push(Box::new(handle));
    }
    drop(inbox);
    let core = Arc::new(Core::new(
        node.name.clone(),
        generation,
        node.relay,
        counters,
        outbound,
    ));
    tracker.spawn(relay::route(core.clone(), inbox_rx, cancel.clone()).instrument(span.clone()));
    let links = Arc::new(links);
    if let Some(listener) = http_listener {
        let http = ws::Http {
            core: core.clone(),
            links: links.clone(),
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            span: span.clone(),
        };
        let shutdown = cancel.clone().cancelled_owned();
        let server = async move {
            let app = ws::router(http);
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "http server failed");
            }
        };
        tracker.spawn(server.instrument(span.clone()));
    }
    tracing::info!(http = ?http_addr, links = links.len(), "node ready");
    Ok(NodeHandle {
        id,
        name: node.name.clone(),
        http: http_addr,
        links,
        core,
        cancel,
        tracker,
    })
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
