//! `topo probe`: one WebSocket client per node with an HTTP server sends a
//! uniquely tagged message; every client counts the tagged messages it gets,
//! and the observed counts are set beside the analysis' prediction.
//!
//! It only talks to the nodes' public WebSocket endpoints, so it probes a
//! topology started by `topo up`, by `topo node` on several hosts, or by tests.

use crate::check::Valid;
use crate::model::{NodeId, Topology};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Copy, Debug)]
pub struct ProbeOptions {
    /// How long to wait for every predicted delivery.
    pub timeout: Duration,
    /// How long to keep listening once they all arrived, to catch extras.
    pub settle: Duration,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            timeout: Duration::from_secs(3),
            settle: Duration::from_millis(300),
        }
    }
}

/// One cell of the matrix: messages from `from`'s client seen by `to`'s client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    pub from: String,
    pub to: String,
    /// The deliveries certain to happen.
    pub predicted: u64,
    /// How many more copies a NATS queue group may give this receiver (0
    /// outside queue groups); which member gets a copy is the server's pick.
    pub maybe: u64,
    pub observed: u64,
}

impl Cell {
    pub fn agrees(&self) -> bool {
        (self.predicted..=self.predicted + self.maybe).contains(&self.observed)
    }
}

/// The copies of one sender's message that a queue group took: `count` of
/// them predicted, `observed` counted over the members' extra receptions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChoiceCell {
    pub from: String,
    /// The members (sorted by name).
    pub among: Vec<String>,
    pub predicted: u64,
    pub observed: u64,
}

#[derive(Clone, Debug)]
pub struct ProbeReport {
    pub name: String,
    /// Every (sender, receiver) pair of nodes with an HTTP server, sorted by names.
    pub cells: Vec<Cell>,
    /// Every queue group a sender's message reaches, by sender.
    pub choices: Vec<ChoiceCell>,
    /// Nodes no client could connect to, with the reason.
    pub unreachable: Vec<(String, String)>,
}

impl ProbeReport {
    pub fn agrees(&self) -> bool {
        self.unreachable.is_empty()
            && self.cells.iter().all(Cell::agrees)
            && self.choices.iter().all(|c| c.predicted == c.observed)
    }

    pub fn differences(&self) -> impl Iterator<Item = &Cell> {
        self.cells.iter().filter(|c| !c.agrees())
    }

    pub fn choice_differences(&self) -> impl Iterator<Item = &ChoiceCell> {
        self.choices.iter().filter(|c| c.predicted != c.observed)
    }

    pub fn to_json(&self, file: &str) -> serde_json::Value {
        let matrix = |pick: fn(&Cell) -> u64| {
            let mut out: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
            for c in &self.cells {
                out.entry(&c.from).or_default().insert(&c.to, pick(c));
            }
            out
        };
        let mut object = json!({
            "file": file,
            "agree": self.agrees(),
            "predicted": matrix(|c| c.predicted),
            "observed": matrix(|c| c.observed),
            "differences": self.differences().map(|c| json!({
                "from": c.from, "to": c.to, "predicted": c.predicted, "observed": c.observed,
            })).collect::<Vec<_>>(),
            "unreachable": self.unreachable.iter().map(|(node, why)| json!({"node": node, "error": why})).collect::<Vec<_>>(),
        });
        // Only with queue groups, so that every other report keeps its shape.
        if !self.choices.is_empty() {
            let mut one_of: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
            for c in &self.choices {
                one_of.entry(&c.from).or_default().push(json!({
                    "among": c.among, "count": c.predicted, "observed": c.observed,
                }));
            }
            object["one_of"] = json!(one_of);
        }
        object
    }

