//! The NATS half of the compile step: `nats://` and `tls://` brokers, and
//! a node's `nats:` section (subjects checked as nats-server checks them,
//! a queue group's rules). Kept apart from the Redis and ZeroMQ checks of
//! `compile.rs`, which it shares the `Compiler` with.

use super::Compiler;
use crate::config::address::parse_nats_url;
use crate::config::diagnostic::did_you_mean;
use crate::config::spec::{BrokerSpec, NodeSpec, Spanned, TopologySpec};
use crate::model::{NatsBroker, NatsBrokerId, NatsLink, Node};
use crate::subject::{check_filter, check_publish, check_queue, subject_matches};
use std::path::Path;

/// What a node publishes on when its `nats:` section does not say.
pub const DEFAULT_SUBJECT: &str = "chat_messages";

impl Compiler {
    pub(super) fn nats_broker(
        &mut self,
        name: &Spanned<String>,
        broker: &BrokerSpec,
        base_dir: &Path,
    ) {
        if let Some(mut url) = self.broker_url(name, broker, parse_nats_url) {
            if let Some(ca) = &broker.ca {
                if url.tls {
                    url.ca = self.certificate_authority(ca, true, base_dir);
                } else {
                    self.error(ca.span, "`ca:` only applies to a tls:// (TLS) NATS URL");
                }
            }
            self.nats_brokers.push(NatsBroker {
                name: name.value.clone(),
                url,
                span: name.span,
            });
        }
    }

    /// A `broker:` of a nats section: a NATS broker's name, or a URL.
    fn nats_reference(&mut self, reference: &Spanned<String>) -> Option<NatsBrokerId> {
        let text = &reference.value;
        if text.contains("://") {
            let url = match parse_nats_url(text) {
                Ok(url) => url,
                Err(error) => {
                    self.error(reference.span, error.to_string());
                    return None;
                }
            };
            let inline = &self.nats_brokers[self.named_nats..];
            if let Some(i) = inline.iter().position(|b| b.url == url) {
                return Some(NatsBrokerId(self.named_nats + i));
            }
            self.nats_brokers.push(NatsBroker {
                name: url.to_string(),
                url,
                span: reference.span,
            });
            return Some(NatsBrokerId(self.nats_brokers.len() - 1));
        }
        let named = &self.nats_brokers[..self.named_nats];
        if let Some(i) = named.iter().position(|b| &b.name == text) {
            return Some(NatsBrokerId(i));
        }
        if self.brokers[..self.named_brokers]
            .iter()
            .any(|b| &b.name == text)
        {
            self.error(
                reference.span,
                format!("broker `{text}` is a Redis server; a nats section needs a nats:// broker"),
            );
            return None;
        }
        if self.declared_brokers.iter().any(|n| n == text) {
            return None; // the broker itself is invalid and already reported
        }
        let names: Vec<&str> = named.iter().map(|b| b.name.as_str()).collect();
        let hint = match did_you_mean(text, names.iter().copied()) {
            Some(s) => format!("; did you mean `{s}`?"),
            None if names.is_empty() => {
                "; define it under `brokers:` or give a URL like nats://127.0.0.1:4222".to_owned()
            }
            None => format!("; known NATS brokers: {}", names.join(", ")),
        };
        self.error(reference.span, format!("unknown broker `{text}`{hint}"));
        None
    }

    /// True when `text` names a NATS broker of `brokers:` (so that a redis
    /// section naming it gets a message saying so).
    pub(super) fn is_nats_broker(&self, text: &str) -> bool {
        self.nats_brokers[..self.named_nats]
            .iter()
            .any(|b| b.name == text)
    }

    pub(super) fn nats_link(
        &mut self,
        name: &Spanned<String>,
        spec: &NodeSpec,
    ) -> Option<NatsLink> {
        let section = spec.nats.as_ref()?;
        let n = &section.value;
        let Some(reference) = &n.broker else {
            self.error(
                section.span,
                format!(
                    "node `{}`: a nats section needs `broker:` (a name from brokers: or a URL)",
                    name.value
                ),
            );
            return None;
        };
        let broker = self.nats_reference(reference)?;
        let publish = n
            .publish
            .as_ref()
            .map_or(DEFAULT_SUBJECT.to_owned(), |p| p.value.clone());
        if let Some(p) = &n.publish
            && let Err(e) = check_publish(&p.value)
        {
            self.error(p.span, e.to_string());
        }
        let subscribe = match &n.subscribe {
            Some(list) => {
                for item in list.value.iter().filter(|i| !i.value.is_empty()) {
                    if let Err(e) = check_filter(&item.value) {
                        self.error(item.span, e.to_string());
                    }
                }
                self.unique(&list.value, "subject")
            }
            None => vec![publish.clone()],
        };
        let queue = n.queue.as_ref().map(|q| {
            if let Err(e) = check_queue(&q.value) {
                self.error(q.span, e.to_string());
            }
            if spec.relay.as_ref().is_some_and(|r| r.value) {
                self.error(
                    q.span,
                    format!(
                        "node `{}` is a relay in queue group `{}`: what it forwards would depend on which member NATS picks, which topo cannot predict; use a relay outside the group",
                        name.value, q.value
                    ),
                );
            }
            q.value.clone()
        });
        Some(NatsLink {
            broker,
            publish,
            subscribe,
            queue,
        })
    }

