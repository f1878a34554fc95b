//! The live page at demo quality (issue 18), in headless Chromium against
//! the real `topo up`: a stable layout across reloads that add and remove
//! nodes (and across a reload of the page, with a dragged node), no label
//! box over a node or another label at 3, 12 and 30 nodes.
//! Screenshots land in `tests/artifacts/` (copied to `docs/` for the README).

use crate::chat::LIMIT;
use crate::external::{chromium_or_skip, npm_dir};
use crate::reload::Up;
use crate::util::free_port;
use std::path::Path;
use std::time::Duration;

/// A ring over `members` (indices into the port lists): each node subscribes
/// to the one before it.
pub fn ring(name: &str, members: &[usize], http: &[u16], publ: &[u16]) -> String {
    let mut yaml = format!("name: {name}\nnodes:\n");
    for (k, &i) in members.iter().enumerate() {
        let before = members[(k + members.len() - 1) % members.len()];
        yaml.push_str(&format!(
            "  n{i}: {{ http: {}, zmq: {{ pub: {}, sub: [n{before}] }} }}\n",
            http[i], publ[i]
        ));
    }
    yaml
}

async fn wait_admin(up: &Up) {
    crate::util::wait_until("an admin server at generation 0", LIMIT, || async {
        match up.generation().await {
            Some(0) => Ok(()),
            _ => Err(up.log()),
        }
    })
    .await
}

/// Runs `tests/browser/SCRIPT` against the live page of `up` (then `args`,
/// then the screenshot folder), and fails with its output and topo's log.
async fn browse(
    chromium: &std::path::Path,
    script: &str,
    up: &Up,
    args: &[std::ffi::OsString],
    shots: &std::path::Path,
) {
    let dir = npm_dir("browser", "playwright-core");
    let output = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new("node")
            .arg(dir.join(script))
            .arg(format!("http://127.0.0.1:{}/", up.admin))
            .args(args)
            .arg(shots)
            .env("CHROMIUM", chromium)
            .output(),
    )
    .await
    .expect("the browser test finished within 180 s")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        up.log()
    );
    eprintln!("{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layout_is_stable_across_reloads_and_no_label_overlaps_at_3_12_30_nodes() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let http: Vec<u16> = (0..30).map(|_| free_port()).collect();
    let publ: Vec<u16> = (0..30).map(|_| free_port()).collect();
    let write = |file: &str, members: Vec<usize>| {
        let path = tmp.path().join(file);
        std::fs::write(&path, ring("ring", &members, &http, &publ)).unwrap();
        path
    };
    let file = write("ring.yaml", (0..3).collect());
    let ring3 = write("ring3.yaml", (0..3).collect());
    let ring12 = write("ring12.yaml", (0..12).collect());
    let edited = write("ring12-edited.yaml", (0..14).filter(|i| *i != 5).collect());
    let ring30 = write("ring30.yaml", (0..30).collect());
    let up = Up::start(&file, &[]);
    wait_admin(&up).await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    let files = [&file, &ring3, &ring12, &edited, &ring30].map(|f| f.as_os_str().to_owned());
    browse(&chromium, "layout.mjs", &up, &files, &shots).await;
    for n in [3, 12, 30] {
        assert!(shots.join(format!("live-{n}.png")).exists());
    }
}

