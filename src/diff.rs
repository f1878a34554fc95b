//! What a reload changes: `Diff { add, change, remove }` between the running
//! and the new topology (nodes matched by name, compared by their resolved
//! [`Wiring`]), each change classified as in-place rewiring or a restart,
//! and how the predicted deliveries change. Pure values: it applies nothing
//! (`runtime::controller` does) and prints nothing (`cli` does).

use crate::check::Valid;
use crate::model::{Limits, Topology, Wiring};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Diff {
    /// New nodes, in the new file's order.
    pub add: Vec<Wiring>,
    /// Nodes in both files whose wiring differs, in the new file's order.
    pub change: Vec<Change>,
    /// Nodes gone from the new file, in the old file's order.
    pub remove: Vec<Wiring>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub old: Wiring,
    pub new: Wiring,
    /// True when the node's own HTTP address or its `limits.send_queue`
    /// changed: its server, or the hub its clients read from, cannot change
    /// in place (see [`needs_restart`]). Everything else is rewired in place.
    pub restart: bool,
    /// One line per difference, e.g. `zmq sub + tcp://127.0.0.1:5002`.
    pub what: Vec<String>,
}

impl Change {
    pub fn name(&self) -> &str {
        &self.new.name
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
                Some(i) if old[i] != *w => diff.change.push(Change {
                    old: old[i].clone(),
                    new: w.clone(),
                    restart: needs_restart(&old[i], w),
                    what: describe(&old[i], w),
                }),
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
            let how = if c.restart { "restart" } else { "rewire" };
            format!("~{}({how})", c.name())
        }));
        parts.join(" ")
    }
}

/// Every node's wiring, in file order.
pub fn wirings(t: &Topology) -> Vec<Wiring> {
    t.node_ids().map(|id| Wiring::of(t, id)).collect()
}

/// How one node's links go from one wiring to another: the one
/// classification that `plan`/`diff` render and the node applies
/// (`node::wiring`), so that the two cannot disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkDelta {
    pub publish: PubDelta,
    pub redis: RedisDelta,
}

/// The ZeroMQ PUB socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PubDelta {
    /// Same socket (a new topic is applied to it in place).
    Keep,
    /// Another bind address, a new socket, or none any more.
    Rebind,
}

/// The Redis link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisDelta {
    Keep,
    /// Same server: SUBSCRIBE/UNSUBSCRIBE (and a new channel) on the live link.
    Rewire,
    /// Another server, a new link, or none any more: connect anew.
    Replace,
}

impl LinkDelta {
    pub fn between(old: &Wiring, new: &Wiring) -> LinkDelta {
        let bind = |w: &Wiring| w.publish.as_ref().map(|p| p.bind);
        let publish = if bind(old) == bind(new) {
            PubDelta::Keep
        } else {
            PubDelta::Rebind
        };
        let redis = match (&old.redis, &new.redis) {
            (None, None) => RedisDelta::Keep,
            (Some(a), Some(b)) if a == b => RedisDelta::Keep,
            // Sharded and classic subscriptions are different commands:
            // switching between them starts the link afresh.
            (Some(a), Some(b)) if a.url == b.url && a.sharded == b.sharded => RedisDelta::Rewire,
            _ => RedisDelta::Replace,
        };
        LinkDelta { publish, redis }
    }
}

/// Whether a node must be stopped and started again to run `new`: its HTTP
/// server cannot move, and its clients' send queues are sized when they
/// join. Every other difference (links, relay, other limits) is applied in
/// place; client limits then hold for connections accepted after the reload.
pub fn needs_restart(old: &Wiring, new: &Wiring) -> bool {
    old.http != new.http || old.limits.send_queue != new.limits.send_queue
}

/// Every difference between two wirings of one node, for people.
pub fn describe(old: &Wiring, new: &Wiring) -> Vec<String> {
    let mut what = Vec::new();
    let addr = |a: &Option<std::net::SocketAddr>| a.map_or("none".to_owned(), |a| a.to_string());
    if old.http != new.http {
        what.push(format!("http {} -> {}", addr(&old.http), addr(&new.http)));
    }
    let publish = |w: &Wiring| {
        w.publish.as_ref().map_or("none".to_owned(), |p| {
            format!("tcp://{} topic {:?}", p.bind, p.topic)
        })
    };
    if old.publish != new.publish {
        what.push(format!("zmq pub {} -> {}", publish(old), publish(new)));
    }
    if old.filter != new.filter && !old.subscribe.is_empty() && !new.subscribe.is_empty() {
        what.push(format!("zmq filter {:?} -> {:?}", old.filter, new.filter));
    }
    let eps = |w: &Wiring| -> Vec<String> { w.subscribe.iter().map(|e| e.to_string()).collect() };
    set_changes(&mut what, "zmq sub", &eps(old), &eps(new));
    match (&old.redis, &new.redis, LinkDelta::between(old, new).redis) {
        (_, _, RedisDelta::Keep) | (None, None, _) => {}
        (None, Some(r), _) => what.push(format!("redis + {} publish {}", r.url, r.publish)),
        (Some(r), None, _) => what.push(format!("redis - {}", r.url)),
        (Some(a), Some(b), _) => {
            if a.url != b.url {
                what.push(format!("redis broker {} -> {}", a.url, b.url));
            }
            if a.sharded != b.sharded {
                let mode = |sharded: bool| if sharded { "sharded" } else { "classic" };
                what.push(format!("redis {} -> {}", mode(a.sharded), mode(b.sharded)));
            }
            if a.publish != b.publish {
                what.push(format!("redis publish {} -> {}", a.publish, b.publish));
            }
            set_changes(&mut what, "redis subscribe", &a.subscribe, &b.subscribe);
            set_changes(&mut what, "redis pattern", &a.patterns, &b.patterns);
        }
    }
    if old.relay != new.relay {
        what.push(format!("relay {}", if new.relay { "on" } else { "off" }));
    }
    describe_limits(&mut what, &old.limits, &new.limits);
    what
}

