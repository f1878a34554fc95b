//! The validated NATS parts of a topology: a broker (one server, or the
//! servers of one cluster) and a node's `nats:` section. Like `RedisUrl`,
//! a `NatsUrl` never prints its secret: `Display` and `Debug` redact, and
//! the credentials come out through [`NatsUrl::credentials`] only.

use super::{ServerKey, host_for_url};
use crate::span::Span;
use std::fmt;
use std::path::PathBuf;

/// Index of a NATS broker in [`super::Topology::nats_brokers`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NatsBrokerId(pub usize);

/// The NATS servers a node may connect to: one, or several of a cluster
/// (the client picks one and fails over to the others).
#[derive(Clone, PartialEq, Eq)]
pub struct NatsUrl {
    /// `tls://` rather than `nats://`: every connection is TLS.
    pub tls: bool,
    /// As written, in file order, without duplicates; never empty.
    pub servers: Vec<ServerKey>,
    pub auth: NatsAuth,
    /// For `tls://`: a PEM file of the certificate authority to trust.
    pub ca: Option<PathBuf>,
}

/// How a NATS client proves who it is; shared by every server of a broker.
#[derive(Clone, PartialEq, Eq)]
pub enum NatsAuth {
    None,
    /// `nats://TOKEN@host`
    Token(String),
    /// `nats://user:password@host`
    User {
        user: String,
        password: String,
    },
}

impl NatsUrl {
    pub fn scheme(&self) -> &'static str {
        if self.tls { "tls" } else { "nats" }
    }

    /// The servers as the client takes them, without credentials (those
    /// go in [`NatsUrl::credentials`]): `nats://host:port`.
    pub fn server_addresses(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| format!("{}://{s}", self.scheme()))
            .collect()
    }

    /// The secret, for connecting. Never print it.
    pub fn credentials(&self) -> &NatsAuth {
        &self.auth
    }

    /// Two brokers are one subject space when they share a server: the
    /// file lists a cluster's servers in one broker (routes between
    /// servers listed apart are not visible to topo).
    pub fn shares_server(&self, other: &NatsUrl) -> bool {
        let theirs: Vec<ServerKey> = other.keys().collect();
        self.keys().any(|s| theirs.contains(&s))
    }

    /// The servers with loopback spellings made one (identity, not connecting).
    pub fn keys(&self) -> impl Iterator<Item = ServerKey> + '_ {
        self.servers
            .iter()
            .map(|s| ServerKey::canonical(&s.host, s.port))
    }
}

/// `nats://user:***@127.0.0.1:4222,127.0.0.1:4223`: safe for logs and output.
impl fmt::Display for NatsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme())?;
        match &self.auth {
            NatsAuth::None => {}
            NatsAuth::Token(_) => write!(f, "***@")?,
            NatsAuth::User { user, .. } => write!(f, "{user}:***@")?,
        }
        for (i, server) in self.servers.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{}", host_for_url(&server.host), server.port)?;
        }
        Ok(())
    }
}

impl fmt::Debug for NatsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::Token(_) => f.write_str("Token(***)"),
            NatsAuth::User { user, .. } => write!(f, "User({user}:***)"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct NatsBroker {
    /// The name under `brokers:`, or the redacted URL of an inline broker.
    pub name: String,
    pub url: NatsUrl,
    pub span: Span,
}

/// A node's `nats:` section, defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct NatsLink {
    pub broker: NatsBrokerId,
    /// The literal subject this node publishes its clients' messages on.
    pub publish: String,
    /// Subscription filters (`*`, `>` wildcards), without duplicates.
    pub subscribe: Vec<String>,
    /// A queue group: every subscription of the node joins it, and each
    /// message goes to exactly one member whose filter matches it.
    pub queue: Option<String>,
}

/// `NatsLink` resolved against its broker, for the runtime.
#[derive(Clone, Debug, PartialEq)]
pub struct NatsWiring {
    pub url: NatsUrl,
    pub publish: String,
    pub subscribe: Vec<String>,
    pub queue: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NatsListing<'a> {
    pub broker: &'a NatsBroker,
    pub publish: &'a str,
    pub subscribe: &'a [String],
    pub queue: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let url = NatsUrl {
            tls: false,
            servers: vec![
                ServerKey {
                    host: "127.0.0.1".into(),
                    port: 4222,
                },
                ServerKey {
                    host: "::1".into(),
                    port: 4223,
                },
            ],
            auth: NatsAuth::User {
                user: "chat".into(),
                password: "hunter2".into(),
            },
            ca: None,
        };
        assert_eq!(url.to_string(), "nats://chat:***@127.0.0.1:4222,[::1]:4223");
        assert!(!format!("{url:?} {:?}", url.credentials()).contains("hunter2"));
        let token = NatsUrl {
            auth: NatsAuth::Token("s3cret".into()),
            ..url
        };
        assert_eq!(token.to_string(), "nats://***@127.0.0.1:4222,[::1]:4223");
        assert!(!format!("{token:?} {:?}", token.credentials()).contains("s3cret"));
    }
}
