//! What the graph predicts (docs/topology-format.md, "Who receives what"): cycles through
//! relays, deliveries(X, Y) as the number of distinct relay paths, reach,
//! and the warnings that follow from them (duplicates, partitions).
//!
//! A relay state is (relay node, the kind of link it arrived by): a relay
//! never forwards back onto the Redis server or AMQP exchange a message came
//! from, so where a message arrived decides where it may go next. Paths are
//! counted over those states.

use super::build::{Link, LinkGraph, Via};
use crate::config::diagnostic::Diagnostic;
use crate::model::{NodeId, Topology};
use petgraph::Direction;
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use std::collections::{BTreeMap, HashSet};

/// The prediction for a valid topology.
#[derive(Clone, Debug)]
pub struct Analysis {
    pub graph: LinkGraph,
    /// For every node with an HTTP server (file order): how many times each
    /// node with an HTTP server receives one message from it (counts ≥ 1 only).
    pub deliveries: Vec<(NodeId, Vec<(NodeId, u64)>)>,
}

impl Analysis {
    /// `deliveries` keyed by node names, sorted: the `deliveries` of `validate --format json` object.
    pub fn deliveries_by_name(
        &self,
        topology: &Topology,
    ) -> BTreeMap<String, BTreeMap<String, u64>> {
        self.deliveries
            .iter()
            .map(|(from, row)| {
                let row = row
                    .iter()
                    .map(|(to, n)| (topology.node(*to).name.clone(), *n))
                    .collect();
                (topology.node(*from).name.clone(), row)
            })
            .collect()
    }

    /// `deliveries` in the file's node order, rows and columns alike: what
    /// people read (`validate`'s tables, the live page's matrix), where
    /// `n2` must come before `n10`.
    pub fn deliveries_in_file_order(
        &self,
        topology: &Topology,
    ) -> Vec<(String, Vec<(String, u64)>)> {
        self.first_deliveries_in_file_order(topology, usize::MAX)
    }

    /// The first `rows` rows of [`Analysis::deliveries_in_file_order`]: a
    /// summary shows a few senders of a large topology, and naming every
    /// cell of a 1,000-node mesh costs a million strings.
    pub fn first_deliveries_in_file_order(
        &self,
        topology: &Topology,
        rows: usize,
    ) -> Vec<(String, Vec<(String, u64)>)> {
        self.deliveries
            .iter()
            .take(rows)
            .map(|(from, row)| {
                let mut row = row.clone();
                row.sort_by_key(|(to, _)| to.0);
                let row = row
                    .into_iter()
                    .map(|(to, n)| (topology.node(to).name.clone(), n))
                    .collect();
                (topology.node(*from).name.clone(), row)
            })
            .collect()
    }

    /// The `reach` object of `validate --format json`: every node with an HTTP server, with the sorted
    /// names of the nodes its clients' messages reach.
    pub fn reach_by_name(&self, topology: &Topology) -> BTreeMap<String, Vec<String>> {
        self.deliveries_by_name(topology)
            .into_iter()
            .map(|(from, row)| (from, row.into_keys().collect()))
            .collect()
    }

    pub fn expected(&self, from: NodeId, to: NodeId) -> u64 {
        self.deliveries
            .iter()
            .find(|(f, _)| *f == from)
            .and_then(|(_, row)| row.iter().find(|(t, _)| *t == to))
            .map_or(0, |(_, n)| *n)
    }
}

/// Analyses `topology` (already compiled). Errors (relay cycles) mean the
/// topology must not run; warnings are advice.
pub fn analyze(topology: &Topology, graph: LinkGraph) -> (Option<Analysis>, Vec<Diagnostic>) {
    let states = RelayStates::new(topology, &graph);
    let cycles = states.cycles();
    if !cycles.is_empty() {
        let errors = cycles
            .into_iter()
            .map(|path| {
                let names: Vec<&str> = path
                    .iter()
                    .map(|id| topology.node(*id).name.as_str())
                    .collect();
                Diagnostic::error(
                    topology.node(path[0]).span,
                    format!(
                        "relay cycle {}: a message would circulate forever",
                        names.join(" -> ")
                    ),
                )
            })
            .collect();
        return (None, errors);
    }
    let deliveries = states.deliveries();
    let analysis = Analysis { graph, deliveries };
    let warnings = warnings(topology, &analysis);
    (Some(analysis), warnings)
}

