//! Parsing the addresses a topology names: bind hosts, `tcp://` endpoints
//! and Redis URLs. Each parser's error displays as a message fit to show
//! the user.

use crate::model::{AmqpUrl, Endpoint, RedisUrl};
use std::net::{IpAddr, Ipv4Addr};

mod nats;
pub use nats::{DEFAULT_NATS_PORT, NatsUrlError, is_nats_url, parse_nats_url};

/// Why an address written in the file was refused. No variant holds a
/// whole Redis URL: it may carry a password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("`{0}` is not an IP address to bind (like 127.0.0.1, 0.0.0.0 or ::1)")]
    NotAnIp(String),
    #[error(
        "endpoint `{text}` uses `{scheme}://`; topo's ZeroMQ links are TCP: write tcp://host:port"
    )]
    NotTcp { text: String, scheme: String },
    #[error("`{0}` is not an endpoint: write tcp://host:port")]
    NotAnEndpoint(String),
    #[error("endpoint `{0}` has no port: write tcp://host:port")]
    EndpointWithoutPort(String),
    #[error("endpoint `{0}` has no host: write tcp://host:port")]
    EndpointWithoutHost(String),
    #[error("endpoint `{text}`: {port}")]
    EndpointPort { text: String, port: PortError },
    #[error("`{0}` is not an IP address to bind; a pub endpoint binds an address of this machine")]
    PubNotAnIp(String),
    #[error(
        "a broker URL starts with redis://, rediss:// (TLS), redis+cluster:// or rediss+cluster://, or nats:// or tls:// for NATS"
    )]
    RedisScheme,
    #[error("a Redis Cluster has only database 0: drop the `/{0}`")]
    ClusterDatabase(u32),
    #[error("the cluster URL lists seed {0} twice")]
    ClusterSeedTwice(String),
    #[error("the broker URL's host is malformed")]
    RedisHostMalformed,
    #[error("broker URL: {0}")]
    RedisPort(PortError),
    #[error("the broker URL is malformed: write a `/` in a password as %2F")]
    RedisSlashInPassword,
    /// `maybe_password`: no `@` was written, so what stands where the host
    /// goes may be a password the user meant to put before `@host`.
    #[error(
        "the broker URL has no host (like redis://127.0.0.1:6379){}",
        if *maybe_password { "; a password goes before `@host` (redis://:***@host:6379)" } else { "" }
    )]
    RedisWithoutHost { maybe_password: bool },
    #[error(
        "the broker URL's port is not a number; a password goes before `@host` (redis://:***@host:6379)"
    )]
    RedisPasswordAsPort,
    #[error("the broker URL's database `/{0}` is not a number")]
    RedisDatabase(String),
    #[error("an AMQP broker URL starts with amqp:// or amqps:// (TLS)")]
    AmqpScheme,
    #[error(
        "the AMQP broker URL has no host (like amqp://guest:***@127.0.0.1:5672/%2f); a password goes before `@host`"
    )]
    AmqpWithoutHost,
    #[error("the AMQP broker URL is malformed: write a `/` in a password as %2F")]
    AmqpSlashInPassword,
    #[error(
        "the AMQP broker URL's port is not a number; a password goes before `@host` (amqp://user:***@host:5672)"
    )]
    AmqpPasswordAsPort,
    #[error("AMQP broker URL: {0}")]
    AmqpPort(PortError),
    #[error(
        "the AMQP broker URL's vhost may not contain `/` unencoded: write `%2F` (the default vhost is `/`)"
    )]
    AmqpVhostSlash,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("port {0} is out of range: ports are 1-65535")]
    OutOfRange(u32),
    #[error("`{0}` is not a port number")]
    NotANumber(String),
}

/// A bind address: an IP address, or `localhost` (127.0.0.1).
pub fn parse_host(text: &str) -> Result<IpAddr, AddressError> {
    let trimmed = text.trim().trim_start_matches('[').trim_end_matches(']');
    if trimmed.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    if trimmed == "*" {
        return Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
    trimmed
        .parse()
        .map_err(|_| AddressError::NotAnIp(text.to_owned()))
}

/// `tcp://host:port`; host may be a name, an IPv4 address, `[v6]` or `*`.
pub fn parse_endpoint(text: &str) -> Result<Endpoint, AddressError> {
    let Some(rest) = text.strip_prefix("tcp://") else {
        return Err(match text.split_once("://") {
            Some((scheme, _)) => AddressError::NotTcp {
                text: text.to_owned(),
                scheme: scheme.to_owned(),
            },
            None => AddressError::NotAnEndpoint(text.to_owned()),
        });
    };
    let (host, port) =
        split_host_port(rest).ok_or_else(|| AddressError::EndpointWithoutPort(text.to_owned()))?;
    if host.is_empty() {
        return Err(AddressError::EndpointWithoutHost(text.to_owned()));
    }
    let port = parse_port(port).map_err(|port| AddressError::EndpointPort {
        text: text.to_owned(),
        port,
    })?;
    Ok(Endpoint {
        host: host.to_owned(),
        port,
    })
}

fn split_host_port(text: &str) -> Option<(&str, &str)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        return Some((host, tail.strip_prefix(':')?));
    }
    text.rsplit_once(':')
}

