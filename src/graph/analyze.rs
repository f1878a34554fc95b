//! What the graph predicts (docs/topology-format.md, "Who receives what"): cycles through
//! relays, deliveries(X, Y) as the number of distinct relay paths, reach,
//! and the warnings that follow from them (duplicates, partitions).
//!
//! A relay state is (relay node, arrived by which kind of link): a relay
//! never forwards back onto the broker it came from, so where a message
//! arrived decides where it may go next. Paths are counted over those states.
//!
//! A NATS queue group takes each message once, so its edges are counted as
//! a choice ("exactly one of {b, c}") rather than as deliveries; a group
//! with one matching member is a plain delivery. Queue members are never
//! relays (the compiler refuses it), so a choice never travels further.

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
    /// For the same senders, in the same order: the queue groups their
    /// messages reach, each as the members one of which gets every copy.
    pub choices: Vec<(NodeId, Vec<Choice>)>,
}

/// `count` copies of a message, each delivered to exactly one of `among`
/// (a NATS queue group's members whose subscription matches).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// At least two nodes, in file order.
    pub among: Vec<NodeId>,
    pub count: u64,
}

pub use crate::config::expect::OneOf;

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

    /// The `one_of` object of `validate --format json`: for every sender
    /// whose messages reach a queue group, the groups' members. Empty when
    /// no message does (and then `validate` prints no `one_of` at all).
    pub fn one_of_by_name(&self, topology: &Topology) -> BTreeMap<String, Vec<OneOf>> {
        self.choices
            .iter()
            .filter(|(_, list)| !list.is_empty())
            .map(|(from, list)| {
                let mut list: Vec<OneOf> = list
                    .iter()
                    .map(|c| {
                        let mut among: Vec<String> = c
                            .among
                            .iter()
                            .map(|id| topology.node(*id).name.clone())
                            .collect();
                        among.sort();
                        OneOf {
                            among,
                            count: c.count,
                        }
                    })
                    .collect();
                list.sort_by(|a, b| a.among.cmp(&b.among));
                (topology.node(*from).name.clone(), list)
            })
            .collect()
    }

    /// The queue groups a message from `from` reaches.
    pub fn choices_of(&self, from: NodeId) -> &[Choice] {
        self.choices
            .iter()
            .find(|(f, _)| *f == from)
            .map_or(&[], |(_, list)| list.as_slice())
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
    let (deliveries, choices) = states.deliveries();
    let analysis = Analysis {
        graph,
        deliveries,
        choices,
    };
    let warnings = warnings(topology, &analysis);
    (Some(analysis), warnings)
}

struct RelayStates<'a> {
    topology: &'a Topology,
    graph: &'a LinkGraph,
}

/// (node, the kind of link it arrived by)
type State = (NodeId, Via);

/// What forwarding from one state causes: deliveries, and copies taken by
/// queue groups (keyed by their members, in file order).
#[derive(Clone, Debug, Default)]
struct Reached {
    counts: Vec<(NodeId, u64)>,
    choices: BTreeMap<Vec<NodeId>, u64>,
}

impl<'a> RelayStates<'a> {
    fn new(topology: &'a Topology, graph: &'a LinkGraph) -> Self {
        RelayStates { topology, graph }
    }

