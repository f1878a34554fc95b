//! What a change does to one running node, decided once: [`NodeDelta`] says
//! whether the node restarts and what happens to each of its links. The
//! same value is rendered by `plan`/`diff` ([`NodeDelta::lines`]), chosen
//! from by the controller (restart or rewire) and applied by the node
//! (`node::wiring`), which never compares two wirings itself. Starting a
//! node is the delta from nothing; a fault switch is the delta from what the
//! node runs to its faulted wiring (`runtime::faults`). Pure values.
//!
//! Adding a link kind (AMQP, NATS, ...) is local: a field of [`LinkDelta`]
//! with its own enum (copy [`RedisDelta`] for a broker link: `Keep`,
//! `Connect`, `Disconnect`, `Rewire(what changes in place)`, `Move`;
//! `Remode` is Redis's own: classic to sharded pub/sub), its
//! arm in [`LinkDelta::between`] and in [`NodeDelta::lines`], and its slot
//! in `node::wiring` that applies it. Nothing else classifies a change.

use crate::model::{AmqpWiring, Endpoint, Limits, NatsWiring, RedisWiring, Wiring};
use std::time::Duration;

/// One node's change: computed by [`NodeDelta::between`], nowhere else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeDelta {
    /// Why the node must stop and start again; `None`: rewired in place.
    pub restart: Option<Restart>,
    /// What happens to its links when it is rewired in place. The relay
    /// switch and the limits are no links: the node applies them whole on
    /// every rewiring (cheap and idempotent), so they need no classifying.
    pub links: LinkDelta,
}

/// What cannot change while a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Its HTTP server cannot move.
    Http,
    /// Its clients' send queues are sized when they join.
    SendQueue,
}

impl std::fmt::Display for Restart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Restart::Http => "its HTTP address moved",
            Restart::SendQueue => "its send_queue changed",
        })
    }
}

/// How each of a node's links goes from one wiring to the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkDelta {
    pub publish: PubDelta,
    pub subscribe: SubDelta,
    pub redis: RedisDelta,
    pub amqp: AmqpDelta,
    pub nats: NatsDelta,
}

/// The AMQP link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AmqpDelta {
    Keep,
    /// A link where there was none.
    Connect,
    /// No link any more.
    Disconnect,
    /// Same server, exchange and queue: these changes are made on the live
    /// link (queue.bind / queue.unbind, the routing key, basic.qos).
    Rewire(Rebind),
    /// Another server, exchange, exchange type or queue (or queue bound): a
    /// new link replaces the old one.
    Move,
}

/// What changes on a live AMQP link.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rebind {
    /// The routing key of what the node publishes.
    pub publish: bool,
    /// Binding keys of the node's queue.
    pub bind: Entries,
    /// Unacknowledged deliveries in flight.
    pub prefetch: bool,
}

/// The NATS link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NatsDelta {
    Keep,
    /// A link where there was none.
    Connect,
    /// No link any more.
    Disconnect,
    /// Same servers and credentials: the connection stays, these changes
    /// are made on it (SUB/UNSUB, the subject the publisher uses).
    Rewire(NatsRewire),
    /// Other servers (or credentials, TLS): a new connection replaces the
    /// old. What else changed is only listed for people.
    Move(NatsRewire),
}

/// What a NATS link subscribes to and publishes on, old to new.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatsRewire {
    /// The publish subject changed.
    pub publish: bool,
    /// Filters subscribed and unsubscribed.
    pub subscribe: Entries,
    /// The queue group changed: a subscription's group is fixed when it is
    /// made, so every filter is subscribed again in the new group (and the
    /// old subscriptions dropped), the connection staying.
    pub queue: bool,
}

/// The ZeroMQ PUB socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PubDelta {
    Keep,
    /// Same socket, another topic (applied to it in place).
    Topic,
    /// Another bind address, a new socket, or none any more.
    Rebind,
}

/// The ZeroMQ SUB sockets, one per endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubDelta {
    /// Endpoints to connect to, in the new file's order.
    pub connect: Vec<Endpoint>,
    /// Endpoints to disconnect from, in the old file's order.
    pub disconnect: Vec<Endpoint>,
    /// The prefix of SUBs that stay changed: a SUB's filter is set before it
    /// connects, so every SUB reconnects with the new one.
    pub refilter: bool,
}