struct RelayStates<'a> {
    topology: &'a Topology,
    graph: &'a LinkGraph,
}

/// (node, the kind of link it arrived by; `Via::Zmq` also for a client's message)
type State = (NodeId, Via);

const STATES_PER_NODE: usize = 3;

impl<'a> RelayStates<'a> {
    fn new(topology: &'a Topology, graph: &'a LinkGraph) -> Self {
        RelayStates { topology, graph }
    }

    /// The links a message may take out of `node`, given how it arrived.
    fn onward(&self, (node, came): State) -> impl Iterator<Item = (NodeId, &'a Link)> + 'a {
        self.graph
            .edges_directed(NodeIndex::new(node.0), Direction::Outgoing)
            .filter(move |e| came == Via::Zmq || e.weight().via() != came)
            .map(|e| (NodeId(e.target().index()), e.weight()))
    }

    fn forwards(&self, node: NodeId) -> bool {
        self.topology.node(node).relay
    }

    fn index(state: State) -> usize {
        let via = match state.1 {
            Via::Zmq => 0,
            Via::Redis => 1,
            Via::Amqp => 2,
        };
        state.0.0 * STATES_PER_NODE + via
    }

    /// One path per cycle found, as node ids with the first repeated at the end.
    fn cycles(&self) -> Vec<Vec<NodeId>> {
        const NEW: u8 = 0;
        const OPEN: u8 = 1;
        const DONE: u8 = 2;
        let mut mark = vec![NEW; self.topology.nodes.len() * STATES_PER_NODE];
        let mut found: Vec<Vec<NodeId>> = Vec::new();
        let mut reported: HashSet<Vec<NodeId>> = HashSet::new();
        for start in self.topology.node_ids().filter(|&n| self.forwards(n)) {
            for came in [Via::Zmq, Via::Redis, Via::Amqp] {
                let root = (start, came);
                if mark[Self::index(root)] != NEW {
                    continue;
                }
                // Iterative DFS: the path is the stack, so a back edge yields the cycle.
                let mut stack: Vec<(State, Vec<State>)> = vec![(root, self.next_states(root))];
                mark[Self::index(root)] = OPEN;
                while let Some((state, pending)) = stack.last_mut() {
                    let state = *state;
                    match pending.pop() {
                        Some(next) => match mark[Self::index(next)] {
                            NEW => {
                                mark[Self::index(next)] = OPEN;
                                let successors = self.next_states(next);
                                stack.push((next, successors));
                            }
                            OPEN => {
                                let at = stack.iter().position(|(s, _)| *s == next).unwrap_or(0);
                                let mut path: Vec<NodeId> =
                                    stack[at..].iter().map(|(s, _)| s.0).collect();
                                let mut key = path.clone();
                                key.sort_unstable();
                                key.dedup();
                                // Start at the cycle's first node in file order, so the
                                // message does not depend on where the search began.
                                let first = (0..path.len()).min_by_key(|&i| path[i]).unwrap_or(0);
                                path.rotate_left(first);
                                path.push(path[0]);
                                if reported.insert(key) {
                                    found.push(path);
                                }
                            }
                            _ => {}
                        },
                        None => {
                            mark[Self::index(state)] = DONE;
                            stack.pop();
                        }
                    }
                }
            }
        }
        found
    }

    fn next_states(&self, state: State) -> Vec<State> {
        self.onward(state)
            .filter(|(to, _)| self.forwards(*to))
            .map(|(to, link)| (to, link.via()))
            .collect()
    }

    /// Paths counted with memoised sums over relay states (the graph is a DAG
    /// of relay states once `cycles` found none).
    fn deliveries(&self) -> Vec<(NodeId, Vec<(NodeId, u64)>)> {
        let n = self.topology.nodes.len();
        let mut onward: Vec<Option<Vec<(NodeId, u64)>>> = vec![None; n * STATES_PER_NODE];
        let mut scratch = Counts::new(n);
        let mut out = Vec::new();
        for from in self.topology.node_ids() {
            if self.topology.node(from).http.is_none() {
                continue;
            }
            scratch.add(from, 1); // rule 1: its own clients, once
            for (to, link) in self.onward((from, Via::Zmq)) {
                scratch.add(to, 1);
                if self.forwards(to) {
                    let state = (to, link.via());
                    self.fill(state, &mut onward);
                    for &(node, count) in onward[Self::index(state)].as_deref().unwrap_or_default()
                    {
                        scratch.add(node, count);
                    }
                }
            }
            let mut row = scratch.drain();
            row.retain(|(to, _)| self.topology.node(*to).http.is_some());
            row.sort_by(|a, b| {
                self.topology
                    .node(a.0)
                    .name
                    .cmp(&self.topology.node(b.0).name)
            });
            out.push((from, row));
        }
        out
    }

    /// Computes, for `state` and every relay state after it, the deliveries
    /// caused by forwarding from there.
    fn fill(&self, root: State, memo: &mut [Option<Vec<(NodeId, u64)>>]) {
        if memo[Self::index(root)].is_some() {
            return;
        }
        let mut scratch = Counts::new(self.topology.nodes.len());
        let mut stack = vec![(root, false)];
        while let Some((state, expanded)) = stack.pop() {
            if memo[Self::index(state)].is_some() {
                continue;
            }
            if !expanded {
                stack.push((state, true));
                for next in self.next_states(state) {
                    if memo[Self::index(next)].is_none() {
                        stack.push((next, false));
                    }
                }
                continue;
            }
            for (to, link) in self.onward(state) {
                scratch.add(to, 1);
                if self.forwards(to) {
                    let next = (to, link.via());
                    for &(node, count) in memo[Self::index(next)].as_deref().unwrap_or_default() {
                        scratch.add(node, count);
                    }
                }
            }
            memo[Self::index(state)] = Some(scratch.drain());
        }
    }
}

/// A dense counter that remembers which slots it touched, so draining it
/// costs what was added, not the number of nodes.
struct Counts {
    counts: Vec<u64>,
    touched: Vec<NodeId>,
}

impl Counts {
    fn new(n: usize) -> Self {
        Counts {
            counts: vec![0; n],
            touched: Vec::new(),
        }
    }

