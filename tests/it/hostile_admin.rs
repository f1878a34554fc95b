//! The admin server against strangers (issue 11): requests naming another
//! host (DNS rebinding) get 421, changes from another origin or without the
//! page's proof get 403 and run nothing, a cross-origin page in headless
//! Chromium can neither start a probe nor open a chat node's WebSocket,
//! `source` never holds a password, a taken admin port is a start-up
//! error, and idle connections are closed.

use crate::chat::{Client, LIMIT, http_get};
use crate::external::{chromium_or_skip, npm_dir};
use crate::reload::Up;
use crate::util::{TestCommand, free_port};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Sends `request` as is; the status of the answer (0: none).
pub async fn raw_status(port: u16, request: &str) -> u16 {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        response
    };
    let response = timeout(LIMIT, exchange).await.expect("no answer in time");
    let text = String::from_utf8_lossy(&response);
    text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// One node on `http`, an unused broker with a password in the file.
fn file_text(http: u16) -> String {
    format!(
        "name: t\nbrokers:\n  main: {{ url: \"redis://probe:s3cret-pw@127.0.0.1:1\" }}\nnodes:\n  a: {{ http: {http} }}\n"
    )
}

async fn wait_up(up: &Up) {
    crate::util::wait_until("an admin server at generation 0", LIMIT, || async {
        match up.generation().await {
            Some(0) => Ok(()),
            _ => Err(up.log()),
        }
    })
    .await
}

