//! The live admin page in a real browser: `topo up` (the real binary) runs a
//! zmq-3node-like topology on free ports with `--admin`; headless Chromium
//! (tests/browser/admin.mjs) sees three nodes and six links, dots after a
//! message, a rejected save's line:column, an added node appearing, and a
//! probe turning every cell green. Screenshots land in `tests/artifacts/`.
//! Also the admin API without a browser: `/api/view`, `/healthz` counters.

use crate::chat::{Client, LIMIT, http_get};
use crate::external::{chromium_or_skip, npm_dir};
use crate::reload::Up;
use crate::util::{free_port, wait_until};
use std::path::Path;
use std::time::Duration;
use topo::admin::live::{StatsEvent, TopologyEvent};
use topo::admin::view::NodeState;

/// zmq-3node on free ports, optionally with `d` added (and `a` subscribing
/// to it); d has a NATS link too when `nats` names a server (drawn as a
/// broker vertex with d's two NATS edges).
fn mesh(http: &[u16; 4], publ: &[u16; 4], with_d: bool) -> String {
    mesh_nats(http, publ, with_d, None)
}

fn mesh_nats(http: &[u16; 4], publ: &[u16; 4], with_d: bool, nats: Option<&str>) -> String {
    let a_subs = if with_d { "[b, c, d]" } else { "[b, c]" };
    let mut text = format!(
        "name: zmq-3node\nnodes:\n  \
         a: {{ http: {}, zmq: {{ pub: {}, sub: {a_subs} }} }}\n  \
         b: {{ http: {}, zmq: {{ pub: {}, sub: [a, c] }} }}\n  \
         c: {{ http: {}, zmq: {{ pub: {}, sub: [a, b] }} }}\n",
        http[0], publ[0], http[1], publ[1], http[2], publ[2]
    );
    if with_d {
        let nats = nats
            .map(|url| {
                format!(", nats: {{ broker: \"{url}\", publish: chat.d, subscribe: [chat.none] }}")
            })
            .unwrap_or_default();
        text.push_str(&format!(
            "  d: {{ http: {}, zmq: {{ pub: {}, sub: [a, b, c] }}{nats} }}\n",
            http[3], publ[3]
        ));
    }
    text
}

fn ports() -> ([u16; 4], [u16; 4]) {
    let p = free_port;
    ([p(), p(), p(), p()], [p(), p(), p(), p()])
}

async fn wait_admin(up: &Up) {
    up.wait_generation(0).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_draws_the_mesh_follows_a_reload_and_probes_green() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let dir = npm_dir("browser", "playwright-core");
    let tmp = tempfile::tempdir().unwrap();
    let (http, publ) = ports();
    let file = tmp.path().join("zmq-3node.yaml");
    std::fs::write(&file, mesh(&http, &publ, false)).unwrap();
    let invalid = tmp.path().join("invalid.yaml");
    std::fs::write(
        &invalid,
        mesh(&http, &publ, false).replace("[a, c]", "[a, x]"),
    )
    .unwrap();
    let edited = tmp.path().join("edited.yaml");
    let nats = topo::testing::nats::NatsServer::start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&edited, mesh_nats(&http, &publ, true, Some(&nats.url()))).unwrap();
    let up = Up::start(&file, &[]);
    wait_admin(&up).await;

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new("node")
            .arg(dir.join("admin.mjs"))
            .arg(format!("http://127.0.0.1:{}/", up.admin))
            .args([&file, &invalid, &edited])
            .arg(&shots)
            .env("CHROMIUM", &chromium)
            .output(),
    )
    .await
    .expect("the browser test finished within 90 s")
    .expect("node runs");
    assert!(
        output.status.success(),
        "{}\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        up.log()
    );
    assert!(shots.join("admin-probe.png").exists());
}

/// Without a browser: the view names vertices and edges, and `/healthz`
/// counts what crossed each link (the dots' source).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_and_the_link_counters_follow_the_traffic() {
    let tmp = tempfile::tempdir().unwrap();
    let (http, publ) = ports();
    let file = tmp.path().join("zmq-3node.yaml");
    std::fs::write(&file, mesh(&http, &publ, false)).unwrap();
    let up = Up::start(&file, &[]);
    wait_admin(&up).await;
    let get = |port: u16, path: &'static str| async move {
        let (status, body) = http_get(port, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let (status, body) = http_get(up.admin, "/api/view").await;
    assert_eq!(status, 200, "/api/view: {body}");
    let view: TopologyEvent = serde_json::from_str(&body).unwrap();
    assert_eq!(view.view.nodes.len(), 3);
    assert_eq!(view.view.edges.len(), 6);
    assert_eq!(view.view.edges[0].label, "chat");
    assert_eq!(view.rejected, None);

    // b receives from a: b's SUB link to a's PUB counts it (retried: slow joiner).
    let a = tokio::sync::Mutex::new(Client::connect(http[0]).await);
    let mut b = Client::connect(http[1]).await;
    let a_pub = format!("tcp://127.0.0.1:{}", publ[0]);
    wait_until("b's link from a counts a message", LIMIT, || async {
        a.lock().await.send("counted").await;
        let health = get(http[1], "/healthz").await;
        let link = health["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["endpoint"] == a_pub.as_str())
            .cloned()
            .expect("b's sub link to a");
        match link["received"].as_u64().unwrap() {
            0 => Err(link),
            _ => Ok(()),
        }
    })
    .await;
    b.wait_for("counted").await;
    let health = get(http[0], "/healthz").await;
    assert_eq!(health["links"][0]["kind"], "zmq-pub");
    assert!(
        health["links"][0]["sent"].as_u64().unwrap() >= 1,
        "a's PUB counts what it sent: {health}"
    );
}

/// `up --process`: the node state lives in the children, and the event
/// stream still shows every node and link up (polled through `/healthz`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_shows_children_of_up_process() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().unwrap();
    let (http, publ) = ports();
    let file = tmp.path().join("zmq-3node.yaml");
    std::fs::write(&file, mesh(&http, &publ, false)).unwrap();
    let up = Up::start(&file, &["--process"]);
    wait_admin(&up).await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", up.admin))
        .await
        .unwrap();
    // HTTP/1.0: the stream comes unchunked, one event after another.
    // (With a Host: the admin server answers nothing without one.)
    stream
        .write_all(b"GET /api/events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let all_up = async {
        let mut seen = String::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut topology = false;
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the stream ended:\n{seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            while let Some(end) = seen.find("\n\n") {
                let block: String = seen.drain(..end + 2).collect();
                let data = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect::<String>();
                if block.contains("event: topology") {
                    let v: TopologyEvent = serde_json::from_str(&data).unwrap();
                    assert_eq!(v.view.edges.len(), 6);
                    topology = true;
                }
                if block.contains("event: stats") {
                    assert!(topology, "the topology comes first");
                    let s: StatsEvent = serde_json::from_str(&data).unwrap();
                    if s.nodes.len() == 3
                        && s.nodes.values().all(|n| n.state == NodeState::Up)
                        && s.edges.len() == 6
                        && s.edges.values().all(|e| e.state == "up")
                    {
                        return;
                    }
                }
            }
        }
    };
    tokio::time::timeout(LIMIT * 2, all_up)
        .await
        .unwrap_or_else(|_| panic!("never all up:\n{}", up.log()));
}