    /// The links a message may take out of `node`, given how it arrived
    /// (never back onto the kind of broker it came by).
    fn links(&self, (node, via): State) -> impl Iterator<Item = (NodeId, &'a Link)> + 'a {
        self.graph
            .edges_directed(NodeIndex::new(node.0), Direction::Outgoing)
            .filter(move |e| via == Via::Direct || e.weight().via() != via)
            .map(|e| (NodeId(e.target().index()), e.weight()))
    }

    /// The links that deliver one by one (all but queue-group edges).
    fn onward(&self, state: State) -> impl Iterator<Item = (NodeId, &'a Link)> + 'a {
        self.links(state).filter(|(_, link)| !link.is_queue())
    }

    /// The queue groups one copy leaving `state` reaches: the members of
    /// each (by the group's name; one space per publisher), in file order.
    fn groups(&self, state: State) -> Vec<Vec<NodeId>> {
        let mut groups: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
        for (to, _) in self.links(state).filter(|(_, link)| link.is_queue()) {
            let queue = self
                .topology
                .node(to)
                .nats
                .as_ref()
                .and_then(|n| n.queue.as_deref());
            let members = groups.entry(queue.unwrap_or_default()).or_default();
            if !members.contains(&to) {
                members.push(to);
            }
        }
        groups
            .into_values()
            .map(|mut m| {
                m.sort_unstable();
                m
            })
            .collect()
    }

    /// Adds what the queue groups reached from `state` take: a group with
    /// one member is a delivery, a larger one a choice.
    fn choose(&self, state: State, counts: &mut Counts, choices: &mut BTreeMap<Vec<NodeId>, u64>) {
        for members in self.groups(state) {
            match members.as_slice() {
                [only] => counts.add(*only, 1),
                _ => {
                    let slot = choices.entry(members).or_default();
                    *slot = slot.saturating_add(1);
                }
            }
        }
    }

    fn forwards(&self, node: NodeId) -> bool {
        self.topology.node(node).relay
    }

    fn index(state: State) -> usize {
        state.0.0 * Via::ALL.len() + state.1.index()
    }

    /// One path per cycle found, as node ids with the first repeated at the end.
    fn cycles(&self) -> Vec<Vec<NodeId>> {
        const NEW: u8 = 0;
        const OPEN: u8 = 1;
        const DONE: u8 = 2;
        let mut mark = vec![NEW; self.topology.nodes.len() * Via::ALL.len()];
        let mut found: Vec<Vec<NodeId>> = Vec::new();
        let mut reported: HashSet<Vec<NodeId>> = HashSet::new();
        for start in self.topology.node_ids().filter(|&n| self.forwards(n)) {
            for via in Via::ALL {
                let root = (start, via);
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
    #[allow(clippy::type_complexity)]
    fn deliveries(
        &self,
    ) -> (
        Vec<(NodeId, Vec<(NodeId, u64)>)>,
        Vec<(NodeId, Vec<Choice>)>,
    ) {
        let n = self.topology.nodes.len();
        let mut memo: Vec<Option<Reached>> = vec![None; n * Via::ALL.len()];
        let mut scratch = Counts::new(n);
        let (mut out, mut chosen) = (Vec::new(), Vec::new());
        for from in self.topology.node_ids() {
            if self.topology.node(from).http.is_none() {
                continue;
            }
            let mut choices = BTreeMap::new();
            scratch.add(from, 1); // rule 1: its own clients, once
            let start = (from, Via::Direct);
            self.choose(start, &mut scratch, &mut choices);
            for (to, link) in self.onward(start) {
                scratch.add(to, 1);
                if self.forwards(to) {
                    let state = (to, link.via());
                    self.fill(state, &mut memo);
                    let reached = memo[Self::index(state)].as_ref().expect("filled");
                    merge(reached, &mut scratch, &mut choices);
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
            let choices = choices
                .into_iter()
                .map(|(among, count)| Choice { among, count })
                .collect();
            chosen.push((from, choices));
        }
        (out, chosen)
    }

    /// Computes, for `state` and every relay state after it, the deliveries
    /// caused by forwarding from there.
    fn fill(&self, root: State, memo: &mut [Option<Reached>]) {
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
            let mut choices = BTreeMap::new();
            self.choose(state, &mut scratch, &mut choices);
            for (to, link) in self.onward(state) {
                scratch.add(to, 1);
                if self.forwards(to) {
                    let next = (to, link.via());
                    if let Some(reached) = memo[Self::index(next)].as_ref() {
                        merge(reached, &mut scratch, &mut choices);
                    }
                }
            }
            memo[Self::index(state)] = Some(Reached {
                counts: scratch.drain(),
                choices,
            });
        }
    }
}

fn merge(reached: &Reached, counts: &mut Counts, choices: &mut BTreeMap<Vec<NodeId>, u64>) {
    for &(node, count) in &reached.counts {
        counts.add(node, count);
    }
    for (members, count) in &reached.choices {
        let slot = choices.entry(members.clone()).or_default();
        *slot = slot.saturating_add(*count);
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
        // A queue member reached by some copies is reached.
        let members = |from: NodeId| {
            analysis
                .choices_of(from)
                .iter()
                .flat_map(|c| c.among.iter().copied())
                .filter(move |to| *to != from && topology.node(*to).http.is_some())
        };
        for (from, _) in &analysis.choices {
            members(*from).for_each(|to| reached[to.0] = true);
        }
        for (from, row) in &analysis.deliveries {
            let name = &topology.node(*from).name;
            let reaches = row.iter().any(|(to, _)| to != from) || members(*from).next().is_some();
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

#[cfg(test)]
mod tests {
    use crate::check::check_str;

    /// x publishes on NATS and on ZeroMQ; the relay forwards the ZeroMQ copy
    /// onto NATS: two copies reach the group, each to one of {b, c}; a
    /// group with one matching member is a plain delivery.
    #[test]
    fn copies_reaching_a_queue_group_are_choices_counted_per_copy() {
        let text = concat!(
            "nodes:\n",
            "  x: { http: 1, zmq: { pub: 11 }, nats: { broker: \"nats://h\", publish: chat.x, subscribe: [] } }\n",
            "  r: { relay: true, zmq: { sub: [x] }, nats: { broker: \"nats://h\", publish: chat.r, subscribe: [] } }\n",
            "  b: { http: 2, nats: { broker: \"nats://h\", publish: chat.b, subscribe: [\"chat.*\"], queue: g } }\n",
            "  c: { http: 3, nats: { broker: \"nats://h\", publish: chat.c, subscribe: [chat.x, chat.r, chat.b], queue: g } }\n",
        );
        let checked = check_str("t.yaml", "t", text.into(), &|_| None);
        let valid = checked.valid.as_ref().expect("valid");
        let one_of = valid.analysis.one_of_by_name(&valid.topology);
        assert_eq!(one_of.len(), 1, "{one_of:?}");
        assert_eq!(one_of["x"][0].among, ["b", "c"]);
        assert_eq!(one_of["x"][0].count, 2);
        let deliveries = valid.analysis.deliveries_by_name(&valid.topology);
        // b's message: c is the only other member matching chat.b.
        assert_eq!(deliveries["b"].get("c"), Some(&1));
        assert_eq!(deliveries["x"].get("b"), None);
        // b and c are reached, through the group: no partition warning for them.
        let rendered = checked.render();
        assert!(!rendered.contains("clients of `b`"), "{rendered}");
        assert!(!rendered.contains("clients of `c`"), "{rendered}");
    }
}