fn parse_port(text: &str) -> Result<u16, PortError> {
    match text.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        Ok(n) => Err(PortError::OutOfRange(n)),
        Err(_) => Err(PortError::NotANumber(text.to_owned())),
    }
}

/// A broker URL: [`parse_redis_url`]'s single servers, or a Redis Cluster
/// as `redis+cluster://[user[:password]@]host[:port],host[:port],…`
/// (`rediss+cluster://` for TLS): its seed nodes, one credential for all.
pub fn parse_broker_url(text: &str) -> Result<RedisUrl, AddressError> {
    let (tls, rest) = if let Some(rest) = text.strip_prefix("redis+cluster://") {
        (false, rest)
    } else if let Some(rest) = text.strip_prefix("rediss+cluster://") {
        (true, rest)
    } else {
        return parse_redis_url(text);
    };
    let scheme = if tls { "rediss://" } else { "redis://" };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    // Split off the credentials once; each seed is then parsed as a plain
    // URL with them, so every seed gets the single-server checks and messages.
    let (auth, hosts) = match rest.rfind('@') {
        Some(at) => (&rest[..=at], &rest[at + 1..]),
        None => ("", rest),
    };
    let (hosts, path) = match hosts.split_once('/') {
        Some((hosts, db)) => (hosts, format!("/{db}")),
        None => (hosts, String::new()),
    };
    let mut seeds = Vec::new();
    for host in hosts.split(',') {
        let url = parse_redis_url(&format!("{scheme}{auth}{host}{path}"))?;
        if url.db != 0 {
            return Err(AddressError::ClusterDatabase(url.db));
        }
        seeds.push(url);
    }
    let mut first = seeds.remove(0);
    first.cluster = true;
    for seed in seeds {
        let pair = (seed.host, seed.port);
        if (first.host == pair.0 && first.port == pair.1) || first.seeds.contains(&pair) {
            return Err(AddressError::ClusterSeedTwice(format!(
                "{}:{}",
                pair.0, pair.1
            )));
        }
        first.seeds.push(pair);
    }
    Ok(first)
}

/// `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS.
//
// Why not the `url` crate (it is in the tree; README, Decisions): its
// errors carry no text (`InvalidPort` for both `:70000` and `:hunter2`),
// it reads `redis://a/b@h` as host `a` and path `/b@h` (a password in the
// path), accepts `redis://` and port 0, and leaves `%XX` encoded. Telling
// those apart would need this same scan of the text before it anyway.
pub fn parse_redis_url(text: &str) -> Result<RedisUrl, AddressError> {
    let parts =
        split_url(text, ["redis://", "rediss://"], [6379, 6379]).map_err(|fault| match fault {
            UrlFault::Scheme => AddressError::RedisScheme,
            UrlFault::SlashInPassword => AddressError::RedisSlashInPassword,
            UrlFault::HostMalformed => AddressError::RedisHostMalformed,
            UrlFault::WithoutHost { maybe_password } => {
                AddressError::RedisWithoutHost { maybe_password }
            }
            UrlFault::PasswordAsPort => AddressError::RedisPasswordAsPort,
            UrlFault::Port(m) => AddressError::RedisPort(m),
        })?;
    let db = match parts.path {
        "" => 0,
        db => db
            .parse::<u32>()
            .map_err(|_| AddressError::RedisDatabase(db.to_owned()))?,
    };
    Ok(RedisUrl {
        tls: parts.tls,
        host: parts.host.to_owned(),
        port: parts.port,
        username: parts.username,
        password: parts.password,
        db,
        ca: None,
        cluster: false,
        seeds: Vec::new(),
    })
}