/// a <-> b over ZeroMQ; a and c on the Redis server at `redis`.
fn mixed(http: &[u16], publ: &[u16], redis: &str) -> String {
    format!(
        "name: faults\nbrokers:\n  local: {{ url: \"{redis}\" }}\nnodes:\n  \
         a: {{ http: {}, zmq: {{ pub: {}, sub: [b] }}, redis: {{ broker: local }} }}\n  \
         b: {{ http: {}, zmq: {{ pub: {}, sub: [a] }} }}\n  \
         c: {{ http: {}, redis: {{ broker: local }} }}\n",
        http[0], publ[0], http[1], publ[1], http[2]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_button_changes_the_picture_and_probe_goes_red_then_green() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let redis = crate::util::RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let http: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let publ: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let file = tmp.path().join("faults.yaml");
    std::fs::write(&file, mixed(&http, &publ, &redis.url())).unwrap();
    let up = Up::start(&file, &[]);
    wait_admin(&up).await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    browse(&chromium, "faults.mjs", &up, &[], &shots).await;
    // The terminal's log names each switch, once on and once off.
    let log = up.log();
    for what in [
        "zmq sub tcp://127.0.0.1",
        "redis subscription chat_messages cut",
        "broker link held down",
        "node b stopped",
    ] {
        assert!(log.contains(what), "{what}:\n{log}");
    }
    assert_eq!(log.matches("fault switch on").count(), 4, "{log}");
    assert_eq!(log.matches("fault switch off").count(), 4, "{log}");
}

/// The "Broker down" button on AMQP nodes (a, and durable b, on the shared
/// RabbitMQ): offered for both, it holds a's link down on the picture and
/// in Probe, and lets it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_down_button_holds_an_amqp_node_down_and_lets_it_back() {
    use crate::amqp::{cleanup, file, node};
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let exchange = crate::rabbit::unique("live");
    let queue = crate::rabbit::unique("live-b");
    let x = format!("exchange: {exchange}");
    let yaml = file(&[
        node("a", free_port(), &x),
        node("b", free_port(), &format!("{x}, queue: {queue}")),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("amqp.yaml");
    std::fs::write(&path, yaml).unwrap();
    let up = Up::start(&path, &[]);
    wait_admin(&up).await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    browse(&chromium, "amqp_broker_down.mjs", &up, &[], &shots).await;
    up.wait_log("fault switch off: node a", 1).await;
    let log = up.log();
    for what in [
        "amqp link held down (fault switch)",
        "amqp link let go (fault switch)",
        "fault switch on: node a: broker link held down",
        "fault switch off: node a: broker link held down, restored",
    ] {
        assert_eq!(log.matches(what).count(), 1, "{what}:\n{log}");
    }
    drop(up);
    cleanup(&[&exchange], &[&queue]).await;
}

/// `POST /api/fault` with hostile or wrong bodies: refused with a reason,
/// nothing changes, the server keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_api_refuses_what_it_cannot_apply() {
    use crate::hostile_admin::raw_status;
    let tmp = tempfile::tempdir().unwrap();
    let http: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let publ: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let file = tmp.path().join("ring.yaml");
    std::fs::write(&file, ring("ring", &[0, 1, 2], &http, &publ)).unwrap();
    let up = Up::start(&file, &[]);
    wait_admin(&up).await;
    let post = |body: &str, headers: &str| {
        format!(
            "POST /api/fault HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            up.admin,
            body.len()
        )
    };
    let json = "Content-Type: application/json\r\n";
    // Not from the page: no JSON type and no token.
    assert_eq!(
        raw_status(up.admin, &post(r#"{"action":"stop","node":"n0"}"#, "")).await,
        403
    );
    // Bounded body.
    let huge = format!(r#"{{"action":"stop","node":"{}"}}"#, "x".repeat(64 * 1024));
    assert_eq!(raw_status(up.admin, &post(&huge, json)).await, 413);
    for (body, status) in [
        ("not json", 400),
        (r#"{"action":"explode"}"#, 400),
        (r#"{"action":"stop","node":"n0","extra":1}"#, 422),
        (r#"{"action":"stop"}"#, 400),
        (r#"{"action":"cut","edge":"zmq:n9>n0"}"#, 400),
        (r#"{"action":"stop","node":"nobody"}"#, 409),
        (r#"{"action":"start","node":"n0"}"#, 409),
        (r#"{"action":"broker-down","node":"n0"}"#, 409),
    ] {
        assert_eq!(
            raw_status(up.admin, &post(body, json)).await,
            status,
            "{body}"
        );
    }
    // A real switch still works afterwards, and a save undoes it.
    assert_eq!(
        raw_status(
            up.admin,
            &post(r#"{"action":"cut","edge":"zmq:n0>n1"}"#, json)
        )
        .await,
        200
    );
    let (status, body) = crate::chat::http_get(up.admin, "/api/view").await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""edge":"zmq:n0>n1""#), "{body}");
    std::fs::write(&file, ring("ring", &[0, 1, 2], &http, &publ) + "# saved\n").unwrap();
    up.wait_generation(1).await;
    let (_, body) = crate::chat::http_get(up.admin, "/api/view").await;
    assert!(body.contains(r#""faults":[]"#), "{body}");
    assert!(up.log().contains("zmq sub + tcp://"), "{}", up.log());
}

/// `up --process`: Stop and Start stop and start the node's child; the
/// other switches are refused as not implemented, with why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_process_stop_and_start_work_and_other_switches_answer_501() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().unwrap();
    let http: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let publ: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let file = tmp.path().join("ring.yaml");
    std::fs::write(&file, ring("ring", &[0, 1], &http, &publ)).unwrap();
    let up = Up::start(&file, &["--process"]);
    wait_admin(&up).await;
    let admin = up.admin;
    let post = |body: &'static str| async move {
        let request = format!(
            "POST /api/fault HTTP/1.1\r\nHost: 127.0.0.1:{admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", admin))
            .await
            .unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(LIMIT, stream.read_to_string(&mut answer))
            .await
            .expect("an answer in time")
            .unwrap();
        answer
    };
    let answer = post(r#"{"action":"cut","edge":"zmq:n0>n1"}"#).await;
    assert!(answer.starts_with("HTTP/1.1 501"), "{answer}");
    assert!(answer.contains("only Stop and Start"), "{answer}");
    let healthz = |port: u16| async move {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let get =
            format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(get.as_bytes()).await.ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.ok()?;
        Some(answer)
    };
    assert!(healthz(http[0]).await.is_some(), "n0 runs");
    let answer = post(r#"{"action":"stop","node":"n0"}"#).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The child is gone when the answer comes (its supervisor waited).
    assert!(healthz(http[0]).await.is_none(), "n0 still answers");
    let answer = post(r#"{"action":"start","node":"n0"}"#).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    crate::util::wait_until("n0 back", LIMIT, || async {
        healthz(http[0]).await.ok_or_else(|| up.log())
    })
    .await;
    assert!(
        up.log().contains("fault switch on: node n0 stopped"),
        "{}",
        up.log()
    );
}

/// `topo up -v`: the ready table lists every link in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_verbose_lists_every_link_in_full() {
    let tmp = tempfile::tempdir().unwrap();
    let http: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let publ: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let file = tmp.path().join("ring.yaml");
    std::fs::write(&file, ring("ring", &[0, 1], &http, &publ)).unwrap();
    let mut up = crate::util::TestCommand::new()
        .args(["up", "-v", "--no-admin"])
        .arg(&file)
        .topology(&file)
        .spawn();
    let text = crate::util::wait_until("the ready table", LIMIT, || {
        assert!(up.running(), "topo up exited\n{up}");
        let text = up.stdout();
        async move {
            if text.lines().count() >= 4 {
                Ok(text)
            } else {
                Err(text)
            }
        }
    })
    .await;
    up.kill();
    let full = format!(
        "zmq pub tcp://127.0.0.1:{} topic \"chat\"; zmq sub tcp://127.0.0.1:{} (n1) filter \"chat\"",
        publ[0], publ[1]
    );
    assert!(text.contains(&full), "{text}");
}
