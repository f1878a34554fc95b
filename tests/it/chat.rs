//! Helpers for runtime tests: topologies compiled from YAML, a WebSocket chat client,
//! a raw HTTP GET, and a probe loop that waits out ZeroMQ's slow joiner.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use topo::config::yaml::Span;
use topo::model::*;

/// A port to listen on (see `util::free_port`).
pub fn port() -> u16 {
    crate::util::free_port()
}

/// Every await in these tests is bounded by this unless it says otherwise.
pub const LIMIT: Duration = Duration::from_secs(10);

/// The topology these nodes and brokers describe, compiled from YAML by
/// `topo::check::check_bytes` like any file, so that no test can run a
/// topology the compiler would refuse. The builders below only say what
/// to write: a ZeroMQ `sub` as an endpoint, a Redis link on broker 0.
pub fn topology(nodes: Vec<Node>, brokers: Vec<Broker>) -> Topology {
    let yaml = yaml_of(&nodes, &brokers);
    let checked = topo::check::check_bytes("test.yaml", "test", yaml.as_bytes(), &|_| None);
    match checked.valid {
        Some(valid) => valid.topology,
        None => panic!(
            "the test's topology does not compile:\n{}\n{yaml}",
            checked.render()
        ),
    }
}

fn yaml_of(nodes: &[Node], brokers: &[Broker]) -> String {
    let list = |items: &[String]| format!("[{}]", items.join(", "));
    let quoted =
        |items: &[String]| list(&items.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>());
    let mut yaml = String::new();
    if !brokers.is_empty() {
        yaml.push_str("brokers:\n");
        for b in brokers {
            let u = &b.url;
            assert!(
                !u.tls && u.password.is_none() && u.ca.is_none(),
                "plain brokers only"
            );
            yaml.push_str(&format!(
                "  {}: {{ url: \"redis://{}:{}/{}\" }}\n",
                b.name, u.host, u.port, u.db
            ));
        }
    }
    yaml.push_str("nodes:\n");
    for n in nodes {
        yaml.push_str(&format!("  {}:\n", n.name));
        if let Some(http) = n.http {
            yaml.push_str(&format!(
                "    http: {}\n    host: {}\n",
                http.port(),
                http.ip()
            ));
        }
        if n.relay {
            yaml.push_str("    relay: true\n");
        }
        if let Some(z) = &n.zmq {
            yaml.push_str("    zmq:\n");
            if let Some(p) = &z.publish {
                yaml.push_str(&format!(
                    "      pub: \"tcp://{}\"\n      topic: {:?}\n",
                    p.bind, p.topic
                ));
            }
            if !z.subscribe.is_empty() {
                let subs: Vec<String> = z
                    .subscribe
                    .iter()
                    .map(|s| format!("tcp://{}:{}", s.endpoint.host, s.endpoint.port))
                    .collect();
                yaml.push_str(&format!("      sub: {}\n", quoted(&subs)));
            }
        }
        if let Some(r) = &n.redis {
            yaml.push_str(&format!(
                "    redis:\n      broker: {}\n      publish: {:?}\n      subscribe: {}\n      patterns: {}\n",
                brokers[r.broker.0].name,
                r.publish,
                quoted(&r.subscribe),
                quoted(&r.patterns)
            ));
        }
        let defaults = Limits::default();
        if n.limits.outbox != defaults.outbox {
            yaml.push_str(&format!("    limits: {{ outbox: {} }}\n", n.limits.outbox));
        }
    }
    yaml
}

pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A node with an HTTP server on `http` (if any) and no links.
pub fn node(name: &str, http: Option<u16>) -> Node {
    Node {
        name: name.into(),
        span: Span::default(),
        http: http.map(local),
        zmq: None,
        redis: None,
        amqp: None,
        nats: None,
        relay: false,
        limits: Limits::default(),
    }
}

/// Adds a ZeroMQ section: PUB on `publish` (if any), SUB to each port in `subscribe`.
pub fn with_zmq(mut n: Node, publish: Option<u16>, subscribe: &[u16]) -> Node {
    n.zmq = Some(ZmqLink {
        publish: publish.map(|p| ZmqPublish {
            bind: local(p),
            topic: "chat".into(),
        }),
        subscribe: subscribe
            .iter()
            .map(|&port| ZmqSubscription {
                endpoint: Endpoint {
                    host: "127.0.0.1".into(),
                    port,
                },
                from: None,
                span: Span::default(),
            })
            .collect(),
        filter: "chat".into(),
    });
    n
}

/// Adds a Redis section on broker 0 publishing on `publish`.
pub fn with_redis(mut n: Node, publish: &str, subscribe: &[&str], patterns: &[&str]) -> Node {
    n.redis = Some(RedisLink {
        broker: BrokerId(0),
        publish: publish.into(),
        subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        patterns: patterns.iter().map(|s| s.to_string()).collect(),
        sharded: false,
    });
    n
}