/// `amqp://[user[:password]@]host[:port][/vhost]`, or `amqps://` for TLS
/// (port 5672, or 5671 with TLS). The vhost is percent-decoded; absent or
/// empty it is the default vhost `/` (written `%2f`).
pub fn parse_amqp_url(text: &str) -> Result<AmqpUrl, AddressError> {
    let parts =
        split_url(text, ["amqp://", "amqps://"], [5672, 5671]).map_err(|fault| match fault {
            UrlFault::Scheme => AddressError::AmqpScheme,
            UrlFault::SlashInPassword => AddressError::AmqpSlashInPassword,
            UrlFault::HostMalformed | UrlFault::WithoutHost { .. } => AddressError::AmqpWithoutHost,
            UrlFault::PasswordAsPort => AddressError::AmqpPasswordAsPort,
            UrlFault::Port(m) => AddressError::AmqpPort(m),
        })?;
    if parts.path.contains('/') {
        return Err(AddressError::AmqpVhostSlash);
    }
    let vhost = match percent_decode(parts.path) {
        v if v.is_empty() => "/".to_owned(),
        v => v,
    };
    Ok(AmqpUrl {
        tls: parts.tls,
        host: parts.host.to_owned(),
        port: parts.port,
        username: parts.username,
        password: parts.password,
        vhost,
        ca: None,
    })
}

/// What Redis and AMQP URLs share: `scheme://[user[:password]@]host[:port][/path]`,
/// with the credentials percent-decoded and the rest borrowed from the text.
struct UrlParts<'a> {
    tls: bool,
    username: Option<String>,
    password: Option<String>,
    host: &'a str,
    port: u16,
    path: &'a str,
}

/// What can be wrong with those parts; each scheme says it in its own words.
enum UrlFault {
    Scheme,
    SlashInPassword,
    HostMalformed,
    WithoutHost { maybe_password: bool },
    PasswordAsPort,
    Port(PortError),
}

