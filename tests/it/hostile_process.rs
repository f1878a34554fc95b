//! `topo up --process` and `topo plan` against unlucky starts and strange
//! peers (issue 11): "ready" only once every child is ready, a child that
//! cannot start fails start-up, a file named like an option reaches the
//! children as a path, children accept the admin page's origin, and a huge
//! admin reply does not exhaust `topo plan`.

use crate::chat::{LIMIT, http_get, upgrade_status};
use crate::util::{TestCommand, free_port};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn pair(a: u16, b: u16, pa: u16, pb: u16) -> String {
    format!(
        "nodes:\n  a: {{ http: {a}, zmq: {{ pub: {pa}, sub: [b] }} }}\n  \
         b: {{ http: {b}, zmq: {{ pub: {pb}, sub: [a] }} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_when_every_child_is_and_an_option_like_path_is_a_path() {
    let (a, b, pa, pb) = (free_port(), free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("-x.yaml"), pair(a, b, pa, pb)).unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let mut up = TestCommand::new()
        .args(["up", "--process", "--admin", &admin, "--", "-x.yaml"])
        .current_dir(dir.path())
        .topology("-x.yaml")
        .spawn();
    // The parent's table (the children's lines are prefixed `a | `).
    crate::util::wait_until("the parent's ready table", LIMIT * 2, || {
        assert!(up.running(), "topo up exited\n{up}");
        let text = up.stdout();
        let ready = text.lines().any(|l| l.starts_with("-x ready: 2 node(s)"));
        async move { if ready { Ok(()) } else { Err(text) } }
    })
    .await;
    // Ready means ready: both children answer at once.
    for port in [a, b] {
        let (status, body) = http_get(port, "/healthz").await;
        assert_eq!(status, 200, "{body}");
    }
    // The children let the admin page's send boxes in, and no other site.
    assert_eq!(upgrade_status(a, &format!("http://{admin}")).await, 101);
    assert_eq!(upgrade_status(a, "http://evil.example").await, 403);
    up.kill();
    // One table, the parent's (issue 18): a child prints only log lines.
    let text = up.stdout();
    let tables = text.lines().filter(|l| l.contains(" ready: ")).count();
    assert_eq!(tables, 1, "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_cannot_start_fails_start_up() {
    let (a, b, pa, pb) = (free_port(), free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(&file, pair(a, b, pa, pb)).unwrap();
    // b's HTTP port is taken.
    let _taken = std::net::TcpListener::bind(("127.0.0.1", b)).unwrap();
    let started = Instant::now();
    let mut up = TestCommand::new()
        .args(["up", "--process", "--no-admin"])
        .arg(&file)
        .topology(&file)
        .spawn();
    let status = up.exited(LIMIT * 3).await;
    let (stdout, stderr) = (up.stdout(), up.stderr());
    assert!(!status.success(), "{up}");
    // The children's own lines come prefixed (`a | `); the parent's not.
    assert!(
        !stdout.lines().any(|l| l.starts_with("t ready")),
        "the parent printed ready:\n{stdout}"
    );
    assert!(stderr.contains("node b"), "{stderr}");
    assert!(stderr.contains("did not start"), "{stderr}");
    eprintln!("failed start-up reported in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_caps_the_admin_reply() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(&file, format!("nodes:\n  a: {{ http: {} }}\n", free_port())).unwrap();
    // A fake admin server: a 200 whose body never ends.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 1024];
        let _ = stream.read(&mut head).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
            .await
            .unwrap();
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0u64;
        while stream.write_all(&chunk).await.is_ok() {
            sent += chunk.len() as u64;
            if sent > 600 << 20 {
                break;
            }
        }
        sent
    });
    let output = tokio::time::timeout(
        LIMIT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_topo"))
            .arg("plan")
            .arg(&file)
            .args(["--admin", &addr.to_string()])
            .output(),
    )
    .await
    .expect("topo plan gave up in time")
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("larger than 8 MiB"), "{stderr}");
    let sent = server.await.unwrap();
    assert!(sent < 64 << 20, "topo plan read {sent} bytes");
}