/// The Redis link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisDelta {
    Keep,
    /// A link where there was none.
    Connect,
    /// No link any more.
    Disconnect,
    /// Same server: these changes are made on the live link.
    Rewire(Resubscribe),
    /// Another server (or other credentials): a new link replaces the old.
    /// What else changed is only listed for people.
    Move(Resubscribe),
    /// Same server, `sharded` switched on or off: sharded and classic
    /// subscriptions are different commands (SSUBSCRIBE, SUBSCRIBE), so a
    /// new link replaces the old, like [`RedisDelta::Move`].
    Remode(Resubscribe),
}

/// What a broker link subscribes to and publishes on, old to new.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resubscribe {
    /// The publish channel changed.
    pub publish: bool,
    /// SUBSCRIBE / UNSUBSCRIBE.
    pub subscribe: Entries,
    /// PSUBSCRIBE / PUNSUBSCRIBE.
    pub patterns: Entries,
}

/// Entries of a list that come and go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entries {
    /// In the new list's order.
    pub add: Vec<String>,
    /// In the old list's order.
    pub remove: Vec<String>,
}

impl Entries {
    pub fn between(old: &[String], new: &[String]) -> Entries {
        Entries {
            add: minus(new, old),
            remove: minus(old, new),
        }
    }
}

fn minus<T: Clone + PartialEq>(a: &[T], b: &[T]) -> Vec<T> {
    a.iter().filter(|x| !b.contains(x)).cloned().collect()
}

impl NodeDelta {
    pub fn between(old: &Wiring, new: &Wiring) -> NodeDelta {
        // Every other difference (links, relay, other limits) is applied in
        // place; client limits then hold for connections accepted after it.
        let restart = if old.http != new.http {
            Some(Restart::Http)
        } else if old.limits.send_queue != new.limits.send_queue {
            Some(Restart::SendQueue)
        } else {
            None
        };
        NodeDelta {
            restart,
            links: LinkDelta::between(old, new),
        }
    }

    /// Every difference, one line each, for people: what `plan` and `diff`
    /// print under the node and the controller logs. `old` and `new` are the
    /// wirings the delta was computed from (the lines show their values).
    pub fn lines(&self, old: &Wiring, new: &Wiring) -> Vec<String> {
        let mut what = Vec::new();
        let addr =
            |a: &Option<std::net::SocketAddr>| a.map_or("none".to_owned(), |a| a.to_string());
        if old.http != new.http {
            what.push(format!("http {} -> {}", addr(&old.http), addr(&new.http)));
        }
        let publish = |w: &Wiring| {
            w.publish.as_ref().map_or("none".to_owned(), |p| {
                format!("tcp://{} topic {:?}", p.bind, p.topic)
            })
        };
        if self.links.publish != PubDelta::Keep {
            what.push(format!("zmq pub {} -> {}", publish(old), publish(new)));
        }
        let subs = &self.links.subscribe;
        if subs.refilter {
            what.push(format!("zmq filter {:?} -> {:?}", old.filter, new.filter));
        }
        what.extend(subs.connect.iter().map(|e| format!("zmq sub + {e}")));
        what.extend(subs.disconnect.iter().map(|e| format!("zmq sub - {e}")));
        redis_lines(&mut what, &self.links.redis, &old.redis, &new.redis);
        amqp_lines(&mut what, &self.links.amqp, &old.amqp, &new.amqp);
        nats_lines(&mut what, &self.links.nats, &old.nats, &new.nats);
        if old.relay != new.relay {
            what.push(format!("relay {}", if new.relay { "on" } else { "off" }));
        }
        limit_lines(&mut what, &old.limits, &new.limits);
        what
    }
}

