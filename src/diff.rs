//! What a reload changes: `Diff { add, change, remove }` between the running
//! and the new topology (nodes matched by name, compared by their resolved
//! [`Wiring`]), each change carrying its one [`NodeDelta`] (restart or
//! in-place rewiring, and what happens to each link; see `delta`), and how
//! the predicted deliveries change. Pure values: it applies nothing
//! (`runtime::controller` does) and prints nothing (`cli` does).

pub mod delta;

use crate::check::Valid;
use crate::model::{Topology, Wiring};
pub use delta::{
    AmqpDelta, Entries, LinkDelta, NatsDelta, NatsRewire, NodeDelta, PubDelta, Rebind, RedisDelta,
    Restart, Resubscribe, SubDelta,
};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Diff {
    /// New nodes, in the new file's order.
    pub add: Vec<Wiring>,
    /// Nodes in both files whose wiring differs, in the new file's order.
    pub change: Vec<Change>,
    /// Nodes gone from the new file, in the old file's order.
    pub remove: Vec<Wiring>,
}

/// One node's change. `delta` is computed once, from `old` to `new`, by
/// [`Change::between`]; everything else reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub old: Wiring,
    pub new: Wiring,
    pub delta: NodeDelta,
}

impl Change {
    pub fn between(old: &Wiring, new: &Wiring) -> Change {
        Change {
            delta: NodeDelta::between(old, new),
            old: old.clone(),
            new: new.clone(),
        }
    }

    pub fn name(&self) -> &str {
        &self.new.name
    }

    /// The node stops and starts again (its clients are disconnected);
    /// otherwise it is rewired in place.
    pub fn restart(&self) -> bool {
        self.delta.restart.is_some()
    }

    /// One line per difference, e.g. `zmq sub + tcp://127.0.0.1:5002`.
    pub fn what(&self) -> Vec<String> {
        self.delta.lines(&self.old, &self.new)
    }
}

impl Diff {
    pub fn between(old: &Topology, new: &Topology) -> Diff {
        Diff::of_wirings(&wirings(old), &wirings(new))
    }

    /// Between what runs (whatever order it runs in) and a new file.
    pub fn of_wirings(old: &[Wiring], new: &[Wiring]) -> Diff {
        let find = |list: &[Wiring], name: &str| list.iter().position(|w| w.name == name);
        let mut diff = Diff::default();
        for w in new {
            match find(old, &w.name) {
                None => diff.add.push(w.clone()),
                Some(i) if old[i] != *w => diff.change.push(Change::between(&old[i], w)),
                Some(_) => {}
            }
        }
        diff.remove = old
            .iter()
            .filter(|w| find(new, &w.name).is_none())
            .cloned()
            .collect();
        diff
    }

    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.change.is_empty() && self.remove.is_empty()
    }

    /// One line for logs: `+c -d ~a(rewire) ~b(restart)`.
    pub fn summary(&self) -> String {
        if self.is_empty() {
            return "no node changed".into();
        }
        let mut parts: Vec<String> = Vec::new();
        parts.extend(self.add.iter().map(|w| format!("+{}", w.name)));
        parts.extend(self.remove.iter().map(|w| format!("-{}", w.name)));
        parts.extend(self.change.iter().map(|c| {
            let how = if c.restart() { "restart" } else { "rewire" };
            format!("~{}({how})", c.name())
        }));
        parts.join(" ")
    }
}

/// Every node's wiring, in file order.
pub fn wirings(t: &Topology) -> Vec<Wiring> {
    t.node_ids().map(|id| Wiring::of(t, id)).collect()
}

/// One cell of the deliveries matrix that a reload changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReachChange {
    pub from: String,
    pub to: String,
    pub old: u64,
    pub new: u64,
}

/// Cells of the deliveries matrix (by node name) whose count changes; a cell
/// absent on one side counts 0 (no client there, or no path).
pub fn reach_changes(old: &Valid, new: &Valid) -> Vec<ReachChange> {
    let a = old.analysis.deliveries_by_name(&old.topology);
    let b = new.analysis.deliveries_by_name(&new.topology);
    let get = |m: &BTreeMap<String, BTreeMap<String, u64>>, f: &str, t: &str| {
        m.get(f).and_then(|r| r.get(t)).copied().unwrap_or(0)
    };
    let mut cells = BTreeSet::new();
    for m in [&a, &b] {
        for (f, row) in m {
            for t in row.keys() {
                cells.insert((f.clone(), t.clone()));
            }
        }
    }
    // Listed in file order (the new file's, then removed nodes in the old
    // one's), as every table topo prints: `n2` before `n10`.
    let rank = |name: &str| {
        let at = |v: &Valid| v.topology.node_id(name).map(|id| id.0);
        match (at(new), at(old)) {
            (Some(i), _) => (0, i),
            (None, Some(i)) => (1, i),
            (None, None) => (2, 0),
        }
    };
    let mut cells: Vec<(String, String)> = cells.into_iter().collect();
    cells.sort_by_key(|(f, t)| (rank(f), rank(t)));
    cells
        .into_iter()
        .filter_map(|(from, to)| {
            let (old, new) = (get(&a, &from, &to), get(&b, &from, &to));
            (old != new).then_some(ReachChange { from, to, old, new })
        })
        .collect()
}