    /// The observed/predicted matrix and a verdict, for people.
    pub fn to_text(&self) -> String {
        let mut names: Vec<&str> = self.cells.iter().map(|c| c.from.as_str()).collect();
        names.dedup();
        let width = names.iter().map(|n| n.len()).max().unwrap_or(1).max(5);
        let mut out = format!(
            "probe {}: observed/predicted deliveries (row: sender's node)\n",
            self.name
        );
        let _ = write!(out, "  {:width$}", "");
        for name in &names {
            let _ = write!(out, " {name:>width$}");
        }
        out.push('\n');
        for from in &names {
            let _ = write!(out, "  {from:width$}");
            for c in self.cells.iter().filter(|c| c.from == *from) {
                let cell = match c.maybe {
                    0 => format!("{}/{}", c.observed, c.predicted),
                    _ => format!("{}/{}+?", c.observed, c.predicted),
                };
                let mark = if c.agrees() { ' ' } else { '!' };
                let _ = write!(out, " {cell:>w$}{mark}", w = width - 1);
            }
            out.push('\n');
        }
        for c in &self.choices {
            let _ = writeln!(
                out,
                "  {} -> exactly one of {{{}}}: {} of {} cop{} observed",
                c.from,
                c.among.join(", "),
                c.observed,
                c.predicted,
                if c.predicted == 1 { "y" } else { "ies" }
            );
        }
        for (node, why) in &self.unreachable {
            let _ = writeln!(out, "cannot reach {node}: {why}");
        }
        let mut differing: Vec<String> = self
            .differences()
            .map(|c| match c.maybe {
                0 => format!(
                    "{} -> {}: observed {}, predicted {}",
                    c.from, c.to, c.observed, c.predicted
                ),
                m => format!(
                    "{} -> {}: observed {}, predicted {} to {}",
                    c.from,
                    c.to,
                    c.observed,
                    c.predicted,
                    c.predicted + m
                ),
            })
            .collect();
        differing.extend(self.choice_differences().map(|c| {
            format!(
                "{} -> one of {{{}}}: observed {} copies, predicted {}",
                c.from,
                c.among.join(", "),
                c.observed,
                c.predicted
            )
        }));
        if self.agrees() {
            let _ = writeln!(
                out,
                "all {} cells agree with the prediction",
                self.cells.len()
            );
        } else {
            for line in differing {
                let _ = writeln!(out, "differs: {line}");
            }
        }
        out
    }
}