impl LinkDelta {
    pub fn between(old: &Wiring, new: &Wiring) -> LinkDelta {
        let publish = match (&old.publish, &new.publish) {
            (a, b) if a == b => PubDelta::Keep,
            (Some(a), Some(b)) if a.bind == b.bind => PubDelta::Topic,
            _ => PubDelta::Rebind,
        };
        let has_subs = !old.subscribe.is_empty() && !new.subscribe.is_empty();
        let subscribe = SubDelta {
            connect: minus(&new.subscribe, &old.subscribe),
            disconnect: minus(&old.subscribe, &new.subscribe),
            refilter: has_subs && old.filter != new.filter,
        };
        let redis = match (&old.redis, &new.redis) {
            (a, b) if a == b => RedisDelta::Keep,
            (None, Some(_)) => RedisDelta::Connect,
            (Some(_), None) => RedisDelta::Disconnect,
            (Some(a), Some(b)) => {
                let entries = Resubscribe {
                    publish: a.publish != b.publish,
                    subscribe: Entries::between(&a.subscribe, &b.subscribe),
                    patterns: Entries::between(&a.patterns, &b.patterns),
                };
                if a.url != b.url {
                    RedisDelta::Move(entries)
                } else if a.sharded != b.sharded {
                    RedisDelta::Remode(entries)
                } else {
                    RedisDelta::Rewire(entries)
                }
            }
            (None, None) => RedisDelta::Keep,
        };
        // The outbox is resized in place (like Redis's): no link change.
        let nats = match (&old.nats, &new.nats) {
            (a, b) if a == b => NatsDelta::Keep,
            (None, Some(_)) => NatsDelta::Connect,
            (Some(_), None) => NatsDelta::Disconnect,
            (Some(a), Some(b)) => {
                let rewire = NatsRewire {
                    publish: a.publish != b.publish,
                    subscribe: Entries::between(&a.subscribe, &b.subscribe),
                    queue: a.queue != b.queue,
                };
                if a.url == b.url {
                    NatsDelta::Rewire(rewire)
                } else {
                    NatsDelta::Move(rewire)
                }
            }
            (None, None) => NatsDelta::Keep,
        };
        LinkDelta {
            publish,
            subscribe,
            redis,
            amqp: AmqpDelta::between(&old.amqp, &new.amqp),
            nats,
        }
    }
}

impl AmqpDelta {
    fn between(old: &Option<AmqpWiring>, new: &Option<AmqpWiring>) -> AmqpDelta {
        match (old, new) {
            (a, b) if a == b => AmqpDelta::Keep,
            (None, Some(_)) => AmqpDelta::Connect,
            (Some(_), None) => AmqpDelta::Disconnect,
            (Some(a), Some(b)) => {
                let same_queue = a.url == b.url
                    && a.exchange == b.exchange
                    && a.kind == b.kind
                    && a.queue == b.queue
                    && a.max_length == b.max_length;
                if same_queue {
                    AmqpDelta::Rewire(Rebind {
                        publish: a.publish != b.publish,
                        bind: Entries::between(&a.bind, &b.bind),
                        prefetch: a.prefetch != b.prefetch,
                    })
                } else {
                    AmqpDelta::Move
                }
            }
            (None, None) => AmqpDelta::Keep,
        }
    }
}

fn amqp_lines(
    what: &mut Vec<String>,
    delta: &AmqpDelta,
    old: &Option<AmqpWiring>,
    new: &Option<AmqpWiring>,
) {
    let shown = |w: &AmqpWiring| {
        let queue = w
            .queue
            .as_deref()
            .map_or(String::new(), |q| format!(" queue {q}"));
        format!("{} exchange {} ({}){queue}", w.url, w.exchange, w.kind)
    };
    match (delta, old, new) {
        (AmqpDelta::Connect, _, Some(b)) => what.push(format!("amqp + {}", shown(b))),
        (AmqpDelta::Disconnect, Some(a), _) => what.push(format!("amqp - {}", shown(a))),
        (AmqpDelta::Move, Some(a), Some(b)) => {
            what.push(format!("amqp {} -> {}", shown(a), shown(b)))
        }
        (AmqpDelta::Rewire(rebind), Some(a), Some(b)) => {
            if rebind.publish {
                what.push(format!("amqp publish {:?} -> {:?}", a.publish, b.publish));
            }
            entry_lines(what, "amqp bind", &rebind.bind);
            if rebind.prefetch {
                what.push(format!("amqp prefetch {} -> {}", a.prefetch, b.prefetch));
            }
        }
        _ => {}
    }
}

