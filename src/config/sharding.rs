//! What validation says about sharded pub/sub beyond each node's own
//! section (`compile.rs` checks `sharded:` itself): one channel used both
//! sharded and classic on one cluster.

use super::diagnostic::Diagnostic;
use super::spec::TopologySpec;
use super::yaml::Span;
use crate::model::{Broker, Node, ServerKey};
use std::collections::BTreeMap;

/// One channel used sharded by some nodes and classic by others on one
/// cluster: legal, but those two groups do not hear each other on it,
/// which is rarely what the file means. Reported once per channel, at
/// the first sharded node's redis section.
pub fn mixed_sharding(spec: &TopologySpec, nodes: &[Node], brokers: &[Broker]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    type Users<'n> = (Vec<(&'n str, Span)>, Vec<&'n str>);
    let mut channels: BTreeMap<(ServerKey, &str), Users<'_>> = BTreeMap::new();
    for (node, (_, s)) in nodes.iter().zip(&spec.nodes.0) {
        let (Some(redis), Some(written)) = (&node.redis, &s.redis) else {
            continue;
        };
        let server = brokers[redis.broker.0].url.server();
        let mut used: Vec<&str> = vec![redis.publish.as_str()];
        used.extend(redis.subscribe.iter().map(String::as_str));
        used.sort_unstable();
        used.dedup();
        for channel in used {
            let users = channels.entry((server.clone(), channel)).or_default();
            if redis.sharded {
                users.0.push((node.name.as_str(), written.span));
            } else {
                users.1.push(node.name.as_str());
            }
        }
    }
    for ((_, channel), (sharded, classic)) in channels {
        let Some(&(_, span)) = sharded.first() else {
            continue;
        };
        if classic.is_empty() {
            continue;
        }
        let names = |list: Vec<&str>| {
            list.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sharded = names(sharded.iter().map(|(n, _)| *n).collect());
        out.push(Diagnostic::warning(
            span,
            format!(
                "channel `{channel}` is sharded for {sharded} and classic for {}: \
                 SPUBLISH reaches only SSUBSCRIBE and PUBLISH only SUBSCRIBE, \
                 so the two groups do not hear each other on it",
                names(classic)
            ),
        ));
    }
    out
}