/// Where a client connects to reach a server bound at `bind`.
pub fn client_address(bind: SocketAddr) -> SocketAddr {
    let ip = match bind.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bind.port())
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Probes a running topology once.
pub async fn probe(valid: &Valid, options: ProbeOptions) -> ProbeReport {
    let topology = &valid.topology;
    let senders: Vec<NodeId> = valid
        .analysis
        .deliveries
        .iter()
        .map(|(from, _)| *from)
        .collect();
    let run = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let tag = |node: NodeId| format!("topo-probe {run} from {}", topology.node(node).name);

    let mut sockets: Vec<(NodeId, Socket)> = Vec::new();
    let mut unreachable = Vec::new();
    for &node in &senders {
        let addr = client_address(topology.node(node).http.expect("senders have HTTP"));
        let url = format!("ws://{addr}/ws");
        match timeout(options.timeout, tokio_tungstenite::connect_async(&url)).await {
            Ok(Ok((socket, _))) => sockets.push((node, socket)),
            Ok(Err(e)) => {
                unreachable.push((topology.node(node).name.clone(), format!("{url}: {e}")))
            }
            Err(_) => unreachable.push((
                topology.node(node).name.clone(),
                format!("{url}: no answer in {:?}", options.timeout),
            )),
        }
    }

    // A client is only sure to get what its node delivers once the node's
    // session for it runs (joined to the node's clients), which may be
    // after the upgrade answered: a pong proves it. Without this, a fast
    // link can deliver a tag before its receiver joined.
    for (node, socket) in &mut sockets {
        if !joined(socket, options.timeout).await {
            unreachable.push((
                topology.node(*node).name.clone(),
                format!("no pong in {:?}", options.timeout),
            ));
        }
    }
    let connected: Vec<NodeId> = sockets.iter().map(|(n, _)| *n).collect();
    let expected_total: u64 = connected
        .iter()
        .flat_map(|to| {
            senders
                .iter()
                .map(|from| valid.analysis.expected(*from, *to))
        })
        .sum::<u64>()
        + senders
            .iter()
            .flat_map(|from| valid.analysis.choices_of(*from))
            .filter(|c| c.among.iter().all(|m| connected.contains(m)))
            .map(|c| c.count)
            .sum::<u64>();
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for (node, socket) in sockets {
        let (sink, stream) = socket.split();
        writers.push((node, sink));
        readers.push((node, stream));
    }
    for (node, sink) in &mut writers {
        let _ = sink.send(Message::text(tag(*node))).await;
    }

    // Every reader counts into one table; the wait ends when the prediction
    // is met (plus a settle time for extras) or at the deadline.
    let tags: Vec<(String, NodeId)> = senders.iter().map(|&n| (tag(n), n)).collect();
    let (count_tx, mut count_rx) = tokio::sync::mpsc::channel::<(NodeId, NodeId)>(1024);
    let deadline = Instant::now() + options.timeout;
    let mut tasks = Vec::new();
    for (to, mut stream) in readers {
        let tags = tags.clone();
        let count_tx = count_tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok(Some(Ok(message))) =
                timeout_at(deadline + options.settle, stream.next()).await
            {
                if let Message::Text(text) = message
                    && let Some((_, from)) = tags.iter().find(|(t, _)| t.as_str() == text.as_str())
                    && count_tx.send((*from, to)).await.is_err()
                {
                    break;
                }
            }
        }));
    }
    drop(count_tx);
    let mut observed: BTreeMap<(NodeId, NodeId), u64> = BTreeMap::new();
    let mut seen = 0u64;
    let mut settle_until: Option<Instant> = None;
    loop {
        let until = settle_until.unwrap_or(deadline);
        match timeout_at(until, count_rx.recv()).await {
            Ok(Some(pair)) => {
                *observed.entry(pair).or_default() += 1;
                seen += 1;
                if seen >= expected_total && settle_until.is_none() {
                    settle_until = Some(Instant::now() + options.settle);
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    for task in tasks {
        task.abort();
    }
    for (_, mut sink) in writers {
        let _ = timeout(Duration::from_millis(200), sink.close()).await;
    }

    let cells = cells(topology, valid, &senders, &observed);
    ProbeReport {
        name: topology.name.clone(),
        choices: choice_cells(topology, valid, &senders, &cells),
        cells,
        unreachable,
    }
}

/// Sends a ping and waits for its pong (ignoring other traffic).
async fn joined(socket: &mut Socket, limit: Duration) -> bool {
    let exchange = async {
        socket
            .send(Message::Ping(b"topo-probe".to_vec().into()))
            .await
            .ok()?;
        loop {
            match socket.next().await? {
                Ok(Message::Pong(_)) => return Some(()),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    };
    matches!(timeout(limit, exchange).await, Ok(Some(())))
}

/// The most copies queue groups may add to `from` -> `to`.
pub fn maybe(valid: &Valid, from: NodeId, to: NodeId) -> u64 {
    valid
        .analysis
        .choices_of(from)
        .iter()
        .filter(|c| c.among.contains(&to))
        .map(|c| c.count)
        .sum()
}

/// Each queue group's copies, observed as the receptions its members got
/// beyond their certain deliveries. (A node in two groups reached by one
/// sender, which takes two subjects and relays, counts in both.) A group
/// with a member without clients is left out: a copy that member takes is
/// seen by nobody; the cells still bound what each other member may get.
fn choice_cells(
    topology: &Topology,
    valid: &Valid,
    senders: &[NodeId],
    cells: &[Cell],
) -> Vec<ChoiceCell> {
    let mut out = Vec::new();
    let mut sorted = senders.to_vec();
    sorted.sort_by(|a, b| topology.node(*a).name.cmp(&topology.node(*b).name));
    for from in sorted {
        let name = &topology.node(from).name;
        let seen = |m: &NodeId| topology.node(*m).http.is_some();
        for choice in valid.analysis.choices_of(from) {
            if !choice.among.iter().all(seen) {
                continue;
            }
            let mut among: Vec<String> = choice
                .among
                .iter()
                .map(|m| topology.node(*m).name.clone())
                .collect();
            among.sort();
            let observed = cells
                .iter()
                .filter(|c| &c.from == name && among.contains(&c.to))
                .map(|c| c.observed.saturating_sub(c.predicted))
                .sum();
            out.push(ChoiceCell {
                from: name.clone(),
                among,
                predicted: choice.count,
                observed,
            });
        }
    }
    out
}

fn cells(
    topology: &Topology,
    valid: &Valid,
    senders: &[NodeId],
    observed: &BTreeMap<(NodeId, NodeId), u64>,
) -> Vec<Cell> {
    let mut sorted = senders.to_vec();
    sorted.sort_by(|a, b| topology.node(*a).name.cmp(&topology.node(*b).name));
    let mut out = Vec::new();
    for &from in &sorted {
        for &to in &sorted {
            out.push(Cell {
                from: topology.node(from).name.clone(),
                to: topology.node(to).name.clone(),
                predicted: valid.analysis.expected(from, to),
                maybe: maybe(valid, from, to),
                observed: observed.get(&(from, to)).copied().unwrap_or(0),
            });
        }
    }
    out
}