fn redis_lines(
    what: &mut Vec<String>,
    delta: &RedisDelta,
    old: &Option<RedisWiring>,
    new: &Option<RedisWiring>,
) {
    let (entries, a, b) = match (delta, old, new) {
        (RedisDelta::Connect, _, Some(b)) => {
            what.push(format!("redis + {} publish {}", b.url, b.publish));
            return;
        }
        (RedisDelta::Disconnect, Some(a), _) => {
            what.push(format!("redis - {}", a.url));
            return;
        }
        (RedisDelta::Move(entries), Some(a), Some(b)) => {
            what.push(format!("redis broker {} -> {}", a.url, b.url));
            (entries, a, b)
        }
        (RedisDelta::Remode(entries), Some(a), Some(b)) => {
            let mode = |w: &RedisWiring| if w.sharded { "sharded" } else { "classic" };
            what.push(format!("redis {} -> {}", mode(a), mode(b)));
            (entries, a, b)
        }
        (RedisDelta::Rewire(entries), Some(a), Some(b)) => (entries, a, b),
        _ => return,
    };
    if entries.publish {
        what.push(format!("redis publish {} -> {}", a.publish, b.publish));
    }
    entry_lines(what, "redis subscribe", &entries.subscribe);
    entry_lines(what, "redis pattern", &entries.patterns);
}

fn nats_lines(
    what: &mut Vec<String>,
    delta: &NatsDelta,
    old: &Option<NatsWiring>,
    new: &Option<NatsWiring>,
) {
    let queue = |n: &NatsWiring| n.queue.clone().unwrap_or_else(|| "none".to_owned());
    let (rewire, a, b) = match (delta, old, new) {
        (NatsDelta::Connect, _, Some(b)) => {
            let group = b
                .queue
                .as_ref()
                .map(|q| format!(" queue {q}"))
                .unwrap_or_default();
            what.push(format!(
                "nats + {} publish {} subscribe {}{group}",
                b.url,
                b.publish,
                b.subscribe.join(",")
            ));
            return;
        }
        (NatsDelta::Disconnect, Some(a), _) => {
            what.push(format!("nats - {}", a.url));
            return;
        }
        (NatsDelta::Move(rewire), Some(a), Some(b)) => {
            what.push(format!("nats broker {} -> {}", a.url, b.url));
            (rewire, a, b)
        }
        (NatsDelta::Rewire(rewire), Some(a), Some(b)) => (rewire, a, b),
        _ => return,
    };
    if rewire.publish {
        what.push(format!("nats publish {} -> {}", a.publish, b.publish));
    }
    if rewire.queue {
        what.push(format!(
            "nats queue {} -> {} (every filter subscribed again in it)",
            queue(a),
            queue(b)
        ));
    }
    entry_lines(what, "nats subscribe", &rewire.subscribe);
}

fn entry_lines(what: &mut Vec<String>, label: &str, entries: &Entries) {
    what.extend(entries.add.iter().map(|x| format!("{label} + {x}")));
    what.extend(entries.remove.iter().map(|x| format!("{label} - {x}")));
}

