//! Running a topology: `reload::up` is `topo up FILE` (every node, in this
//! process or one child each, watching the file and reloading); `run_node`
//! is one node (`topo node FILE NAME`, what `up --process` children run).
//! They hand the ready table to their caller and log through `tracing`.

pub mod child;
pub mod controller;
pub mod faults;
pub mod fds;
pub mod process;
pub mod reload;
pub mod running;
pub mod watch;

pub use crate::node::StartError;
pub use running::{LinksNotUp, Running};

use crate::model::{NodeId, NodeLinks, Topology};
use crate::printable::escape_controls;

/// Runs one node of the topology until `shutdown` resolves (`topo node FILE
/// NAME`, and the children of `up --process`), stamped with the reload
/// `generation` that started it.
pub async fn run_node(
    topology: Topology,
    node: NodeId,
    generation: u64,
    ready: impl FnOnce(&str),
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let running = Running::start_nodes(&topology, [node]).await?;
    for n in running.nodes() {
        n.router.set_generation(generation);
    }
    // A child of `up --process` prints only its log lines: the parent
    // prints one table for every node once all are ready.
    if !signal_ready() {
        ready(&ready_table(&topology, &[node]));
    }
    wait_and_stop(running, shutdown).await
}

/// Tells the `up --process` parent that this node runs: `ready` on the
/// descriptor it named in [`process::READY_FD`], which is then closed.
/// Whether there is such a parent.
fn signal_ready() -> bool {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    let Some(fd) = std::env::var(process::READY_FD)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|fd| *fd > 2)
    else {
        return false;
    };
    // A stray variable must not make us write into some other descriptor
    // of ours: only a pipe is the parent's.
    // SAFETY: fstat writes only into the struct we own.
    let is_pipe = unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut stat) == 0 && (stat.st_mode & libc::S_IFMT) == libc::S_IFIFO
    };
    if !is_pipe {
        tracing::warn!(fd, "{} is not a pipe: ignored", process::READY_FD);
        return false;
    }
    // SAFETY: the parent gave us this descriptor for this write alone.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
    if let Err(e) = pipe.write_all(b"ready\n") {
        tracing::warn!(error = %e, "cannot tell the parent this node is ready");
    }
    true
}

async fn wait_and_stop(
    running: Running,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    shutdown.await;
    tracing::info!("shutting down");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// The widest line of the ready table (a terminal a presenter shares).
pub const TABLE_COLUMNS: usize = 100;

/// One line per node: its name, its chat URL, and its links summarised so
/// that the line fits [`TABLE_COLUMNS`] (`topo up -v` lists every link).
pub fn ready_table(topology: &Topology, ids: &[NodeId]) -> String {
    table(topology, ids, false)
}

/// The ready table with every link in full (`topo up -v`): lines may be long.
pub fn ready_table_verbose(topology: &Topology, ids: &[NodeId]) -> String {
    table(topology, ids, true)
}

fn table(topology: &Topology, ids: &[NodeId], verbose: bool) -> String {
    let rows: Vec<[String; 3]> = ids
        .iter()
        .map(|&id| {
            let node = topology.node(id);
            let url = node
                .http
                .map_or_else(|| "-".to_owned(), |a| format!("http://{a}/"));
            let links = if verbose {
                links_full(topology, id)
            } else {
                links_summary(topology, id)
            };
            // Topics and names from the file are shown, never obeyed.
            [node.name.clone(), url, links].map(|cell| escape_controls(&cell).into_owned())
        })
        .collect();
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([4])
            .max()
            .unwrap_or(4)
    };
    let (w0, w1) = (width(0), width(1));
    let room = TABLE_COLUMNS.saturating_sub(w0 + w1 + 4).max(12);
    let mut out = format!(
        "{} ready: {} node(s)\n",
        escape_controls(&topology.name),
        ids.len()
    );
    out.push_str(&format!("{:w0$}  {:w1$}  LINKS\n", "NODE", "URL"));
    for [name, url, links] in &rows {
        let links = if verbose {
            links.clone()
        } else {
            clip(links, room)
        };
        out.push_str(format!("{name:w0$}  {url:w1$}  {links}").trim_end());
        out.push('\n');
    }
    if !verbose && rows.iter().any(|r| r[2].chars().count() > room) {
        out.push_str("(links clipped: `topo up -v` or `topo graph` lists them all)\n");
    }
    out.pop();
    out
}