    /// A filter is suspicious when no node of the file publishes a subject it
    /// matches on the same servers.
    pub(super) fn unmatched_subjects(&mut self, spec: &TopologySpec, nodes: &[Node]) {
        for (node, (_, s)) in nodes.iter().zip(&spec.nodes.0) {
            let Some(nats) = &node.nats else { continue };
            let url = self.nats_brokers[nats.broker.0].url.clone();
            let written = s.nats.as_ref().and_then(|n| n.value.subscribe.as_ref());
            for item in written.iter().flat_map(|list| list.value.iter()) {
                let matched = nodes.iter().filter_map(|n| n.nats.as_ref()).any(|other| {
                    self.nats_brokers[other.broker.0].url.shares_server(&url)
                        && subject_matches(&item.value, &other.publish)
                });
                if !matched && check_filter(&item.value).is_ok() {
                    self.warning(
                        item.span,
                        format!(
                            "subject `{}` matches no subject published in this file",
                            item.value
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::check::check_str;

    fn problems(text: &str) -> Vec<(u32, u32, String)> {
        let checked = check_str("t.yaml", "t", text.into(), &|_| None);
        checked
            .diagnostics
            .iter()
            .map(|d| (d.span.line, d.span.column, d.message.clone()))
            .collect()
    }

    fn has(found: &[(u32, u32, String)], line: u32, column: u32, text: &str) {
        assert!(
            found
                .iter()
                .any(|(l, c, m)| (*l, *c) == (line, column) && m.contains(text)),
            "no `{text}` at {line}:{column} in {found:#?}"
        );
    }

    #[test]
    fn subjects_queues_and_brokers_are_checked_where_they_are_written() {
        let found = problems(concat!(
            "brokers:\n",
            "  n: { url: \"nats://u:s3cret@127.0.0.1:4222\" }\n",
            "  r: { url: \"redis://127.0.0.1:6379\" }\n",
            "  bad: { url: \"nats://127.0.0.1:99999\", ca: x.pem }\n",
            "nodes:\n",
            "  a: { http: 1, nats: { broker: n, publish: \"chat.*\", subscribe: [\"a.>.b\", \"a..b\", x, x] } }\n",
            "  b: { http: 2, relay: true, nats: { broker: n, queue: \"w q\" } }\n",
            "  c: { http: 3, nats: { broker: r } }\n",
            "  d: { http: 4, redis: { broker: n } }\n",
            "  e: { http: 5, nats: { publish: x } }\n",
        ));
        has(
            &found,
            4,
            15,
            "server 1 of the NATS URL: port 99999 is out of range",
        );
        has(&found, 6, 45, "publish subject `chat.*` has a wildcard");
        has(&found, 6, 67, "`>` must be the last token");
        has(&found, 6, 76, "empty token");
        has(&found, 6, 87, "subject `x` is listed twice");
        has(&found, 7, 56, "queue group `w q` contains white space");
        has(&found, 7, 56, "node `b` is a relay in queue group `w q`");
        has(&found, 8, 33, "broker `r` is a Redis server");
        has(&found, 9, 34, "broker `n` is a NATS server");
        has(&found, 10, 17, "a nats section needs `broker:`");
        assert!(found.iter().all(|(_, _, m)| !m.contains("s3cret")));
    }

    #[test]
    fn a_filter_matching_nothing_published_is_a_warning() {
        let found = problems(concat!(
            "nodes:\n",
            "  a: { http: 1, nats: { broker: \"nats://127.0.0.1\", publish: chat.a, subscribe: [\"chat.*\", \"news.>\"] } }\n",
        ));
        has(
            &found,
            2,
            92,
            "subject `news.>` matches no subject published",
        );
        assert_eq!(found.len(), 1, "{found:#?}");
    }
}