pub fn broker(port: u16) -> Broker {
    Broker {
        name: "main".into(),
        url: RedisUrl {
            tls: false,
            host: "127.0.0.1".into(),
            port,
            username: None,
            password: None,
            db: 0,
            ca: None,
            cluster: false,
            seeds: Vec::new(),
        },
        span: Span::default(),
    }
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(port: u16) -> Client {
        Self::connect_path(port, "/ws").await
    }

    /// Connects once something listens on `port`: the readiness signal of
    /// a node started without a handle (`run_node`, a child process).
    pub async fn connect_when_listening(port: u16) -> Client {
        crate::util::wait_until(&format!("a listener on {port}"), LIMIT, || async {
            TcpStream::connect(("127.0.0.1", port)).await.map(drop)
        })
        .await;
        Client::connect(port).await
    }

    pub async fn connect_path(port: u16, path: &str) -> Client {
        let url = format!("ws://127.0.0.1:{port}{path}");
        let (ws, _) = timeout(LIMIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        Client { ws }
    }

    pub async fn send(&mut self, text: &str) {
        timeout(LIMIT, self.ws.send(Message::text(text)))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    /// The next frame within `within`, if any.
    pub async fn next_within(&mut self, within: Duration) -> Option<Message> {
        match timeout(within, self.ws.next()).await {
            Ok(Some(Ok(m))) => Some(m),
            Ok(Some(Err(e))) => panic!("websocket error: {e}"),
            Ok(None) | Err(_) => None,
        }
    }

    /// The next text message (panics on anything else or after [`LIMIT`]).
    /// Pings are skipped: tungstenite answers them, and a node with a short
    /// `ping_interval` may send one at any moment.
    pub async fn recv(&mut self) -> String {
        loop {
            match self.next_within(LIMIT).await {
                Some(Message::Text(t)) => return t.to_string(),
                Some(Message::Ping(_)) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// Every text message received before `fence` (which is consumed).
    pub async fn until(&mut self, fence: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let text = self.recv().await;
            if text == fence {
                return seen;
            }
            seen.push(text);
        }
    }

    /// Skips messages until `text` arrives.
    pub async fn wait_for(&mut self, text: &str) {
        self.until(text).await;
    }

    /// The close frame the server sends next (skipping text messages).
    pub async fn close_frame(&mut self) -> Option<CloseFrame> {
        loop {
            match self.next_within(LIMIT).await {
                Some(Message::Close(frame)) => return frame,
                Some(Message::Text(_) | Message::Ping(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// Messages already queued, waiting at most `quiet` for each.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(m) = self.next_within(quiet).await {
            if let Message::Text(t) = m {
                seen.push(t.to_string());
            }
        }
        seen
    }
}

pub fn count(seen: &[String], text: &str) -> usize {
    seen.iter().filter(|s| *s == text).count()
}

/// Sends probes until every link `(from, to)` (indices into `clients`) has
/// carried one: past the ZeroMQ slow joiner, every later message arrives.
pub async fn probe_links(clients: &mut [Client], links: &[(usize, usize)]) {
    let mut pending: Vec<(usize, usize)> = links.to_vec();
    for round in 0..100 {
        if pending.is_empty() {
            return;
        }
        let mut senders: Vec<usize> = pending.iter().map(|l| l.0).collect();
        senders.sort_unstable();
        senders.dedup();
        for &s in &senders {
            clients[s].send(&format!("probe:{s}:{round}")).await;
        }
        for (i, client) in clients.iter_mut().enumerate() {
            for text in client.drain(Duration::from_millis(60)).await {
                if let Some(rest) = text.strip_prefix("probe:")
                    && let Some((from, _)) = rest.split_once(':')
                {
                    let from: usize = from.parse().unwrap();
                    pending.retain(|&l| l != (from, i));
                }
            }
        }
    }
    panic!("links never carried a probe: {pending:?}");
}

/// A node's `/healthz`, as JSON (what scripts and pages read).
pub async fn health(port: u16) -> serde_json::Value {
    let (_, body) = http_get(port, "/healthz").await;
    serde_json::from_str(&body).unwrap()
}

/// `GET path` over a fresh connection: (status code, body).
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    let fetch = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    };
    let response = timeout(LIMIT, fetch).await.expect("http get timed out");
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

impl Client {
    pub async fn send_binary(&mut self) {
        timeout(LIMIT, self.ws.send(Message::binary(vec![1u8, 2, 3])))
            .await
            .expect("send timed out")
            .expect("send failed");
    }
}

impl Client {
    /// Sends any message, raw frames included.
    pub async fn send_message(&mut self, message: Message) {
        timeout(LIMIT, self.ws.send(message))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    /// Reads until the connection ends: the close code, if a close frame came
    /// (a reset or a cut-off frame is an end without one).
    pub async fn ended(&mut self) -> Option<u16> {
        loop {
            match timeout(LIMIT, self.ws.next()).await.expect("never ended") {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// The HTTP status of an upgrade sent with `Origin: origin` (101 when accepted).
pub async fn upgrade_status(http: u16, origin: &str) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://127.0.0.1:{http}/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Origin", origin.parse().unwrap());
    match timeout(LIMIT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap()
    {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

/// Starts the nodes of `yaml`, where `PORT` stands for `http`.
pub async fn start_yaml(yaml: &str, http: u16) -> topo::runtime::Running {
    let text = yaml.replace("PORT", &http.to_string());
    let checked = topo::check::check_bytes("t.yaml", "t", text.as_bytes(), &|_| None);
    let Some(valid) = checked.valid.clone() else {
        panic!("{}", checked.render())
    };
    timeout(LIMIT, topo::runtime::Running::start(&valid.topology))
        .await
        .expect("start timed out")
        .expect("start failed")
}
