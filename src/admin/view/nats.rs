//! NATS links on the live page, like Redis ones: node -> the vertex of its
//! subject space, and one edge back per filter, with their taps.

use super::{Edge, EdgeKind, Tap};
use crate::graph::render::nats_links;
use crate::model::Topology;

/// A NATS link like a Redis one: node -> its subject space's vertex
/// (labelled with the subject), and one edge back per filter (with the
/// queue group), whose traffic is the link's `via[filter]`.
pub(super) fn nats_view_edges(t: &Topology, out: &mut Vec<Edge>) {
    let links = nats_links(t);
    for (node, broker, subject) in links.publish {
        let name = &t.node(node).name;
        out.push(Edge {
            id: format!("npub:{name}"),
            kind: EdgeKind::NatsPub,
            from: format!("n:{name}"),
            to: format!("b:{}", t.nats_broker(broker).name),
            label: subject,
            relayed: t.node(node).relay,
            tap: Some(Tap::NatsSent { node: name.clone() }),
        });
    }
    for (broker, node, filter, queue) in links.subscribe {
        let name = &t.node(node).name;
        out.push(Edge {
            id: format!("nsub:{name}:{filter}"),
            kind: EdgeKind::NatsSub,
            from: format!("b:{}", t.nats_broker(broker).name),
            to: format!("n:{name}"),
            label: match queue {
                Some(q) => format!("{filter} (queue {q})"),
                None => filter.clone(),
            },
            relayed: false,
            tap: Some(Tap::NatsVia {
                node: name.clone(),
                key: filter,
            }),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::valid;
    use super::super::*;
    use crate::health::LinkState;

    /// NATS brokers of one subject space are one vertex; a publication
    /// reads the link's `sent`, a subscription its `via[filter]`.
    #[test]
    fn nats_links_go_through_one_vertex_per_subject_space_with_their_traffic() {
        let view = View::of(
            &valid(
                "brokers:\n  n: { url: 'nats://127.0.0.1:4222' }\n  m: { url: 'nats://127.0.0.1:4222,127.0.0.1:4223' }
nodes:
  a: { http: 8080, nats: { broker: n, publish: chat.a, subscribe: ['chat.>'] } }
  b: { http: 8081, nats: { broker: m, publish: chat.b, subscribe: [chat.a], queue: w } }
",
            ),
            0,
            &[],
        );
        let ids: Vec<&str> = view.brokers.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["b:n"]);
        let edges: Vec<(&str, &str, &str, &str)> = view
            .edges
            .iter()
            .map(|e| {
                (
                    e.id.as_str(),
                    e.from.as_str(),
                    e.to.as_str(),
                    e.label.as_str(),
                )
            })
            .collect();
        assert_eq!(
            edges,
            [
                ("npub:a", "n:a", "b:n", "chat.a"),
                ("npub:b", "n:b", "b:n", "chat.b"),
                ("nsub:a:chat.>", "b:n", "n:a", "chat.>"),
                ("nsub:b:chat.a", "b:n", "n:b", "chat.a (queue w)"),
            ]
        );
        let health = |n: u64| -> HashMap<String, Option<Health>> {
            let link = HealthLink {
                kind: LinkKind::Nats,
                endpoint: None,
                broker: Some("nats://127.0.0.1:4222".into()),
                state: LinkState::Up,
                sent: n,
                received: n,
                peers: None,
                rejected: None,
                dropped: None,
                via: Some([("chat.a".to_owned(), n)].into_iter().collect()),
                outbox: None,
                queue_depth: None,
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
        assert_eq!(stats.edges["npub:b"].delta, 4);
        assert_eq!(stats.edges["nsub:b:chat.a"].delta, 4);
        assert_eq!(stats.edges["nsub:b:chat.a"].state, "up");
        assert_eq!(stats.edges["npub:a"].state, "unknown");
    }
}
