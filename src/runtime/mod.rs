//! Running a topology: every node in this process (`up`), or one node
//! (`run_node`, what `topo node FILE NAME` and `up --process` children run).
//! The CLI calls these; they print the ready table and log through `tracing`.
//! `reload::up` is `topo up FILE`: the same plus watching and hot reload.

pub mod controller;
pub mod fds;
pub mod process;
pub mod reload;
pub mod running;
pub mod watch;

pub use crate::node::StartError;
pub use running::{LinksNotUp, Running};

use crate::model::{NodeId, Topology};

/// Starts every node, prints the ready table, runs until `shutdown` resolves,
/// then stops every node (clients get a close frame) within about 2 s.
pub async fn up(topology: Topology, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let ids: Vec<NodeId> = topology.node_ids().collect();
    serve(&topology, &ids, shutdown).await
}

/// Runs one node of the topology until `shutdown` resolves.
pub async fn run_node(
    topology: Topology,
    node: NodeId,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_node_at(topology, node, 0, shutdown).await
}

/// [`run_node`] stamped with the reload `generation` that started it (what
/// `up --process` passes to a child it restarts).
pub async fn run_node_at(
    topology: Topology,
    node: NodeId,
    generation: u64,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let running = Running::start_nodes(&topology, [node]).await?;
    for n in running.nodes() {
        n.core.set_generation(generation);
    }
    signal_ready();
    wait_and_stop(running, &topology, &[node], shutdown).await
}

/// Tells the `up --process` parent that this node runs: `ready` on the
/// descriptor it named in [`process::READY_FD`], which is then closed.
fn signal_ready() {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    let Some(fd) = std::env::var(process::READY_FD)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|fd| *fd > 2)
    else {
        return;
    };
    // SAFETY: the parent gave us this descriptor for this write alone.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
    if let Err(e) = pipe.write_all(b"ready\n") {
        tracing::warn!(error = %e, "cannot tell the parent this node is ready");
    }
}

async fn serve(
    topology: &Topology,
    ids: &[NodeId],
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let running = Running::start_nodes(topology, ids.iter().copied()).await?;
    wait_and_stop(running, topology, ids, shutdown).await
}

async fn wait_and_stop(
    running: Running,
    topology: &Topology,
    ids: &[NodeId],
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    println!("{}", ready_table(topology, ids));
    shutdown.await;
    tracing::info!("shutting down");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// One line per node: its name, its chat URL, and its links.
pub fn ready_table(topology: &Topology, ids: &[NodeId]) -> String {
    let rows: Vec<[String; 3]> = ids
        .iter()
        .map(|&id| {
            let node = topology.node(id);
            let url = node
                .http
                .map_or_else(|| "-".to_owned(), |a| format!("http://{a}/"));
            [node.name.clone(), url, links_summary(topology, id)]
        })
        .collect();
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].len())
            .chain([4])
            .max()
            .unwrap_or(4)
    };
    let (w0, w1) = (width(0), width(1));
    let mut out = format!("{} ready: {} node(s)\n", topology.name, ids.len());
    out.push_str(&format!("{:w0$}  {:w1$}  LINKS\n", "NODE", "URL"));
    for [name, url, links] in &rows {
        out.push_str(format!("{name:w0$}  {url:w1$}  {links}").trim_end());
        out.push('\n');
    }
    out.pop();
    out
}

fn links_summary(topology: &Topology, id: NodeId) -> String {
    let node = topology.node(id);
    let mut parts = Vec::new();
    if let Some(zmq) = &node.zmq {
        if let Some(p) = &zmq.publish {
            parts.push(format!("zmq pub tcp://{} topic {:?}", p.bind, p.topic));
        }
        for sub in &zmq.subscribe {
            let from = sub
                .from
                .map(|f| format!(" ({})", topology.node(f).name))
                .unwrap_or_default();
            parts.push(format!(
                "zmq sub {}{from} filter {:?}",
                sub.endpoint, zmq.filter
            ));
        }
    }
    if let Some(r) = &node.redis {
        let broker = topology.broker(r.broker);
        let mut s = format!("redis {} publish {}", broker.url, r.publish);
        if !r.subscribe.is_empty() {
            s.push_str(&format!(" subscribe {}", r.subscribe.join(",")));
        }
        if !r.patterns.is_empty() {
            s.push_str(&format!(" patterns {}", r.patterns.join(",")));
        }
        parts.push(s);
    }
    if node.relay {
        parts.push("relay".into());
    }
    if parts.is_empty() {
        "stand-alone".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::Span;
    use crate::model::*;

    #[test]
    fn the_ready_table_names_urls_and_links() {
        let node = |name: &str, http: Option<u16>| Node {
            name: name.into(),
            span: Span::default(),
            http: http.map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p))),
            zmq: None,
            redis: None,
            relay: false,
            limits: Limits::default(),
        };
        let mut a = node("a", Some(8080));
        a.zmq = Some(ZmqLink {
            publish: Some(ZmqPublish {
                bind: "127.0.0.1:5000".parse().unwrap(),
                topic: "chat".into(),
            }),
            subscribe: vec![ZmqSubscription {
                endpoint: Endpoint {
                    host: "127.0.0.1".into(),
                    port: 5001,
                },
                from: Some(NodeId(1)),
                span: Span::default(),
            }],
            filter: "chat".into(),
        });
        let mut bridge = node("bridge", None);
        bridge.relay = true;
        let t = Topology {
            name: "demo".into(),
            nodes: vec![a, bridge],
            brokers: vec![],
        };
        let table = ready_table(&t, &[NodeId(0), NodeId(1)]);
        let expected = "demo ready: 2 node(s)\n\
            NODE    URL                     LINKS\n\
            a       http://127.0.0.1:8080/  zmq pub tcp://127.0.0.1:5000 topic \"chat\"; \
            zmq sub tcp://127.0.0.1:5001 (bridge) filter \"chat\"\n\
            bridge  -                       relay";
        assert_eq!(table, expected);
    }
}
