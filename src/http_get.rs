//! The one HTTP client in topo: a GET to another topo (a node's `/healthz`,
//! the admin server's `/api/topology`). HTTP/1.1 with `Connection: close`;
//! the body may be `Content-Length`-delimited, chunked, or run to the end of
//! the connection. The answer is read whole but never beyond `max_bytes`,
//! and nothing waits longer than `limit`. A leaf: it knows no other module.

use std::fmt::Display;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};

/// Why a GET brought no body back. Each names the address asked.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("nothing answers on {addr}: {error}")]
    Connect { addr: String, error: std::io::Error },
    #[error("{error}")]
    Io { addr: String, error: std::io::Error },
    #[error("{addr}: no answer within {limit:?}")]
    TimedOut { addr: String, limit: Duration },
    #[error("{addr}: the answer is larger than {max} bytes")]
    TooLarge { addr: String, max: usize },
    #[error("{addr}: not an HTTP response")]
    NotHttp { addr: String },
    /// Any status but 200, with its status line.
    #[error("{addr}: {status}")]
    Status { addr: String, status: String },
}

/// The body of a `200` answer to `GET path` on `addr`.
pub async fn get(
    addr: impl ToSocketAddrs + Display,
    path: &str,
    limit: Duration,
    max_bytes: usize,
) -> Result<String, GetError> {
    let name = addr.to_string();
    let response = tokio::time::timeout(limit, exchange(addr, &name, path, max_bytes))
        .await
        .map_err(|_| GetError::TimedOut {
            addr: name.clone(),
            limit,
        })??;
    parse(&response).map_err(|problem| match problem {
        Problem::NotHttp => GetError::NotHttp { addr: name.clone() },
        Problem::Status(status) => GetError::Status {
            addr: name.clone(),
            status,
        },
    })
}

async fn exchange(
    addr: impl ToSocketAddrs,
    name: &str,
    path: &str,
    max_bytes: usize,
) -> Result<Vec<u8>, GetError> {
    let io = |error| GetError::Io {
        addr: name.to_owned(),
        error,
    };
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|error| GetError::Connect {
            addr: name.to_owned(),
            error,
        })?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    // One byte over the cap tells "exactly max" from "more".
    let mut response = Vec::new();
    let cap = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    (&mut stream)
        .take(cap)
        .read_to_end(&mut response)
        .await
        .map_err(io)?;
    if response.len() > max_bytes {
        return Err(GetError::TooLarge {
            addr: name.to_owned(),
            max: max_bytes,
        });
    }
    Ok(response)
}

enum Problem {
    NotHttp,
    Status(String),
}

fn parse(response: &[u8]) -> Result<String, Problem> {
    let end = find(response, b"\r\n\r\n").ok_or(Problem::NotHttp)?;
    let head = std::str::from_utf8(&response[..end]).map_err(|_| Problem::NotHttp)?;
    let body = &response[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut words = status.split(' ');
    let (Some(version), Some(code)) = (words.next(), words.next()) else {
        return Err(Problem::NotHttp);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Problem::NotHttp);
    }
    if code != "200" {
        return Err(Problem::Status(status.to_owned()));
    }
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(body).ok_or(Problem::NotHttp)?
    } else if let Some(length) = header("content-length") {
        let length: usize = length.parse().map_err(|_| Problem::NotHttp)?;
        body.get(..length).ok_or(Problem::NotHttp)?.to_vec()
    } else {
        body.to_vec()
    };
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// A chunked body's data; `None` if it is malformed or cut short.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n")?;
        let line = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = line.split(';').next()?.trim();
        let size = usize::from_str_radix(size, 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers one connection with `answer` (and then, if
    /// `hold`, keeps the connection open without a word more).
    async fn serve(answer: &'static [u8], hold: bool) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await;
            let _ = socket.write_all(answer).await;
            if hold {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        });
        addr
    }

    const LIMIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn reads_length_chunked_and_close_delimited_bodies() {
        let length = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false).await;
        assert_eq!(get(length, "/", LIMIT, 1024).await.unwrap(), "hello");
        let chunked = serve(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;x=1\r\n, world\r\n0\r\n\r\n",
            false,
        )
        .await;
        assert_eq!(
            get(chunked, "/", LIMIT, 1024).await.unwrap(),
            "hello, world"
        );
        let close = serve(b"HTTP/1.0 200 OK\r\n\r\n{\"a\":1}", false).await;
        assert_eq!(get(close, "/", LIMIT, 1024).await.unwrap(), "{\"a\":1}");
    }

    #[tokio::test]
    async fn refuses_what_is_not_a_200_answer() {
        let cut = serve(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nhello",
            false,
        )
        .await;
        let error = get(cut, "/", LIMIT, 1024).await.unwrap_err();
        assert!(matches!(error, GetError::NotHttp { .. }), "{error:?}");
        let missing = serve(b"HTTP/1.1 404 Not Found\r\n\r\n", false).await;
        let error = get(missing, "/x", LIMIT, 1024).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{missing}: HTTP/1.1 404 Not Found")
        );
        let garbage = serve(b"SSH-2.0-OpenSSH\r\n\r\n", false).await;
        let error = get(garbage, "/", LIMIT, 1024).await.unwrap_err();
        assert!(matches!(error, GetError::NotHttp { .. }), "{error:?}");
    }

    /// A peer that sends too much, or holds the connection open, costs a
    /// bounded amount of memory and time.
    #[tokio::test]
    async fn an_endless_or_silent_peer_is_cut_off() {
        static BIG: [u8; 4096] = [b'x'; 4096];
        let big = serve(&BIG, false).await;
        let error = get(big, "/", LIMIT, 1000).await.unwrap_err();
        assert!(
            matches!(error, GetError::TooLarge { max: 1000, .. }),
            "{error:?}"
        );
        let silent = serve(b"HTTP/1.1 200 OK\r\n", true).await;
        let started = std::time::Instant::now();
        let limit = Duration::from_millis(200);
        let error = get(silent, "/", limit, 1000).await.unwrap_err();
        assert!(matches!(error, GetError::TimedOut { .. }), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