/// `text` cut to `room` characters, ending in `…` when it was longer.
fn clip(text: &str, room: usize) -> String {
    if text.chars().count() <= room {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(room.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A bind or connect address as short as it stays clear: `:5000` on loopback
/// or every interface, `host:port` otherwise.
fn short_addr(host: &str, port: u16) -> String {
    match host {
        "127.0.0.1" | "0.0.0.0" | "localhost" | "::1" | "::" => format!(":{port}"),
        _ => format!("{host}:{port}"),
    }
}

/// At most `keep` names, then `+N` for the rest.
fn names_clipped(names: &[String], keep: usize) -> String {
    let mut out = names
        .iter()
        .take(keep)
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    if names.len() > keep {
        out.push_str(&format!(" +{}", names.len() - keep));
    }
    out
}

/// `pub :5000 · sub b c · filter chat · redis local pub chat sub news · relay`.
fn links_summary(topology: &Topology, id: NodeId) -> String {
    let links = NodeLinks::of(topology, id);
    let mut parts = Vec::new();
    if let Some(p) = links.publish {
        let mut s = format!(
            "pub {}",
            short_addr(&p.bind.ip().to_string(), p.bind.port())
        );
        if p.topic != links.filter || links.subscribe.is_empty() {
            s.push_str(&format!(" topic {}", p.topic));
        }
        parts.push(s);
    }
    if !links.subscribe.is_empty() {
        let from: Vec<String> = links
            .subscribe
            .iter()
            .map(|sub| match sub.from {
                Some(name) => name.to_string(),
                None => short_addr(&sub.endpoint.host, sub.endpoint.port),
            })
            .collect();
        parts.push(format!("sub {}", names_clipped(&from, 6)));
        parts.push(format!("filter {}", links.filter));
    }
    if let Some(r) = &links.redis {
        let mut s = format!("redis {} pub {}", r.broker.name, r.publish);
        if !r.subscribe.is_empty() {
            s.push_str(&format!(" sub {}", names_clipped(r.subscribe, 3)));
        }
        if !r.patterns.is_empty() {
            s.push_str(&format!(" psub {}", names_clipped(r.patterns, 2)));
        }
        if r.sharded {
            s.push_str(" sharded");
        }
        parts.push(s);
    }
    if let Some(n) = &links.nats {
        let mut s = format!("nats {} pub {}", n.broker.name, n.publish);
        if !n.subscribe.is_empty() {
            s.push_str(&format!(" sub {}", names_clipped(n.subscribe, 3)));
        }
        if let Some(queue) = n.queue {
            s.push_str(&format!(" queue {queue}"));
        }
        parts.push(s);
    }
    if links.relay {
        parts.push("relay".into());
    }
    if parts.is_empty() {
        "stand-alone".into()
    } else {
        parts.join(" · ")
    }
}

/// Every link in full, as `topo up -v` prints it.
fn links_full(topology: &Topology, id: NodeId) -> String {
    let links = NodeLinks::of(topology, id);
    let mut parts = Vec::new();
    if let Some(p) = links.publish {
        parts.push(format!("zmq pub tcp://{} topic {:?}", p.bind, p.topic));
    }
    for sub in &links.subscribe {
        let from = sub.from.map(|f| format!(" ({f})")).unwrap_or_default();
        parts.push(format!(
            "zmq sub {}{from} filter {:?}",
            sub.endpoint, links.filter
        ));
    }
    if let Some(r) = &links.redis {
        let mut s = format!("redis {} publish {}", r.broker.url, r.publish);
        if !r.subscribe.is_empty() {
            s.push_str(&format!(" subscribe {}", r.subscribe.join(",")));
        }
        if !r.patterns.is_empty() {
            s.push_str(&format!(" patterns {}", r.patterns.join(",")));
        }
        if r.sharded {
            s.push_str(" sharded (SPUBLISH/SSUBSCRIBE)");
        }
        parts.push(s);
    }
    if let Some(n) = &links.nats {
        let mut s = format!("nats {} publish {}", n.broker.url, n.publish);
        if !n.subscribe.is_empty() {
            s.push_str(&format!(" subscribe {}", n.subscribe.join(",")));
        }
        if let Some(queue) = n.queue {
            s.push_str(&format!(" queue {queue}"));
        }
        parts.push(s);
    }
    if links.relay {
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
            amqp: None,
            nats: None,
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
            amqp_brokers: vec![],
            nats_brokers: vec![],
        };
        let table = ready_table(&t, &[NodeId(0), NodeId(1)]);
        let expected = "demo ready: 2 node(s)\n\
            NODE    URL                     LINKS\n\
            a       http://127.0.0.1:8080/  pub :5000 · sub bridge · filter chat\n\
            bridge  -                       relay";
        assert_eq!(table, expected);
        let full = ready_table_verbose(&t, &[NodeId(0), NodeId(1)]);
        assert!(
            full.contains("zmq pub tcp://127.0.0.1:5000 topic \"chat\"; zmq sub tcp://127.0.0.1:5001 (bridge) filter \"chat\""),
            "{full}"
        );
    }

    #[test]
    fn every_line_of_the_ready_table_fits_100_columns() {
        // A node that subscribes to 40 others, on Redis too: the summary is clipped.
        let n = 41;
        let nodes = (0..n)
            .map(|i| {
                let mut node = Node {
                    name: format!("node{i}"),
                    span: Span::default(),
                    http: Some(std::net::SocketAddr::from((
                        [127, 0, 0, 1],
                        8000 + i as u16,
                    ))),
                    zmq: None,
                    redis: None,
                    amqp: None,
                    nats: None,
                    relay: false,
                    limits: Limits::default(),
                };
                node.zmq = Some(ZmqLink {
                    publish: Some(ZmqPublish {
                        bind: std::net::SocketAddr::from(([127, 0, 0, 1], 5000 + i as u16)),
                        topic: "chat".into(),
                    }),
                    subscribe: (0..n)
                        .filter(|j| *j != i)
                        .map(|j| ZmqSubscription {
                            endpoint: Endpoint {
                                host: "127.0.0.1".into(),
                                port: 5000 + j as u16,
                            },
                            from: Some(NodeId(j)),
                            span: Span::default(),
                        })
                        .collect(),
                    filter: "a-rather-long-filter-prefix-for-this-demo".into(),
                });
                node
            })
            .collect();
        let t = Topology {
            name: "wide".into(),
            nodes,
            brokers: vec![],
            amqp_brokers: vec![],
            nats_brokers: vec![],
        };
        let ids: Vec<NodeId> = t.node_ids().collect();
        let table = ready_table(&t, &ids);
        for line in table.lines() {
            assert!(
                line.chars().count() <= TABLE_COLUMNS,
                "{} columns: {line}",
                line.chars().count()
            );
        }
        assert!(
            table.contains("sub node1 node2 node3 node4 node5 node6 +34"),
            "{table}"
        );
        assert!(table.ends_with("(links clipped: `topo up -v` or `topo graph` lists them all)"));
        assert!(
            ready_table_verbose(&t, &ids)
                .lines()
                .any(|l| l.len() > 1000)
        );
    }

    #[test]
    fn redis_links_show_the_broker_s_name_in_the_summary_and_its_url_in_full() {
        let yaml = "brokers:
  main: { url: 'redis://127.0.0.1:6399' }
nodes:
  a: { http: 8080, zmq: { pub: 5000 } }
  b: { http: 8081, redis: { broker: main, subscribe: [x, y], patterns: ['chat*'] } }
  c: { http: 8082 }
";
        let none = |_: &str| None;
        let t = crate::check::check_bytes("t.yaml", "t", yaml.as_bytes(), &none)
            .valid
            .expect("valid")
            .topology;
        let summary: Vec<String> = t.node_ids().map(|id| links_summary(&t, id)).collect();
        let full: Vec<String> = t.node_ids().map(|id| links_full(&t, id)).collect();
        assert_eq!(
            summary,
            [
                "pub :5000 topic chat",
                "redis main pub chat_messages sub x y psub chat*",
                "stand-alone"
            ]
        );
        assert_eq!(
            full,
            [
                r#"zmq pub tcp://127.0.0.1:5000 topic "chat""#,
                "redis redis://127.0.0.1:6399 publish chat_messages subscribe x,y patterns chat*",
                "stand-alone"
            ]
        );
    }
}
