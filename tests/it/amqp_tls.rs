//! `amqps://`: nodes talk to a private rabbitmq-server over TLS, trusting
//! the test's own certificate authority through the broker's `ca:`; another
//! authority, or a host name the certificate is not for, fails the start
//! naming the node and the broker, never the password; a missing or broken
//! `ca:` file is an error naming the file.

use crate::amqp_live::amqp_link;
use crate::chat::{Client, LIMIT, health, port};
use crate::rabbit::{PrivateRabbit, TLS_PASSWORD, unique};
use crate::tls::{authority, certificates};
use crate::util::TestCommand;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use topo::check::check_file;
use topo::runtime::Running;

/// A topology file in `dir` (where `ca` is found) with one node per port
/// on the broker `url`.
fn topology_file(dir: &Path, name: &str, url: &str, ca: &str, http: &[u16]) -> PathBuf {
    let exchange = unique("tls");
    let mut text = format!("brokers:\n  secure: {{ url: \"{url}\", ca: {ca} }}\nnodes:\n");
    for (i, port) in http.iter().enumerate() {
        text.push_str(&format!(
            "  n{i}: {{ http: {port}, amqp: {{ broker: secure, exchange: {exchange} }} }}\n"
        ));
    }
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

fn topology(file: &Path) -> topo::model::Topology {
    let checked = check_file(file).unwrap();
    match checked.valid {
        Some(valid) => valid.topology,
        None => panic!("{}", checked.render()),
    }
}

/// Starts `file`'s nodes in this process; the error they fail with.
async fn start_error(file: &Path) -> String {
    let started = tokio::time::timeout(LIMIT, Running::start(&topology(file)))
        .await
        .expect("a TLS failure is reported, not awaited");
    match started {
        Ok(running) => {
            running.shutdown().await;
            panic!("{} started", file.display())
        }
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_chat_over_amqps_trusting_the_brokers_ca_and_refuse_any_other_server() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    authority(dir.path(), "other");
    let started = Instant::now();
    let rabbit = PrivateRabbit::start_tls(dir.path());
    rabbit.wait_ready().await;
    eprintln!("TLS rabbitmq-server ready in {:?}", started.elapsed());
    let tls_port = rabbit.tls_port.unwrap();
    let redacted = format!("amqps://topo:***@127.0.0.1:{tls_port}");

    // (a) Trusting the CA that signed the server's certificate.
    let http = [port(), port()];
    let url = rabbit.tls_url("127.0.0.1");
    let file = topology_file(dir.path(), "tls.yaml", &url, "ca.pem", &http);
    // As `topo test --run` does: a per-run exchange, deleted after, over TLS too.
    let mut isolated = topology(&file);
    let declared = topo::transport::amqp::isolate(&mut isolated);
    let exchange = isolated.nodes[0].amqp.as_ref().unwrap().exchange.clone();
    let running = tokio::time::timeout(LIMIT, Running::start(&isolated))
        .await
        .expect("start timed out")
        .expect("nodes start over TLS");
    for p in http {
        assert_eq!(amqp_link(p).await.0, "up");
        let h = health(p).await;
        assert_eq!(h["links"][0]["broker"], redacted.as_str(), "{h}");
    }
    let (mut a, mut b) = (
        Client::connect(http[0]).await,
        Client::connect(http[1]).await,
    );
    a.send("over tls").await;
    assert_eq!(a.recv().await, "over tls");
    assert_eq!(b.recv().await, "over tls");
    b.send("and back").await;
    assert_eq!(b.recv().await, "and back");
    assert_eq!(a.recv().await, "and back");
    running.shutdown().await;
    for d in declared {
        d.delete().await;
    }
    // Looked up on the plain listener: a passive declare of a gone exchange fails.
    let plain = crate::rabbit::connect_to(&rabbit.url()).await;
    let channel = plain.create_channel().await.unwrap();
    let passive = lapin::options::ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let kind = lapin::ExchangeKind::Fanout;
    let table = lapin::types::FieldTable::default();
    let looked = channel.exchange_declare(&exchange, kind, passive, table);
    assert!(looked.await.is_err(), "{exchange} was not deleted");

    // (b) Another CA: `topo up` fails at once naming the node and the
    // broker, and prints no password, even at debug level.
    let file = topology_file(dir.path(), "other-ca.yaml", &url, "other.pem", &[port()]);
    let failed = Instant::now();
    let ran = tokio::task::spawn_blocking(move || {
        TestCommand::new()
            .args(["up", "--no-admin"])
            .arg(&file)
            .env("RUST_LOG", "debug")
            .topology(&file)
            .run()
    })
    .await
    .unwrap();
    let took = failed.elapsed();
    let (stdout, stderr) = (ran.stdout(), ran.stderr());
    assert_ne!(ran.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("node n0: cannot set up amqp {redacted}")),
        "{stderr}"
    );
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    for output in [&stdout, &stderr] {
        assert!(
            !output.contains(TLS_PASSWORD),
            "password printed:\n{output}"
        );
    }
    assert!(took < Duration::from_secs(10), "failed after {took:?}");
    let line = stderr.lines().find(|l| l.contains("cannot set up amqp"));
    eprintln!(
        "another CA, refused in {took:?}: {}",
        line.unwrap_or_default()
    );

    // The host name is checked: the certificate is for 127.0.0.1 and
    // localhost, and 127.0.0.2 reaches the same listener.
    let elsewhere = rabbit.tls_url("127.0.0.2");
    let file = topology_file(dir.path(), "host.yaml", &elsewhere, "ca.pem", &[port()]);
    let error = start_error(&file).await;
    assert!(
        error.contains(&format!(
            "node n0: cannot set up amqp amqps://topo:***@127.0.0.2:{tls_port}"
        )),
        "{error}"
    );
    assert!(
        error.contains("certificate not valid for name \"127.0.0.2\""),
        "{error}"
    );
    assert!(!error.contains(TLS_PASSWORD), "{error}");
}

/// A `ca:` that is missing or holds no certificate fails validation, naming
/// the file; one broken after validation fails the start, naming it too
/// (before any connection, so no broker is needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_broken_amqps_ca_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = "amqps://topo:pw@127.0.0.1:1/%2f";
    std::fs::write(dir.path().join("garbage.pem"), "not a certificate\n").unwrap();
    for (ca, expected) in [
        ("missing.pem", "missing.pem: cannot read"),
        ("garbage.pem", "`garbage.pem` holds no PEM certificate"),
    ] {
        let file = topology_file(dir.path(), "t.yaml", url, ca, &[port()]);
        let checked = check_file(&file).unwrap();
        assert!(checked.valid.is_none(), "{ca} accepted");
        let report = checked.render();
        assert!(report.contains(expected), "{report}");
    }

    // Each passes validation (it has a PEM marker) and fails the start.
    let broken = [
        (
            "not-base64.pem",
            "-----BEGIN CERTIFICATE-----\n*** not base64 ***\n-----END CERTIFICATE-----\n",
            "not a PEM certificate bundle",
        ),
        (
            "not-x509.pem",
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
            "no usable certificate authority in it (1 unreadable)",
        ),
        (
            "only-a-key.pem",
            "-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END PRIVATE KEY-----\n",
            "no usable certificate authority in it (0 unreadable)",
        ),
    ];
    for (name, text, why) in broken {
        std::fs::write(dir.path().join(name), text).unwrap();
        let file = topology_file(dir.path(), "t.yaml", url, name, &[port()]);
        let error = start_error(&file).await;
        let path = dir.path().join(name).display().to_string();
        assert!(error.starts_with("node n0: cannot set up amqp"), "{error}");
        assert!(error.contains(&format!("{path}: {why}")), "{error}");
        assert!(!error.contains(":pw@"), "{error}");
    }

    // Removed after validation.
    std::fs::write(dir.path().join("gone.pem"), broken[0].1).unwrap();
    let file = topology_file(dir.path(), "t.yaml", url, "gone.pem", &[port()]);
    let topology = topology(&file);
    std::fs::remove_file(dir.path().join("gone.pem")).unwrap();
    let error = Running::start(&topology).await.err().expect("refused");
    let path = dir.path().join("gone.pem").display().to_string();
    assert!(
        error.to_string().contains(&format!("{path}: cannot read")),
        "{error}"
    );
}
