//! AMQP links on the live page, drawn like Redis brokers: one vertex per
//! exchange (server + vhost + exchange), node -> exchange for what the node
//! publishes and exchange -> node for its queue, with their taps.

use super::{Edge, EdgeKind, Tap, Vertex};
use crate::graph::render::amqp_edges;
use crate::model::{AmqpListing, Topology};

/// A node's AMQP wiring in one line (its vertex's `wiring`).
pub(super) fn amqp_wiring(a: &AmqpListing) -> String {
    let l = a.link;
    let queue = l
        .queue
        .as_deref()
        .map_or(String::new(), |q| format!(" queue {q}"));
    format!(
        "amqp {} exchange {} ({}) pub {:?} bind [{}]{queue}",
        a.broker.url,
        l.exchange,
        l.kind,
        l.publish,
        l.bind.join(",")
    )
}

/// The exchange vertices and the edges through them. A node's queue is one
/// edge whatever its bindings (labelled with them all): RabbitMQ hands the
/// node one stream, counted by the link's `received`, not per binding.
pub(super) fn amqp_view(t: &Topology) -> (Vec<Vertex>, Vec<Edge>) {
    let (exchanges, publish, consume) = amqp_edges(t);
    let id = |i: usize| format!("b:{}", exchanges[i].name);
    let mut edges = Vec::new();
    for (node, exchange, key) in publish {
        let name = &t.node(node).name;
        edges.push(Edge {
            id: format!("apub:{name}"),
            kind: EdgeKind::AmqpPub,
            from: format!("n:{name}"),
            to: id(exchange),
            label: key,
            relayed: t.node(node).relay,
            tap: Some(Tap::AmqpSent { node: name.clone() }),
        });
    }
    for (exchange, node, binding) in consume {
        let name = &t.node(node).name;
        let edge_id = format!("asub:{name}");
        // A node's bindings are consecutive: fold them into its one edge.
        if let Some(last) = edges.last_mut().filter(|e| e.id == edge_id) {
            last.label = format!("{}, {binding}", last.label);
            continue;
        }
        edges.push(Edge {
            id: edge_id,
            kind: EdgeKind::AmqpSub,
            from: id(exchange),
            to: format!("n:{name}"),
            label: binding,
            relayed: false,
            tap: Some(Tap::AmqpReceived { node: name.clone() }),
        });
    }
    let vertices = exchanges
        .into_iter()
        .map(|x| Vertex::broker(&x.name, x.url, x.label.replace('\n', " ")))
        .collect();
    (vertices, edges)
}

#[cfg(test)]
mod tests {
    use super::super::tests::valid;
    use super::super::*;
    use crate::health::LinkState;

    /// Two brokers naming one server and vhost share an exchange vertex; a
    /// publication reads the link's `sent`, a queue its `received`.
    #[test]
    fn amqp_links_go_through_one_vertex_per_exchange_with_their_traffic() {
        let view = View::of(
            &valid(
                "brokers:
  r: { url: 'amqp://guest:secret@127.0.0.1:5672/%2f' }
  s: { url: 'amqp://127.0.0.1:5672/%2f' }
  v: { url: 'amqp://127.0.0.1:5672/other' }
nodes:
  a: { http: 8080, amqp: { broker: r, exchange: rooms, type: topic, publish: room.x, bind: ['room.*', 'all.#'] } }
  b: { http: 8081, amqp: { broker: s, exchange: rooms, type: topic, publish: room.y, bind: [room.x], queue: qb } }
  c: { http: 8082, amqp: { broker: v, exchange: rooms } }
",
            ),
            0,
            &[],
        );
        let ids: Vec<&str> = view.brokers.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["b:rooms@r", "b:rooms@v"]);
        assert!(!view.brokers[0].url.as_ref().unwrap().contains("secret"));
        let edges: Vec<(&str, EdgeKind, &str, &str, &str)> = view
            .edges
            .iter()
            .map(|e| {
                let (id, from, to, label) = (&e.id, &e.from, &e.to, &e.label);
                (
                    id.as_str(),
                    e.kind,
                    from.as_str(),
                    to.as_str(),
                    label.as_str(),
                )
            })
            .collect();
        use EdgeKind::{AmqpPub as P, AmqpSub as S};
        assert_eq!(
            edges,
            [
                ("apub:a", P, "n:a", "b:rooms@r", "room.x"),
                ("apub:b", P, "n:b", "b:rooms@r", "room.y"),
                ("apub:c", P, "n:c", "b:rooms@v", "rooms"),
                ("asub:a", S, "b:rooms@r", "n:a", "room.*, all.#"),
                ("asub:b", S, "b:rooms@r", "n:b", "room.x [qb]"),
                ("asub:c", S, "b:rooms@v", "n:c", "rooms"),
            ]
        );
        let health = |n: u64| -> HashMap<String, Option<Health>> {
            let link = HealthLink {
                kind: LinkKind::Amqp,
                endpoint: None,
                broker: Some("amqp://127.0.0.1:5672".into()),
                state: LinkState::Up,
                sent: n,
                received: 2 * n,
                peers: None,
                rejected: None,
                dropped: None,
                via: None,
                outbox: None,
                queue_depth: Some(0),
                unconfirmed: None,
                repeated: None,
            };
            let b = Health {
                links: vec![link],
                ..Health::default()
            };
            [("a".into(), None), ("b".into(), Some(b))].into()
        };
        let mut previous = Previous::default();
        sample(&view, &health(3), &mut previous, 1.0);
        let stats = sample(&view, &health(7), &mut previous, 1.0);
        assert_eq!(stats.edges["apub:b"].delta, 4);
        assert_eq!(stats.edges["asub:b"].delta, 8);
        assert_eq!(stats.edges["asub:b"].state, "up");
        assert_eq!(stats.edges["apub:a"].state, "unknown");
    }
}
