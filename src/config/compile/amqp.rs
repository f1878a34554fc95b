//! The `amqp:` part of compiling: a node's exchange, routing key, bindings
//! and queue, and the checks between nodes that share a RabbitMQ vhost
//! (one exchange declared with two types, one queue consumed by two nodes).

use super::{Compiler, is_amqp_url};
use crate::config::address::parse_amqp_url;
use crate::config::diagnostic::did_you_mean;
use crate::config::spec::{AmqpSpec, ExchangeType, Spanned, TopologySpec};
use crate::model::{AmqpBroker, AmqpBrokerId, AmqpLink, ExchangeKind, Node, ServerKey};
use std::collections::HashMap;

pub const DEFAULT_EXCHANGE: &str = "chat";
pub const DEFAULT_ROUTING_KEY: &str = "chat";
pub const DEFAULT_MAX_LENGTH: u32 = 100_000;
pub const MAX_MAX_LENGTH: u64 = 100_000_000;
pub const DEFAULT_PREFETCH: u16 = 100;
/// AMQP's short strings (names, routing keys) are at most 255 bytes.
const MAX_NAME: usize = 255;

impl Compiler {
    pub(super) fn amqp_link(&mut self, node: &str, amqp: &Spanned<AmqpSpec>) -> Option<AmqpLink> {
        let a = &amqp.value;
        let Some(reference) = &a.broker else {
            self.error(
                amqp.span,
                format!("node `{node}`: an amqp section needs `broker:` (a name from brokers: or an amqp:// URL)"),
            );
            return None;
        };
        let broker = self.amqp_broker(reference)?;
        let exchange = a
            .exchange
            .as_ref()
            .map_or(DEFAULT_EXCHANGE.to_owned(), |e| e.value.clone());
        if let Some(e) = &a.exchange {
            self.amqp_name(e, "an exchange");
        }
        let kind = match a.kind.as_ref().map(|k| k.value) {
            None | Some(ExchangeType::Fanout) => ExchangeKind::Fanout,
            Some(ExchangeType::Topic) => ExchangeKind::Topic,
            Some(ExchangeType::Direct) => ExchangeKind::Direct,
        };
        let (publish, bind) = if kind == ExchangeKind::Fanout {
            for (written, key) in [
                (a.publish.as_ref().map(|p| p.span), "publish"),
                (a.bind.as_ref().map(|b| b.span), "bind"),
            ] {
                if let Some(span) = written {
                    self.error(span, format!("`{key}:` has no effect on a fanout exchange, which ignores routing keys: use `type: topic` or `type: direct`, or remove it"));
                }
            }
            (String::new(), vec![String::new()])
        } else {
            let publish = a
                .publish
                .as_ref()
                .map_or(DEFAULT_ROUTING_KEY.to_owned(), |p| p.value.clone());
            if let Some(p) = &a.publish {
                self.key_length(p, "routing key");
            }
            let bind = match &a.bind {
                Some(list) => {
                    list.value
                        .iter()
                        .for_each(|b| self.key_length(b, "binding key"));
                    self.unique_keys(&list.value)
                }
                None => vec![publish.clone()],
            };
            (publish, bind)
        };
        let queue = a.queue.as_ref().map(|q| {
            self.amqp_name(q, "a queue");
            let most = MAX_NAME - crate::model::AMQP_DROPPED_SUFFIX.len();
            if (most + 1..=MAX_NAME).contains(&q.value.len()) {
                self.error(
                    q.span,
                    format!(
                        "a queue name is at most {most} bytes: its companion `<queue>{}`, which counts what max_length drops, must fit in 255",
                        crate::model::AMQP_DROPPED_SUFFIX
                    ),
                );
            }
            q.value.clone()
        });
        let max_length = match &a.max_length {
            Some(m) if m.value == 0 || m.value > MAX_MAX_LENGTH => {
                self.error(
                    m.span,
                    format!(
                        "max_length {} is out of range: 1 - {MAX_MAX_LENGTH}",
                        m.value
                    ),
                );
                DEFAULT_MAX_LENGTH
            }
            Some(m) => m.value as u32,
            None => DEFAULT_MAX_LENGTH,
        };
        let prefetch = match &a.prefetch {
            Some(p) => match u16::try_from(p.value) {
                Ok(n) if n >= 1 => n,
                _ => {
                    self.error(
                        p.span,
                        format!("prefetch {} is out of range: 1 - 65535", p.value),
                    );
                    DEFAULT_PREFETCH
                }
            },
            None => DEFAULT_PREFETCH,
        };
        Some(AmqpLink {
            broker,
            exchange,
            kind,
            publish,
            bind,
            queue,
            max_length,
            prefetch,
        })
    }

    /// Unlike Redis, RabbitMQ delivers a message once per queue however many
    /// of its bindings match; a repeated key is still a mistake worth naming.
    fn unique_keys(&mut self, list: &[Spanned<String>]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for item in list {
            if out.contains(&item.value) {
                self.error(
                    item.span,
                    format!("binding key `{}` is listed twice", item.value),
                );
            } else {
                out.push(item.value.clone());
            }
        }
        out
    }