fn limit_lines(what: &mut Vec<String>, old: &Limits, new: &Limits) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(subs: &[u16], filter: &str) -> Wiring {
        Wiring {
            name: "a".into(),
            http: None,
            publish: None,
            subscribe: subs
                .iter()
                .map(|&port| Endpoint {
                    host: "127.0.0.1".into(),
                    port,
                })
                .collect(),
            filter: filter.into(),
            redis: None,
            amqp: None,
            nats: None,
            relay: false,
            limits: Limits::default(),
        }
    }

    /// What the node connects and disconnects is exactly what `plan` lists,
    /// in the order it lists them; a new filter reconnects only when SUBs
    /// stay (from or to none, the connects and disconnects say it all).
    #[test]
    fn sub_sockets_come_and_go_as_listed() {
        let delta = NodeDelta::between(&node(&[1, 2, 3], "chat"), &node(&[4, 3, 5], "chat"));
        let ports = |e: &[Endpoint]| e.iter().map(|e| e.port).collect::<Vec<_>>();
        let subs = &delta.links.subscribe;
        assert_eq!(
            (ports(&subs.connect), ports(&subs.disconnect)),
            (vec![4, 5], vec![1, 2])
        );
        assert!(!subs.refilter);
        let (old, new) = (node(&[1, 2, 3], "chat"), node(&[4, 3, 5], "chat"));
        assert_eq!(
            delta.lines(&old, &new),
            [
                "zmq sub + tcp://127.0.0.1:4",
                "zmq sub + tcp://127.0.0.1:5",
                "zmq sub - tcp://127.0.0.1:1",
                "zmq sub - tcp://127.0.0.1:2"
            ]
        );
        let refilter = |a: &Wiring, b: &Wiring| LinkDelta::between(a, b).subscribe.refilter;
        assert!(refilter(&node(&[1], "chat"), &node(&[1], "x")));
        assert!(!refilter(&node(&[], ""), &node(&[1], "x")));
        assert!(!refilter(&node(&[1], "x"), &node(&[], "")));
    }

    /// A start is the delta from nothing: every link connects.
    #[test]
    fn a_start_is_the_delta_from_nothing() {
        let mut w = node(&[1], "chat");
        w.publish = Some(crate::model::ZmqPublish {
            bind: "127.0.0.1:9".parse().unwrap(),
            topic: "chat".into(),
        });
        let empty = Wiring {
            publish: None,
            subscribe: Vec::new(),
            filter: String::new(),
            ..w.clone()
        };
        let delta = NodeDelta::between(&empty, &w);
        assert_eq!(delta.restart, None);
        assert_eq!(delta.links.publish, PubDelta::Rebind);
        assert_eq!(delta.links.subscribe.connect, w.subscribe);
        assert_eq!(delta.links.redis, RedisDelta::Keep);
    }

    fn nats(url: &str, publish: &str, subscribe: &[&str], queue: Option<&str>) -> Wiring {
        let url = crate::model::NatsUrl {
            tls: false,
            servers: vec![crate::model::ServerKey {
                host: "127.0.0.1".into(),
                port: url.parse().unwrap(),
            }],
            auth: crate::model::NatsAuth::None,
            ca: None,
        };
        Wiring {
            nats: Some(NatsWiring {
                url,
                publish: publish.into(),
                subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
                queue: queue.map(str::to_owned),
            }),
            ..node(&[], "")
        }
    }

    /// Same servers: rewired on the connection, the lines naming each
    /// change; other servers: moved; only the outbox: kept (resized).
    #[test]
    fn a_nats_link_is_rewired_on_the_same_servers_and_moved_to_others() {
        let old = nats("4222", "chat.a", &["chat.b", "chat.c"], None);
        let new = nats("4222", "chat.x", &["chat.c", "chat.>"], Some("q"));
        let delta = NodeDelta::between(&old, &new);
        let rewire = NatsRewire {
            publish: true,
            subscribe: Entries {
                add: vec!["chat.>".into()],
                remove: vec!["chat.b".into()],
            },
            queue: true,
        };
        assert_eq!(delta.links.nats, NatsDelta::Rewire(rewire.clone()));
        assert_eq!(
            delta.lines(&old, &new),
            [
                "nats publish chat.a -> chat.x",
                "nats queue none -> q (every filter subscribed again in it)",
                "nats subscribe + chat.>",
                "nats subscribe - chat.b",
            ]
        );
        let moved = nats("4223", "chat.x", &["chat.c", "chat.>"], Some("q"));
        let delta = NodeDelta::between(&old, &moved);
        assert_eq!(delta.links.nats, NatsDelta::Move(rewire));
        assert_eq!(
            delta.lines(&old, &moved)[0],
            "nats broker nats://127.0.0.1:4222 -> nats://127.0.0.1:4223"
        );
        let mut bigger = old.clone();
        bigger.limits.outbox += 1;
        assert_eq!(
            NodeDelta::between(&old, &bigger).links.nats,
            NatsDelta::Keep
        );
    }
}
