//! Who the admin server answers: a request whose `Host` is not the address
//! it is bound to (or a loopback form of it) is a DNS-rebinding attempt
//! (421); a state-changing request (anything but GET/HEAD) must come from
//! the page itself: no `Origin` or a same-origin one, and either an
//! `application/json` body or the page's token, which a cross-site form or
//! `no-cors` fetch can send neither of (403). It never looks at bodies.

use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, HOST, ORIGIN};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The header the admin page sends its token in.
pub const TOKEN_HEADER: &str = "x-topo-token";

/// What the guard compares requests with.
#[derive(Clone, Debug)]
pub struct Guard {
    /// The address the server is bound to.
    pub bound: SocketAddr,
    /// A random token, embedded in the page served at `/`.
    pub token: Arc<str>,
}

impl Guard {
    pub fn new(bound: SocketAddr) -> Guard {
        Guard {
            bound,
            token: random_token().into(),
        }
    }

    /// `Host` names this server: its bound address, or `localhost` / a
    /// loopback address with its port when bound to loopback. Bound to
    /// every interface, any IP literal with the port is accepted (a
    /// rebinding attack needs a DNS name, which is refused).
    pub fn host_allowed(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        // Rebinding needs a foreign name; a missing port is tolerated
        // (some clients omit it), a different one is not.
        if port.is_some_and(|p| p != self.bound.port()) {
            return false;
        }
        let ip = self.bound.ip();
        match name.parse::<IpAddr>() {
            Ok(asked) => {
                asked == ip || (ip.is_loopback() && asked.is_loopback()) || (ip.is_unspecified())
            }
            Err(_) => {
                name.eq_ignore_ascii_case("localhost") && (ip.is_loopback() || ip.is_unspecified())
            }
        }
    }

    /// Why a state-changing request is refused, if it is.
    fn refuse_change(&self, headers: &HeaderMap) -> Option<&'static str> {
        if let Some(origin) = headers.get(ORIGIN) {
            let host = headers.get(HOST).and_then(|h| h.to_str().ok());
            let same = match (origin.to_str(), host) {
                (Ok(origin), Some(host)) => origin
                    .strip_prefix("http://")
                    .is_some_and(|o| o.eq_ignore_ascii_case(host)),
                _ => false,
            };
            if !same {
                return Some("cross-origin request refused");
            }
        }
        let json = headers
            .get(CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .and_then(|c| c.split(';').next())
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("application/json"));
        let token = headers
            .get(TOKEN_HEADER)
            .is_some_and(|t| t.as_bytes() == self.token.as_bytes());
        if !json && !token {
            return Some("needs Content-Type: application/json or the page's token");
        }
        None
    }
}

/// The middleware: 421 for a foreign `Host`, 403 for a foreign change.
pub async fn check(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    if !host.is_some_and(|h| guard.host_allowed(h)) {
        tracing::debug!(host = ?headers.get(HOST), "admin request refused: foreign Host");
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "this server answers only to its own address\n",
        )
            .into_response();
    }
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
    if changes && let Some(why) = guard.refuse_change(headers) {
        tracing::info!(origin = ?headers.get(ORIGIN), why, "admin request refused");
        return (StatusCode::FORBIDDEN, format!("{why}\n")).into_response();
    }
    next.run(request).await
}

/// `host[:port]` or `[v6][:port]`.
fn split_host(host: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((name, port));
    }
    match host.rsplit_once(':') {
        Some((name, port)) => Some((name, Some(port.parse().ok()?))),
        None => Some((host, None)),
    }
}

/// 128 bits from the kernel; if that fails, from the hasher's random keys
/// and the clock (still unknown to another origin, which cannot read `/`).
fn random_token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        use std::hash::{BuildHasher, Hasher};
        for chunk in bytes.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(addr: &str) -> Guard {
        Guard::new(addr.parse().unwrap())
    }

    #[test]
    fn host_must_name_the_bound_address() {
        let g = guard("127.0.0.1:7070");
        for ok in [
            "127.0.0.1:7070",
            "localhost:7070",
            "LOCALHOST:7070",
            "[::1]:7070",
            "127.0.0.1",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example:7070",
            "evil.example",
            "127.0.0.1:7071",
            "10.0.0.1:7070",
            "",
            "[::1",
        ] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
        let any = guard("0.0.0.0:7070");
        assert!(any.host_allowed("192.168.1.5:7070"));
        assert!(!any.host_allowed("rebind.example:7070"));
    }

    #[test]
    fn changes_need_same_origin_and_json_or_token() {
        let g = guard("127.0.0.1:7070");
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            h.insert(HOST, "127.0.0.1:7070".parse().unwrap());
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        assert!(
            g.refuse_change(&headers(&[("content-type", "application/json")]))
                .is_none()
        );
        assert!(
            g.refuse_change(&headers(&[(TOKEN_HEADER, &g.token)]))
                .is_none()
        );
        assert!(
            g.refuse_change(&headers(&[
                ("origin", "http://127.0.0.1:7070"),
                ("content-type", "application/json; charset=utf-8")
            ]))
            .is_none()
        );
        assert!(
            g.refuse_change(&headers(&[("content-type", "text/plain")]))
                .is_some()
        );
        assert!(
            g.refuse_change(&headers(&[(TOKEN_HEADER, "guess")]))
                .is_some()
        );
        assert!(
            g.refuse_change(&headers(&[
                ("origin", "http://127.0.0.2:7070"),
                ("content-type", "application/json")
            ]))
            .is_some()
        );
        assert!(
            g.refuse_change(&headers(&[("origin", "null"), (TOKEN_HEADER, &g.token)]))
                .is_some()
        );
    }
}
