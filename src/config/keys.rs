//! The keys each mapping of a topology file accepts, one closed enum per
//! mapping. The decoder matches on these enums, so every accepted key has
//! exactly one arm and an unknown key never reaches a field: adding a key
//! here without decoding it does not compile.

/// A closed set of keys of one YAML mapping.
pub trait Keys: Copy + Sized + 'static {
    /// Each key as written in the file, with its variant, in schema order.
    const ALL: &'static [(&'static str, Self)];

    fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, key)| *key)
    }

    fn names() -> impl Iterator<Item = &'static str> + Clone {
        Self::ALL.iter().map(|(name, _)| *name)
    }
}

macro_rules! keys {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($variant),+
        }

        impl Keys for $name {
            const ALL: &'static [(&'static str, Self)] = &[$(($text, $name::$variant)),+];
        }
    };
}

keys! {
    /// The top level of a topology file.
    TopologyKey {
        Version = "version",
        Name = "name",
        Brokers = "brokers",
        Nodes = "nodes",
        Limits = "limits",
        Origins = "origins",
        Expect = "expect",
    }
}

keys! {
    /// One entry of `brokers:`.
    BrokerKey { Url = "url", Ca = "ca" }
}

keys! {
    /// One entry of `nodes:`.
    NodeKey {
        Http = "http",
        Host = "host",
        Relay = "relay",
        Zmq = "zmq",
        Redis = "redis",
        Amqp = "amqp",
        Nats = "nats",
        Limits = "limits",
        Origins = "origins",
    }
}

keys! {
    /// A node's `zmq:` section.
    ZmqKey { Pub = "pub", Sub = "sub", Topic = "topic", Filter = "filter" }
}

keys! {
    /// A node's `redis:` section.
    RedisKey {
        Broker = "broker",
        Publish = "publish",
        Subscribe = "subscribe",
        Patterns = "patterns",
        Sharded = "sharded",
    }
}

keys! {
    /// A node's `amqp:` section.
    AmqpKey {
        Broker = "broker",
        Exchange = "exchange",
        Type = "type",
        Publish = "publish",
        Bind = "bind",
        Queue = "queue",
        MaxLength = "max_length",
        Prefetch = "prefetch",
    }
}

keys! {
    /// A node's `nats:` section.
    NatsKey {
        Broker = "broker",
        Publish = "publish",
        Subscribe = "subscribe",
        Queue = "queue",
    }
}

keys! {
    /// `limits:`, at the top level or in a node.
    LimitsKey {
        MaxMessageBytes = "max_message_bytes",
        MaxConnections = "max_connections",
        SendQueue = "send_queue",
        PingInterval = "ping_interval",
        IdleTimeout = "idle_timeout",
        Outbox = "outbox",
        ZmqHwm = "zmq_hwm",
    }
}

keys! {
    /// `expect:` in a topology, and the top level of an expectations sidecar.
    ExpectKey { Deliveries = "deliveries", OneOf = "one_of" }
}

keys! {
    /// One entry of `one_of:` (a NATS queue group's share of a sender's messages).
    OneOfKey { Among = "among", Count = "count" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::spec::TopologySpec;
    use std::collections::BTreeSet;

    fn set(names: impl Iterator<Item = impl Into<String>>) -> BTreeSet<String> {
        names.map(Into::into).collect()
    }

    /// The decoder and `topo schema` must agree on every mapping: a key the
    /// schema offers but the decoder rejects (or the reverse) is a bug an
    /// editor would show to users.
    #[test]
    fn decoder_and_schema_accept_the_same_keys() {
        let schema = serde_json::to_value(schemars::schema_for!(TopologySpec)).unwrap();
        let decoder: Vec<(&str, BTreeSet<String>)> = vec![
            ("(top level)", set(TopologyKey::names())),
            ("BrokerSpec", set(BrokerKey::names())),
            ("NodeSpec", set(NodeKey::names())),
            ("ZmqSpec", set(ZmqKey::names())),
            ("RedisSpec", set(RedisKey::names())),
            ("AmqpSpec", set(AmqpKey::names())),
            ("NatsSpec", set(NatsKey::names())),
            ("LimitsSpec", set(LimitsKey::names())),
            ("ExpectSpec", set(ExpectKey::names())),
            ("OneOfSpec", set(OneOfKey::names())),
        ];
        let mut objects = vec![("(top level)".to_owned(), &schema)];
        for (name, def) in schema["$defs"].as_object().expect("$defs") {
            objects.push((name.clone(), def));
        }
        let mut covered = BTreeSet::new();
        for (name, object) in objects {
            let Some(properties) = object.get("properties").and_then(|p| p.as_object()) else {
                continue;
            };
            assert_eq!(
                object["additionalProperties"], false,
                "{name} must reject unknown keys like the decoder"
            );
            let keys = decoder
                .iter()
                .find(|(section, _)| *section == name)
                .unwrap_or_else(|| panic!("the schema has object {name}, the decoder no key set"));
            assert_eq!(set(properties.keys().cloned()), keys.1, "keys of {name}");
            covered.insert(name);
        }
        let sections = set(decoder.iter().map(|(section, _)| *section));
        assert_eq!(covered, sections, "key sets without a schema object");
    }

    #[test]
    fn parse_is_the_inverse_of_names() {
        for name in NodeKey::names() {
            let key = NodeKey::parse(name).unwrap();
            assert!(NodeKey::ALL.contains(&(name, key)));
        }
        assert_eq!(NodeKey::parse("htpp"), None);
    }
}