/// What `topo plan` and `topo diff` print.
pub fn plan_text(diff: &Diff, reach: &[ReachChange]) -> String {
    let mut out = String::new();
    if diff.is_empty() {
        out.push_str("no node changes\n");
    }
    for w in &diff.add {
        let _ = writeln!(out, "+ {} (start)", w.name);
    }
    for w in &diff.remove {
        let _ = writeln!(out, "- {} (stop; its clients get close code 1001)", w.name);
    }
    for c in &diff.change {
        let how = if c.restart() {
            "restart: its clients are disconnected"
        } else {
            "rewire in place: its clients stay connected"
        };
        let _ = writeln!(out, "~ {} ({how})", c.name());
        for line in c.what() {
            let _ = writeln!(out, "    {line}");
        }
    }
    if reach.is_empty() {
        out.push_str("deliveries: unchanged\n");
    } else {
        out.push_str("deliveries (sender -> receiver: old -> new)\n");
        for r in reach {
            let _ = writeln!(out, "  {} -> {}: {} -> {}", r.from, r.to, r.old, r.new);
        }
    }
    out
}

pub fn plan_json(diff: &Diff, reach: &[ReachChange]) -> serde_json::Value {
    json!({
        "add": diff.add.iter().map(|w| &w.name).collect::<Vec<_>>(),
        "remove": diff.remove.iter().map(|w| &w.name).collect::<Vec<_>>(),
        "change": diff.change.iter().map(|c| json!({
            "node": c.name(),
            "action": if c.restart() { "restart" } else { "rewire" },
            "what": c.what(),
        })).collect::<Vec<_>>(),
        "deliveries": reach.iter().map(|r| json!({
            "from": r.from, "to": r.to, "old": r.old, "new": r.new,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::check_bytes;

    fn valid(yaml: &str) -> Valid {
        let checked = check_bytes("t.yaml", "t", yaml.as_bytes(), &|_| None);
        let text = checked.render();
        checked.valid.unwrap_or_else(|| panic!("{text}"))
    }

    const BASE: &str = "nodes:
  a: { http: 9100, zmq: { pub: 9200, sub: [b] } }
  b: { http: 9101, zmq: { pub: 9201, sub: [a] } }
  c: { http: 9102 }
";

    /// The delta the node applies and the lines `plan` shows come from one
    /// classification (issue 14): a new broker moves the link, a new
    /// subscription on the same broker rewires it, a new topic keeps the
    /// PUB socket, a new filter reconnects the SUBs; each line comes from
    /// one part of the delta.
    #[test]
    fn one_delta_for_the_plan_and_the_node() {
        let file = |url: &str, subscribe: &str, topic: &str, prefix: &str| {
            format!(
                "nodes:\n  a: {{ http: 9100, zmq: {{ pub: 9200, topic: {topic}, sub: [b], filter: '{prefix}' }}, redis: {{ broker: \"{url}\", subscribe: [{subscribe}] }} }}\n  b: {{ http: 9101, zmq: {{ pub: 9201 }} }}\n"
            )
        };
        let wiring = |yaml: String| wirings(&valid(&yaml).topology).remove(0);
        let base = wiring(file("redis://h:1", "x", "t", ""));
        let y = Resubscribe {
            subscribe: Entries {
                add: vec!["y".into()],
                remove: Vec::new(),
            },
            ..Resubscribe::default()
        };
        let cases = [
            (
                file("redis://h:1", "x", "t", ""),
                RedisDelta::Keep,
                PubDelta::Keep,
                false,
                0,
            ),
            (
                file("redis://h:1", "x, y", "t2", ""),
                RedisDelta::Rewire(y.clone()),
                PubDelta::Topic,
                false,
                2,
            ),
            (
                file("redis://h:2", "x, y", "t", "a"),
                RedisDelta::Move(y),
                PubDelta::Keep,
                true,
                3,
            ),
        ];
        for (yaml, redis, publish, refilter, lines) in cases {
            let new = wiring(yaml);
            let change = Change::between(&base, &new);
            let links = &change.delta.links;
            assert_eq!((&links.redis, links.publish), (&redis, publish));
            assert_eq!(links.subscribe.refilter, refilter);
            assert!(links.subscribe.connect.is_empty() && links.subscribe.disconnect.is_empty());
            assert_eq!(change.delta.restart, None);
            let what = change.what();
            assert_eq!(what.len(), lines, "{what:?}");
            let moved = what.iter().any(|l| l.starts_with("redis broker"));
            assert_eq!(moved, matches!(redis, RedisDelta::Move(_)), "{what:?}");
        }
        let mut moved = base.clone();
        moved.publish.as_mut().unwrap().bind.set_port(9300);
        moved.http.as_mut().unwrap().set_port(9400);
        let delta = NodeDelta::between(&base, &moved);
        assert_eq!(delta.links.publish, PubDelta::Rebind);
        assert_eq!(delta.restart, Some(Restart::Http));
        let mut alone = base.clone();
        alone.redis = None;
        assert_eq!(
            LinkDelta::between(&base, &alone).redis,
            RedisDelta::Disconnect
        );
        assert_eq!(LinkDelta::between(&alone, &base).redis, RedisDelta::Connect);
    }

    /// Sharded and classic subscriptions are different commands: switching
    /// `sharded` on one cluster replaces the link (and says so).
    #[test]
    fn switching_sharded_replaces_the_link() {
        let file = |sharded: bool| {
            format!(
                "nodes:\n  a: {{ http: 9100, redis: {{ broker: \"redis+cluster://h:1,h:2\", sharded: {sharded} }} }}\n"
            )
        };
        let wiring = |yaml: String| wirings(&valid(&yaml).topology).remove(0);
        let change = Change::between(&wiring(file(false)), &wiring(file(true)));
        assert_eq!(
            change.delta.links.redis,
            RedisDelta::Remode(Resubscribe::default())
        );
        assert_eq!(change.what(), ["redis classic -> sharded"]);
    }

    #[test]
    fn the_same_file_reordered_changes_nothing() {
        let reordered = "# moved around
nodes:
  c: { http: 9102 }
  b: { http: 9101, zmq: { sub: [a], pub: 9201 } }
  a: { http: 9100, zmq: { pub: 9200, sub: [b] } }
";
        let d = Diff::between(&valid(BASE).topology, &valid(reordered).topology);
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn adds_removes_rewires_and_restarts() {
        let new = "nodes:
  a: { http: 9100, zmq: { pub: 9200, sub: [b, d], topic: chatx } }
  b: { http: 9111, zmq: { pub: 9201, sub: [a] } }
  d: { http: 9103, zmq: { pub: 9203 } }
";
        let (old, new) = (valid(BASE), valid(new));
        let d = Diff::between(&old.topology, &new.topology);
        assert_eq!(d.summary(), "+d -c ~a(rewire) ~b(restart)");
        assert_eq!(
            d.change[0].what(),
            [
                "zmq pub tcp://127.0.0.1:9200 topic \"chat\" -> tcp://127.0.0.1:9200 topic \"chatx\"",
                "zmq sub + tcp://127.0.0.1:9203"
            ]
        );
        assert_eq!(
            d.change[1].what(),
            ["http 127.0.0.1:9101 -> 127.0.0.1:9111"]
        );
        let text = plan_text(&d, &reach_changes(&old, &new));
        assert!(text.contains("  c -> c: 1 -> 0\n"), "{text}");
        assert!(text.contains("  d -> a: 0 -> 1\n"), "{text}");
    }

    #[test]
    fn moving_a_publisher_rewires_its_subscribers() {
        let new = BASE.replace("pub: 9200", "pub: 9300");
        let d = Diff::between(&valid(BASE).topology, &valid(&new).topology);
        assert_eq!(d.summary(), "~a(rewire) ~b(rewire)");
        assert_eq!(
            d.change[1].what(),
            [
                "zmq sub + tcp://127.0.0.1:9300",
                "zmq sub - tcp://127.0.0.1:9200"
            ]
        );
    }

    #[test]
    fn redis_changes_are_listed_one_by_one() {
        let old = "nodes:
  r: { http: 9100, redis: { broker: 'redis://127.0.0.1:9999', subscribe: [x, y] } }
";
        let new = "nodes:
  r: { http: 9100, relay: true, redis: { broker: 'redis://127.0.0.1:9999', publish: p, subscribe: [y, z], patterns: ['q.*'] } }
";
        let d = Diff::between(&valid(old).topology, &valid(new).topology);
        assert_eq!(
            d.change[0].what(),
            [
                "redis publish chat_messages -> p",
                "redis subscribe + z",
                "redis subscribe - x",
                "redis pattern + q.*",
                "relay on"
            ]
        );
        assert!(!d.change[0].restart());
    }

    #[test]
    fn limits_rewire_in_place_except_the_send_queue() {
        let old = "limits: { outbox: 10 }
nodes:
  a: { http: 9100 }
  b: { http: 9101 }
";
        let new = "limits: { outbox: 20, zmq_hwm: 50, ping_interval: 5s }
origins: ['http://x.test']
nodes:
  a: { http: 9100 }
  b: { http: 9101, limits: { send_queue: 8 } }
";
        let d = Diff::between(&valid(old).topology, &valid(new).topology);
        assert_eq!(d.summary(), "~a(rewire) ~b(restart)");
        assert_eq!(
            d.change[0].what(),
            [
                "limits outbox 10 -> 20",
                "limits zmq_hwm 1000 -> 50",
                "limits ping_interval 30s -> 5s",
                "origins any -> http://x.test"
            ]
        );
        assert_eq!(d.change[1].what()[0], "limits send_queue 1024 -> 8");
    }
}