fn post(admin: u16, host: &str, headers: &str) -> String {
    let _ = admin;
    format!(
        "POST /api/probe HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
}

/// No probe message reaches `client` within a moment.
async fn no_probe(client: &mut Client) {
    let seen = client.drain(Duration::from_millis(300)).await;
    assert!(
        seen.iter().all(|m| !m.contains("topo-probe")),
        "a probe ran: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evil_host_and_cross_origin_changes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let http = free_port();
    let file = tmp.path().join("t.yaml");
    std::fs::write(&file, file_text(http)).unwrap();
    let up = Up::start(&file, &[]);
    wait_up(&up).await;
    let admin = up.admin;
    let me = format!("127.0.0.1:{admin}");
    let mut client = Client::connect(http).await;

    // DNS rebinding: the right socket, a foreign name.
    let get = |host: &str| {
        format!("GET /api/topology HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };
    assert_eq!(raw_status(admin, &get("evil.example")).await, 421);
    assert_eq!(
        raw_status(admin, &get(&format!("evil.example:{admin}"))).await,
        421
    );
    assert_eq!(raw_status(admin, &get("127.0.0.1:1")).await, 421);
    assert_eq!(
        raw_status(
            admin,
            "GET /api/topology HTTP/1.1\r\nConnection: close\r\n\r\n"
        )
        .await,
        421
    );
    assert_eq!(raw_status(admin, &get(&me)).await, 200);
    assert_eq!(
        raw_status(admin, &get(&format!("localhost:{admin}"))).await,
        200
    );
    let evil_post = post(admin, "evil.example", "Content-Type: application/json\r\n");
    assert_eq!(raw_status(admin, &evil_post).await, 421);

    // What a cross-site form or no-cors fetch can send: refused, no probe.
    for headers in [
        "Origin: http://evil.example\r\nContent-Type: text/plain\r\n".to_owned(),
        "Origin: http://evil.example\r\nContent-Type: application/json\r\n".to_owned(),
        format!("Origin: http://127.0.0.2:{admin}\r\nContent-Type: application/json\r\n"),
        "Origin: null\r\nContent-Type: application/json\r\n".to_owned(),
        "Content-Type: text/plain\r\n".to_owned(),
        "Content-Type: application/x-www-form-urlencoded\r\n".to_owned(),
        "X-Topo-Token: guessed\r\n".to_owned(),
    ] {
        let status = raw_status(admin, &post(admin, &me, &headers)).await;
        assert_eq!(status, 403, "{headers}");
    }
    no_probe(&mut client).await;

    // The page's own request (same origin, JSON) runs the probe.
    let own = format!("Origin: http://{me}\r\nContent-Type: application/json\r\n");
    assert_eq!(raw_status(admin, &post(admin, &me, &own)).await, 200);
    let seen = client.drain(Duration::from_millis(300)).await;
    assert!(seen.iter().any(|m| m.contains("topo-probe")), "{seen:?}");

    // The page carries a token, which also proves a change.
    let (status, page) = http_get(admin, "/").await;
    assert_eq!(status, 200);
    let token = page
        .split("name=\"topo-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a token in the page");
    assert_eq!(token.len(), 32, "{token}");
    let with_token = format!("X-Topo-Token: {token}\r\n");
    assert_eq!(raw_status(admin, &post(admin, &me, &with_token)).await, 200);

    // Nothing served holds the password.
    let (status, body) = http_get(admin, "/api/topology").await;
    assert_eq!(status, 200);
    assert!(!body.contains("s3cret-pw"), "{body}");
    assert!(body.contains("redis://probe:***@127.0.0.1:1"), "{body}");
    for path in ["/", "/api/view", "/healthz"] {
        let (_, body) = http_get(admin, path).await;
        assert!(!body.contains("s3cret-pw"), "{path}: {body}");
    }
}

/// A minimal HTTP server on 127.0.0.2 (another origin) serving `page` to
/// every request, until the test ends.
async fn evil_origin(page: String) -> u16 {
    let listener = tokio::net::TcpListener::bind(("127.0.0.2", 0))
        .await
        .expect("bind 127.0.0.2");
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let page = page.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = timeout(LIMIT, stream.read(&mut head)).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_origin_page_in_chromium_cannot_probe_or_open_a_chat_socket() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let dir = npm_dir("browser", "playwright-core");
    let tmp = tempfile::tempdir().unwrap();
    let http = free_port();
    let file = tmp.path().join("t.yaml");
    std::fs::write(&file, file_text(http)).unwrap();
    let up = Up::start(&file, &[]);
    wait_up(&up).await;
    let mut client = Client::connect(http).await;

    let target = format!("http://127.0.0.1:{}/api/probe", up.admin);
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/csrf.html"),
    )
    .unwrap()
    .replace("TARGET", &target)
    .replace("NODE_WS", &format!("ws://127.0.0.1:{http}/ws"));
    let evil = evil_origin(page).await;
    let output = timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("node")
            .arg(dir.join("csrf.mjs"))
            .arg(format!("http://127.0.0.2:{evil}/"))
            .env("CHROMIUM", &chromium)
            .output(),
    )
    .await
    .expect("the browser test finished within 60 s")
    .expect("node runs");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let seen = String::from_utf8_lossy(&output.stdout);
    assert!(seen.contains("ws refused"), "{seen}");
    assert!(seen.contains("form answered"), "{seen}");
    // Both requests were answered (the page waited for them): a probe
    // they had started would have delivered its messages already.
    no_probe(&mut client).await;
    let log = up.log();
    assert!(
        log.matches("admin request refused").count() >= 2,
        "both attacks reached the server and were refused:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_admin_port_fails_start_up_naming_the_address() {
    let tmp = tempfile::tempdir().unwrap();
    let http = free_port();
    let file = tmp.path().join("t.yaml");
    std::fs::write(&file, file_text(http)).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut up = TestCommand::new()
        .args(["up", file.to_str().unwrap(), "--admin", &addr])
        .topology(&file)
        .spawn();
    let status = up.exited(LIMIT).await;
    assert!(!status.success(), "{up}");
    assert!(up.stderr().contains(&addr), "{up}");
    assert!(up.stderr().contains("--no-admin"), "{up}");
    assert!(
        !up.stdout().contains("ready"),
        "no ready before failing\n{up}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_trickling_admin_connections_are_closed() {
    use crate::hostile_ws::closed_after;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("t.yaml");
    std::fs::write(&file, file_text(free_port())).unwrap();
    let up = Up::start(&file, &[]);
    wait_up(&up).await;
    let connect = || TcpStream::connect(("127.0.0.1", up.admin));
    let idle = tokio::spawn(closed_after(connect().await.unwrap(), false));
    let slow = tokio::spawn(closed_after(connect().await.unwrap(), true));
    let limit = topo::serve::HEADER_TIMEOUT + Duration::from_secs(2);
    let (idle, slow) = (idle.await.unwrap(), slow.await.unwrap());
    assert!(idle < limit, "idle admin connection open for {idle:?}");
    assert!(slow < limit, "trickling admin connection open for {slow:?}");
    // The server still answers.
    assert_eq!(http_get(up.admin, "/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_admin_address_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    // The node's port is taken, so `topo up` stops right after the admin bind.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let file = tmp.path().join("t.yaml");
    std::fs::write(&file, file_text(taken.local_addr().unwrap().port())).unwrap();
    let admin = format!("0.0.0.0:{}", free_port());
    let mut up = TestCommand::new()
        .args(["up", file.to_str().unwrap(), "--admin", &admin])
        .topology(&file)
        .spawn();
    up.exited(LIMIT).await;
    let warning = format!("warning: admin server on {admin}, not loopback");
    assert!(up.stderr().contains(&warning), "{up}");
}
