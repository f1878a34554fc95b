//! Broker passwords are never printed: not by `validate`, `graph`, the logs
//! of `topo up` (RUST_LOG=debug), its start errors, nor `/healthz`; and Redis
//! AUTH works with a password and with an ACL user and password.

use crate::chat::{Client, LIMIT, http_get, port};
use crate::util::{TestCommand, free_port, wait_until};
use std::process::{Child, Command, Stdio};

const SECRETS: [&str; 3] = ["hunter2", "s3cret", "wrongpass"];

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} printed a password:\n{text}");
    }
}

/// A redis-server that requires a password, with an ACL user `alice`.
struct AuthRedis {
    port: u16,
    child: Child,
}

impl AuthRedis {
    fn start() -> AuthRedis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--requirepass", "hunter2"])
            // One argument per word: redis-server joins them into the config line.
            .args(["--user", "alice", "on", ">s3cret", "~*", "&*", "+@all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        crate::util::wait_until_blocking("redis-server listening", LIMIT, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).map(drop)
        });
        AuthRedis { port, child }
    }
}

impl Drop for AuthRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String) {
    let mut cmd = TestCommand::new();
    cmd.args(args);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd.run();
    (out.code(), out.all())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_stay_secret_everywhere_and_auth_works() {
    let redis = AuthRedis::start();
    let (a_http, b_http) = (port(), port());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.yaml");
    // An ACL user from the environment for `a`, the default user's password inline for `b`.
    std::fs::write(
        &file,
        format!(
            "brokers:\n  main: {{ url: \"${{REDIS_URL}}\" }}\nnodes:\n  a: {{ http: {a_http}, redis: {{ broker: main }} }}\n  b: {{ http: {b_http}, redis: {{ broker: \"redis://:hunter2@127.0.0.1:{}/2\" }} }}\n",
            redis.port
        ),
    )
    .unwrap();
    let file_arg = file.to_str().unwrap();
    let env = [(
        "REDIS_URL",
        format!("redis://alice:s3cret@127.0.0.1:{}", redis.port),
    )];

    for args in [
        vec!["validate", file_arg],
        vec!["validate", "--format", "json", file_arg],
        vec!["graph", file_arg],
        vec!["graph", "--format", "mermaid", file_arg],
        vec!["graph", "--format", "json", file_arg],
    ] {
        let (code, text) = run(&args, &env);
        assert_eq!(code, Some(0), "{args:?}: {text}");
        assert_no_secret(&format!("{args:?}"), &text);
        assert!(
            text.contains("alice:***@") || args[0] == "validate",
            "{text}"
        );
    }

    // A wrong password: the start error names the broker, not the secret.
    let wrong = [(
        "REDIS_URL",
        format!("redis://alice:wrongpass@127.0.0.1:{}", redis.port),
    )];
    let (code, text) = run(&["up", file_arg, "--no-admin"], &wrong);
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("alice:***@"), "{text}");
    assert!(text.contains("authentication failed"), "{text}");
    assert_no_secret("the start error", &text);

    // `topo up` with debug logs, both nodes authenticated.
    let mut up = TestCommand::new();
    up.args(["up", file_arg, "--no-admin"])
        .env("RUST_LOG", "debug");
    for (key, value) in &env {
        up.env(key, value);
    }
    let mut up = up.spawn();
    wait_until("topo up listens", LIMIT, || {
        tokio::net::TcpStream::connect(("127.0.0.1", b_http))
    })
    .await;
    let mut a = Client::connect(a_http).await;
    let mut b = Client::connect(b_http).await;
    a.send("authenticated").await;
    assert_eq!(b.recv().await, "authenticated");
    for http in [a_http, b_http] {
        let (status, body) = http_get(http, "/healthz").await;
        assert_eq!(status, 200);
        assert_no_secret("/healthz", &body);
        assert!(body.contains(":***@127.0.0.1"), "{body}");
    }
    up.signal(libc::SIGTERM);
    up.exited(LIMIT).await;
    let logs = up.stdout() + &up.stderr();
    assert!(logs.contains("node ready"), "{up}");
    assert_no_secret("the logs of topo up", &logs);
}

/// The Redis link of `node`, from a one-node topology with this broker URL.
fn redis_wiring(url: &str) -> topo::model::RedisWiring {
    let yaml = format!("nodes:\n  a:\n    redis: {{ broker: \"{url}\" }}\n");
    let checked = topo::check::check_bytes("t.yaml", "t", yaml.as_bytes(), &|_| None);
    let topology = checked.valid.expect("a valid topology").topology;
    let id = topology.node_id("a").unwrap();
    topo::model::Wiring::of(&topology, id).redis.unwrap()
}

/// Issue 14: the link keeps Redis's error typed, so a caller can tell a
/// refused password from a server that is not there; neither shows it.
#[tokio::test]
async fn a_redis_link_error_tells_a_wrong_password_from_no_server() {
    use topo::transport::redis::{LinkError, connect};
    let redis = AuthRedis::start();
    let wrong = redis_wiring(&format!("redis://:wrongpass@127.0.0.1:{}", redis.port));
    let error = match connect(&wrong).await {
        Err(error) => error,
        Ok(_) => panic!("a wrong password was accepted"),
    };
    assert_no_secret("the link error", &format!("{error} {error:?}"));
    match &error {
        LinkError::Redis(e) => {
            assert_eq!(e.kind(), redis::ErrorKind::AuthenticationFailed, "{e:?}")
        }
        other => panic!("not a Redis error: {other:?}"),
    }
    let nobody = redis_wiring(&format!("redis://:hunter2@127.0.0.1:{}", free_port()));
    match connect(&nobody).await {
        Err(LinkError::Redis(e)) => assert!(e.is_connection_refusal(), "{e:?}"),
        Err(other) => panic!("not a Redis error: {other:?}"),
        Ok(_) => panic!("connected to a closed port"),
    }
}