    fn add(&mut self, node: NodeId, count: u64) {
        let slot = &mut self.counts[node.0];
        if *slot == 0 {
            self.touched.push(node);
        }
        // Path counts can grow exponentially in a layered relay mesh; cap, don't wrap.
        *slot = slot.saturating_add(count);
    }

    fn drain(&mut self) -> Vec<(NodeId, u64)> {
        self.touched
            .drain(..)
            .map(|node| (node, std::mem::take(&mut self.counts[node.0])))
            .collect()
    }
}

fn warnings(topology: &Topology, analysis: &Analysis) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut duplicates: BTreeMap<NodeId, Vec<(NodeId, u64)>> = BTreeMap::new();
    for (from, row) in &analysis.deliveries {
        for &(to, count) in row {
            if count > 1 {
                duplicates.entry(to).or_default().push((*from, count));
            }
        }
    }
    for (to, sources) in duplicates {
        let listed: Vec<String> = sources
            .iter()
            .take(5)
            .map(|(from, count)| format!("{count}× from `{}`", topology.node(*from).name))
            .collect();
        let more = if sources.len() > 5 {
            format!(" and {} more", sources.len() - 5)
        } else {
            String::new()
        };
        out.push(Diagnostic::warning(
            topology.node(to).span,
            format!(
                "duplicate delivery: clients of `{}` get each message {}{more}",
                topology.node(to).name,
                listed.join(", ")
            ),
        ));
    }
    if analysis.deliveries.len() >= 2 {
        let mut reached = vec![false; topology.nodes.len()];
        for (from, row) in &analysis.deliveries {
            row.iter()
                .filter(|(to, _)| to != from)
                .for_each(|(to, _)| reached[to.0] = true);
        }
        for (from, row) in &analysis.deliveries {
            let name = &topology.node(*from).name;
            let reaches = row.iter().any(|(to, _)| to != from);
            let message = match (reaches, reached[from.0]) {
                (true, true) => continue,
                (false, false) => format!(
                    "node `{name}` is isolated: its clients reach no other node and no other node reaches them"
                ),
                (false, true) => {
                    format!("partition: messages from `{name}`'s clients reach no other node")
                }
                (true, false) => {
                    format!("partition: no other node's messages reach the clients of `{name}`")
                }
            };
            out.push(Diagnostic::warning(topology.node(*from).span, message));
        }
    }
    out
}
