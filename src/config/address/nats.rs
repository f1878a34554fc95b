//! NATS broker URLs: `nats://[user:password@|token@]host[:port]`, `tls://`
//! for TLS, and several servers of one cluster separated by commas, as the
//! NATS tools write them (`nats://a:4222,nats://b:4222`; entries after the
//! first may drop the scheme). Messages never repeat the text: it may hold
//! a secret.

use super::{PortError, non_empty, parse_port, percent_decode, split_host_port};
use crate::model::{NatsAuth, NatsUrl, ServerKey};

/// The port a NATS server listens on for clients unless told otherwise.
pub const DEFAULT_NATS_PORT: u16 = 4222;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NatsUrlError {
    #[error("a NATS broker URL starts with nats:// or tls:// (TLS)")]
    Scheme,
    #[error("server {0} of the NATS URL has no host (like nats://127.0.0.1:4222)")]
    WithoutHost(usize),
    #[error("server {index} of the NATS URL: {port}")]
    Port { index: usize, port: PortError },
    #[error(
        "server {0} of the NATS URL: the port is not a number; credentials go before `@host` (nats://user:***@host:4222)"
    )]
    PasswordAsPort(usize),
    #[error("server {0} of the NATS URL has a path; a NATS URL ends with host:port")]
    Path(usize),
    #[error("the servers of one NATS broker all use nats:// or all use tls://")]
    MixedSchemes,
    #[error("the servers of one NATS broker must carry the same credentials")]
    CredentialsDiffer,
    #[error(
        "server {0} of the NATS URL has credentials without nats:// or tls:// before them; write the scheme"
    )]
    CredentialsWithoutScheme(usize),
    #[error("server {0} is listed twice in the NATS URL")]
    Duplicate(String),
}

/// True when `text` is meant as a NATS URL (and not a Redis one).
pub fn is_nats_url(text: &str) -> bool {
    text.starts_with("nats://") || text.starts_with("tls://")
}

pub fn parse_nats_url(text: &str) -> Result<NatsUrl, NatsUrlError> {
    let tls = if text.starts_with("tls://") {
        true
    } else if text.starts_with("nats://") {
        false
    } else {
        return Err(NatsUrlError::Scheme);
    };
    let mut url = NatsUrl {
        tls,
        servers: Vec::new(),
        auth: NatsAuth::None,
        ca: None,
    };
    for (i, entry) in text.split(',').enumerate() {
        let index = i + 1;
        let entry = entry.trim();
        let rest = match entry.split_once("://") {
            Some(("nats", rest)) if !tls => rest,
            Some(("tls", rest)) if tls => rest,
            Some(("nats" | "tls", _)) => return Err(NatsUrlError::MixedSchemes),
            Some(_) => return Err(NatsUrlError::Scheme),
            None if entry.contains('@') => {
                // Output hides a secret only after a scheme (`printable`).
                return Err(NatsUrlError::CredentialsWithoutScheme(index));
            }
            None => entry,
        };
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((auth, hostport)) => (Some(auth), hostport),
            None => (None, rest),
        };
        if hostport.contains('/') {
            return Err(NatsUrlError::Path(index));
        }
        if let Some(auth) = auth {
            let parsed = match auth.split_once(':') {
                Some((user, pass)) => NatsAuth::User {
                    user: percent_decode(user),
                    password: percent_decode(pass),
                },
                None => match non_empty(auth) {
                    Some(token) => NatsAuth::Token(percent_decode(&token)),
                    None => NatsAuth::None,
                },
            };
            if url.auth != NatsAuth::None && url.auth != parsed {
                return Err(NatsUrlError::CredentialsDiffer);
            }
            url.auth = parsed;
        }
        let server = server(hostport, index, auth.is_some())?;
        let key = ServerKey::canonical(&server.host, server.port);
        if url.keys().any(|k| k == key) {
            return Err(NatsUrlError::Duplicate(server.to_string()));
        }
        url.servers.push(server);
    }
    Ok(url)
}

fn server(hostport: &str, index: usize, has_auth: bool) -> Result<ServerKey, NatsUrlError> {
    let (host, port) =
        if let Some(v6) = hostport.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            (v6, DEFAULT_NATS_PORT)
        } else if hostport.starts_with('[') || hostport.matches(':').count() == 1 {
            let (host, port) = split_host_port(hostport).ok_or(NatsUrlError::WithoutHost(index))?;
            let port = parse_port(port).map_err(|e| {
                if !has_auth && port.parse::<u32>().is_err() {
                    NatsUrlError::PasswordAsPort(index)
                } else {
                    NatsUrlError::Port { index, port: e }
                }
            })?;
            (host, port)
        } else {
            (hostport, DEFAULT_NATS_PORT)
        };
    if host.is_empty() {
        return Err(NatsUrlError::WithoutHost(index));
    }
    Ok(ServerKey {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_or_a_cluster() {
        let url = parse_nats_url("nats://127.0.0.1").unwrap();
        assert_eq!(url.to_string(), "nats://127.0.0.1:4222");
        let url =
            parse_nats_url("nats://chat:p%40ss@localhost:4222,nats://127.0.0.1:4223,[::1]:4224")
                .unwrap();
        assert_eq!(url.servers.len(), 3);
        assert_eq!(url.servers[0].host, "localhost");
        assert_eq!(
            url.auth,
            NatsAuth::User {
                user: "chat".into(),
                password: "p@ss".into()
            }
        );
        assert_eq!(
            url.to_string(),
            "nats://chat:***@localhost:4222,127.0.0.1:4223,[::1]:4224"
        );
        let url = parse_nats_url("tls://tok3n@nats.example.com:4443").unwrap();
        assert!(url.tls);
        assert_eq!(url.to_string(), "tls://***@nats.example.com:4443");
    }

    #[test]
    fn refusals_name_the_server_and_never_the_secret() {
        assert_eq!(parse_nats_url("redis://h"), Err(NatsUrlError::Scheme));
        assert_eq!(
            parse_nats_url("nats://a:1,tls://b:2"),
            Err(NatsUrlError::MixedSchemes)
        );
        assert_eq!(
            parse_nats_url("nats://localhost:1,127.0.0.1:1"),
            Err(NatsUrlError::Duplicate("127.0.0.1:1".into()))
        );
        assert_eq!(
            parse_nats_url("nats://u:x@a:1,nats://v:y@b:2"),
            Err(NatsUrlError::CredentialsDiffer)
        );
        assert_eq!(
            parse_nats_url("nats://a:70000"),
            Err(NatsUrlError::Port {
                index: 1,
                port: PortError::OutOfRange(70000)
            })
        );
        let error = parse_nats_url("nats://user:hunter2").unwrap_err();
        assert_eq!(error, NatsUrlError::PasswordAsPort(1));
        assert!(!error.to_string().contains("hunter2"));
        assert_eq!(parse_nats_url("nats://a:1/x"), Err(NatsUrlError::Path(1)));
        assert_eq!(
            parse_nats_url("nats://:1"),
            Err(NatsUrlError::WithoutHost(1))
        );
    }
}