    fn key_length(&mut self, key: &Spanned<String>, what: &str) {
        if key.value.len() > MAX_NAME {
            self.error(
                key.span,
                format!("a {what} is at most {MAX_NAME} bytes (AMQP short string)"),
            );
        }
    }

    /// Exchange and queue names: not empty (RabbitMQ would make one up), at
    /// most 255 bytes, and not `amq.*` (RabbitMQ refuses to declare those).
    fn amqp_name(&mut self, name: &Spanned<String>, what: &str) {
        if name.value.is_empty() {
            self.error(name.span, format!("{what} name cannot be empty"));
        } else if name.value.len() > MAX_NAME {
            self.error(
                name.span,
                format!("{what} name is at most {MAX_NAME} bytes"),
            );
        } else if name.value.starts_with("amq.") {
            self.error(
                name.span,
                format!(
                    "`{}`: names starting with `amq.` are reserved by RabbitMQ",
                    name.value
                ),
            );
        }
    }

    fn amqp_broker(&mut self, reference: &Spanned<String>) -> Option<AmqpBrokerId> {
        let text = &reference.value;
        if is_amqp_url(text) {
            let url = match parse_amqp_url(text) {
                Ok(url) => url,
                Err(error) => {
                    self.error(reference.span, error.to_string());
                    return None;
                }
            };
            let named = self.named_amqp_brokers;
            if let Some(i) = self.amqp_brokers[named..].iter().position(|b| b.url == url) {
                return Some(AmqpBrokerId(named + i));
            }
            self.amqp_brokers.push(AmqpBroker {
                name: url.to_string(),
                url,
                span: reference.span,
            });
            return Some(AmqpBrokerId(self.amqp_brokers.len() - 1));
        }
        if text.contains("://") {
            self.error(
                reference.span,
                "an amqp section needs an amqp:// or amqps:// broker URL",
            );
            return None;
        }
        if let Some(i) = self.amqp_brokers[..self.named_amqp_brokers]
            .iter()
            .position(|b| &b.name == text)
        {
            return Some(AmqpBrokerId(i));
        }
        if self.brokers[..self.named_brokers]
            .iter()
            .any(|b| &b.name == text)
        {
            self.error(
                reference.span,
                format!(
                    "broker `{text}` is a Redis broker; an amqp section needs an amqp:// broker"
                ),
            );
            return None;
        }
        if self.declared_brokers.iter().any(|n| n == text) {
            return None; // invalid, and already reported
        }
        let names: Vec<&str> = self.amqp_brokers[..self.named_amqp_brokers]
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        let hint = match did_you_mean(text, names.iter().copied()) {
            Some(s) => format!("; did you mean `{s}`?"),
            None if names.is_empty() => "; define it under `brokers:` or give a URL like amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            None => format!("; known AMQP brokers: {}", names.join(", ")),
        };
        self.error(reference.span, format!("unknown broker `{text}`{hint}"));
        None
    }

    /// Between nodes on one vhost: an exchange has one type (RabbitMQ refuses
    /// the second declaration), and a named queue has one consumer node.
    pub(super) fn amqp_conflicts(&mut self, spec: &TopologySpec, nodes: &[Node]) {
        type Space = (ServerKey, String);
        let mut exchanges: HashMap<(Space, &str), (ExchangeKind, &str, u32)> = HashMap::new();
        let mut queues: HashMap<(Space, &str), (&str, u32)> = HashMap::new();
        for (node, (_, s)) in nodes.iter().zip(&spec.nodes.0) {
            let (Some(link), Some(written)) = (&node.amqp, &s.amqp) else {
                continue;
            };
            let space = self.amqp_brokers[link.broker.0].url.space();
            let at = written.value.kind.as_ref().map_or(written.span, |k| k.span);
            match exchanges.get(&(space.clone(), link.exchange.as_str())) {
                Some((kind, other, line)) if *kind != link.kind => {
                    let message = format!(
                        "exchange `{}` is declared {} here and {kind} by node `{other}` (line {line}): one exchange has one type",
                        link.exchange, link.kind
                    );
                    self.error(at, message);
                }
                Some(_) => {}
                None => {
                    exchanges.insert(
                        (space.clone(), link.exchange.as_str()),
                        (link.kind, &node.name, at.line),
                    );
                }
            }
            let (Some(queue), Some(q)) = (&link.queue, &written.value.queue) else {
                continue;
            };
            match queues.get(&(space.clone(), queue.as_str())) {
                Some((other, line)) => {
                    let message = format!(
                        "queue `{queue}` is also node `{other}`'s (line {line}): nodes sharing a queue compete for its messages, each going to only one of them, which topo does not run or predict yet; give each node its own queue"
                    );
                    self.error(q.span, message);
                }
                None => {
                    queues.insert((space, queue.as_str()), (&node.name, q.span.line));
                }
            }
        }
    }
}