fn describe_limits(what: &mut Vec<String>, old: &Limits, new: &Limits) {
    let mut count = |key: &str, a: usize, b: usize| {
        if a != b {
            what.push(format!("limits {key} {a} -> {b}"));
        }
    };
    count(
        "max_message_bytes",
        old.max_message_bytes,
        new.max_message_bytes,
    );
    count("max_connections", old.max_connections, new.max_connections);
    count("send_queue", old.send_queue, new.send_queue);
    count("outbox", old.outbox, new.outbox);
    count("zmq_hwm", old.zmq_hwm, new.zmq_hwm);
    let mut time = |key: &str, a: Duration, b: Duration| {
        if a != b {
            what.push(format!("limits {key} {a:?} -> {b:?}"));
        }
    };
    time("ping_interval", old.ping_interval, new.ping_interval);
    time("idle_timeout", old.idle_timeout, new.idle_timeout);
    if old.origins != new.origins {
        let list = |o: &[String]| match o {
            [] => "any".to_owned(),
            o => o.join(", "),
        };
        what.push(format!(
            "origins {} -> {}",
            list(&old.origins),
            list(&new.origins)
        ));
    }
}

fn set_changes(what: &mut Vec<String>, label: &str, old: &[String], new: &[String]) {
    for x in new.iter().filter(|x| !old.contains(x)) {
        what.push(format!("{label} + {x}"));
    }
    for x in old.iter().filter(|x| !new.contains(x)) {
        what.push(format!("{label} - {x}"));
    }
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
        let how = if c.restart {
            "restart: its clients are disconnected"
        } else {
            "rewire in place: its clients stay connected"
        };
        let _ = writeln!(out, "~ {} ({how})", c.name());
        for line in &c.what {
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
            "action": if c.restart { "restart" } else { "rewire" },
            "what": c.what,
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
    /// classification (issue 14): a new broker replaces the link, a new
    /// subscription on the same broker rewires it, a new topic keeps the PUB.
    #[test]
    fn one_link_delta_for_the_plan_and_the_node() {
        let file = |url: &str, subscribe: &str, topic: &str| {
            format!(
                "nodes:\n  a: {{ http: 9100, zmq: {{ pub: 9200, topic: {topic} }}, redis: {{ broker: \"{url}\", subscribe: [{subscribe}] }} }}\n"
            )
        };
        let wiring = |yaml: String| wirings(&valid(&yaml).topology).remove(0);
        let base = wiring(file("redis://h:1", "x", "t"));
        let cases = [
            (
                file("redis://h:1", "x", "t"),
                RedisDelta::Keep,
                PubDelta::Keep,
            ),
            (
                file("redis://h:1", "x, y", "t2"),
                RedisDelta::Rewire,
                PubDelta::Keep,
            ),
            (
                file("redis://h:2", "x", "t"),
                RedisDelta::Replace,
                PubDelta::Keep,
            ),
        ];
        for (yaml, redis, publish) in cases {
            let new = wiring(yaml);
            let delta = LinkDelta::between(&base, &new);
            assert_eq!(delta, LinkDelta { publish, redis });
            let what = describe(&base, &new);
            let replaced = what.iter().any(|l| l.starts_with("redis broker"));
            assert_eq!(replaced, redis == RedisDelta::Replace, "{what:?}");
        }
        let mut moved = base.clone();
        moved.publish.as_mut().unwrap().bind.set_port(9300);
        assert_eq!(LinkDelta::between(&base, &moved).publish, PubDelta::Rebind);
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
            d.change[0].what,
            [
                "zmq pub tcp://127.0.0.1:9200 topic \"chat\" -> tcp://127.0.0.1:9200 topic \"chatx\"",
                "zmq sub + tcp://127.0.0.1:9203"
            ]
        );
        assert_eq!(d.change[1].what, ["http 127.0.0.1:9101 -> 127.0.0.1:9111"]);
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
            d.change[1].what,
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
            d.change[0].what,
            [
                "redis publish chat_messages -> p",
                "redis subscribe + z",
                "redis subscribe - x",
                "redis pattern + q.*",
                "relay on"
            ]
        );
        assert!(!d.change[0].restart);
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
            d.change[0].what,
            [
                "limits outbox 10 -> 20",
                "limits zmq_hwm 1000 -> 50",
                "limits ping_interval 30s -> 5s",
                "origins any -> http://x.test"
            ]
        );
        assert_eq!(d.change[1].what[0], "limits send_queue 1024 -> 8");
    }
}