/// `schemes` are the plain and the TLS scheme, `ports` their default ports.
fn split_url<'a>(
    text: &'a str,
    schemes: [&str; 2],
    ports: [u16; 2],
) -> Result<UrlParts<'a>, UrlFault> {
    // Faults never carry the URL itself: it may hold a password.
    let (tls, rest) = if let Some(rest) = text.strip_prefix(schemes[0]) {
        (false, rest)
    } else if let Some(rest) = text.strip_prefix(schemes[1]) {
        (true, rest)
    } else {
        return Err(UrlFault::Scheme);
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    // A `/` inside a password would end the host part early and put the
    // rest of the password in a message.
    if let Some(at) = rest.rfind('@')
        && rest[..at].contains('/')
    {
        return Err(UrlFault::SlashInPassword);
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (auth, hostport) = match authority.rsplit_once('@') {
        Some((auth, hostport)) => (Some(auth), hostport),
        None => (None, authority),
    };
    let (username, password) = match auth {
        None => (None, None),
        Some(auth) => match auth.split_once(':') {
            Some((user, pass)) => (non_empty(user), Some(percent_decode(pass))),
            None => (non_empty(auth), None),
        },
    };
    let default_port = ports[usize::from(tls)];
    let (host, port) =
        if let Some(v6) = hostport.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            (v6, default_port)
        } else if hostport.starts_with('[') || hostport.matches(':').count() == 1 {
            let (host, port) = split_host_port(hostport).ok_or(UrlFault::HostMalformed)?;
            if host.is_empty() {
                return Err(UrlFault::WithoutHost {
                    maybe_password: auth.is_none(),
                });
            }
            let port = parse_port(port).map_err(|m| {
                // Without `@`, `redis://:s3cret` or `amqp://user:s3cret` puts the
                // password where the port goes: never repeat that text.
                if auth.is_none() && port.parse::<u32>().is_err() {
                    UrlFault::PasswordAsPort
                } else {
                    UrlFault::Port(m)
                }
            })?;
            (host, port)
        } else {
            (hostport, default_port)
        };
    if host.is_empty() {
        return Err(UrlFault::WithoutHost {
            maybe_password: false,
        });
    }
    Ok(UrlParts {
        tls,
        username: username.map(|u| percent_decode(&u)),
        password,
        host,
        port,
        path,
    })
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// Passwords may carry reserved characters as `%XX`.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls() {
        let url = parse_redis_url("redis://user:p%40ss@cache:6380/2").unwrap();
        assert_eq!((url.host.as_str(), url.port, url.db), ("cache", 6380, 2));
        assert_eq!(url.password.as_deref(), Some("p@ss"));
        assert_eq!(url.to_string(), "redis://user:***@cache:6380/2");
        let url = parse_redis_url("rediss://:secret@[::1]").unwrap();
        assert!(url.tls);
        assert_eq!((url.host.as_str(), url.port), ("::1", 6379));
        assert_eq!(url.to_string(), "rediss://:***@[::1]:6379");
        assert_eq!(parse_redis_url("http://x"), Err(AddressError::RedisScheme));
        assert_eq!(
            parse_redis_url("redis://h:70000"),
            Err(AddressError::RedisPort(PortError::OutOfRange(70000)))
        );
        let error = parse_redis_url("redis://:hunter2@h:x").unwrap_err();
        assert!(!format!("{error} {error:?}").contains("hunter2"), "{error}");
    }

    #[test]
    fn cluster_urls() {
        let url =
            parse_broker_url("redis+cluster://:s3cret@127.0.0.1:7000,127.0.0.1:7001").unwrap();
        assert!(url.cluster && !url.tls);
        assert_eq!((url.host.as_str(), url.port), ("127.0.0.1", 7000));
        assert_eq!(url.seeds, vec![("127.0.0.1".to_owned(), 7001)]);
        assert_eq!(
            url.to_string(),
            "redis+cluster://:***@127.0.0.1:7000,127.0.0.1:7001"
        );
        assert_eq!(
            url.seed_connection_strings(),
            [
                "redis://:s3cret@127.0.0.1:7000/0",
                "redis://:s3cret@127.0.0.1:7001/0"
            ]
        );
        // The lowest seed keys the cluster, whatever the order written.
        let other = parse_broker_url("redis+cluster://localhost:7001,127.0.0.1:7000").unwrap();
        assert_eq!(url.server(), other.server());
        let tls = parse_broker_url("rediss+cluster://[::1]:7000").unwrap();
        assert!(tls.tls && tls.cluster && tls.seeds.is_empty());
        assert_eq!(
            parse_broker_url("redis+cluster://h:1/3"),
            Err(AddressError::ClusterDatabase(3))
        );
        assert_eq!(
            parse_broker_url("redis+cluster://h:1,h:1"),
            Err(AddressError::ClusterSeedTwice("h:1".to_owned()))
        );
        assert_eq!(
            parse_broker_url("redis+cluster://h:1,h:70000"),
            Err(AddressError::RedisPort(PortError::OutOfRange(70000)))
        );
        let error = parse_broker_url("redis+cluster://:hunter2@h:1,:x").unwrap_err();
        assert!(!format!("{error} {error:?}").contains("hunter2"), "{error}");
        assert!(!parse_broker_url("redis://h").unwrap().cluster);
    }

    #[test]
    fn amqp_urls() {
        let url = parse_amqp_url("amqp://guest:gu%40st@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.vhost.as_str()),
            ("127.0.0.1", 5672, "/")
        );
        assert_eq!(url.password.as_deref(), Some("gu@st"));
        assert_eq!(url.to_string(), "amqp://guest:***@127.0.0.1:5672");
        assert_eq!(
            url.connection_string(),
            "amqp://guest:gu%40st@127.0.0.1:5672/%2F"
        );
        let url = parse_amqp_url("amqps://u:p@rabbit.example.com/chat").unwrap();
        assert!(url.tls);
        assert_eq!((url.port, url.vhost.as_str()), (5671, "chat"));
        assert_eq!(
            url.to_string(),
            "amqps://u:***@rabbit.example.com:5671/chat"
        );
        assert_eq!(parse_amqp_url("redis://h"), Err(AddressError::AmqpScheme));
        assert_eq!(
            parse_amqp_url("amqp:///x"),
            Err(AddressError::AmqpWithoutHost)
        );
        assert_eq!(
            parse_amqp_url("amqp://h/a/b"),
            Err(AddressError::AmqpVhostSlash)
        );
        assert_eq!(
            parse_amqp_url("amqp://h:70000"),
            Err(AddressError::AmqpPort(PortError::OutOfRange(70000)))
        );
        let error = parse_amqp_url("amqp://guest:hunter2").unwrap_err();
        assert!(!format!("{error} {error:?}").contains("hunter2"), "{error}");
        let error = parse_amqp_url("amqp://u:hun/ter2@h").unwrap_err();
        assert!(!format!("{error} {error:?}").contains("ter2"), "{error}");
    }

    #[test]
    fn endpoints() {
        let e = parse_endpoint("tcp://10.1.2.3:5000").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("10.1.2.3", 5000));
        assert_eq!(parse_endpoint("tcp://[::1]:5").unwrap().host, "::1");
        assert!(
            parse_endpoint("ipc:///tmp/x")
                .unwrap_err()
                .to_string()
                .contains("ipc://")
        );
        assert!(
            parse_endpoint("tcp://h")
                .unwrap_err()
                .to_string()
                .contains("no port")
        );
        assert_eq!(
            parse_endpoint("tcp://h:0").unwrap_err().to_string(),
            "endpoint `tcp://h:0`: port 0 is out of range: ports are 1-65535"
        );
    }
}
