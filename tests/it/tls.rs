//! `rediss://`: nodes talk to a private redis-server over TLS, trusting the
//! test's own certificate authority through the broker's `ca:`.

use crate::util::free_port;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use topo::check::check_file;
use topo::probe::{ProbeOptions, probe};
use topo::runtime::Running;

struct TlsRedis(Child);

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("`openssl` is not installed: apt-get install openssl");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A self-signed certificate authority: `NAME.pem` and `NAME.key` in `dir`.
pub fn authority(dir: &Path, name: &str) {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    let subject = format!("/CN=topo test CA {name}");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subject,
            "-keyout", &key, "-out", &pem,
        ],
    );
}

/// A CA (`ca.pem`), and a server certificate for 127.0.0.1 and localhost
/// signed by it (`server.pem`, `server.key`).
pub fn certificates(dir: &Path) {
    authority(dir, "ca");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

fn start_tls_redis(dir: &Path, port: u16) -> TlsRedis {
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--tls-cert-file",
            "server.pem",
            "--tls-key-file",
            "server.key",
        ])
        .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let server = TlsRedis(child);
    crate::util::wait_until_blocking(
        "redis-server with TLS listening",
        Duration::from_secs(10),
        || TcpStream::connect(("127.0.0.1", port)).map(drop),
    );
    server
}

fn topology_file(dir: &Path, port: u16, with_ca: bool) -> std::path::PathBuf {
    let ca = if with_ca { ", ca: ca.pem" } else { "" };
    let text = format!(
        "brokers:\n  secure: {{ url: \"rediss://127.0.0.1:{port}\"{ca} }}\nnodes:\n  a:\n    http: {}\n    redis: {{ broker: secure }}\n  b:\n    http: {}\n    redis: {{ broker: secure }}\n",
        free_port(),
        free_port()
    );
    let file = dir.join(if with_ca {
        "tls.yaml"
    } else {
        "tls-no-ca.yaml"
    });
    std::fs::write(&file, text).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_chat_through_a_tls_redis_trusting_the_brokers_ca() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let port = free_port();
    let _redis = start_tls_redis(dir.path(), port);

    let valid = check_file(&topology_file(dir.path(), port, true))
        .unwrap()
        .valid
        .expect("valid");
    let running = Running::start(&valid.topology)
        .await
        .expect("nodes start over TLS");
    let options = ProbeOptions {
        timeout: Duration::from_secs(3),
        settle: Duration::from_millis(200),
    };
    let report = probe(&valid, options).await;
    running.shutdown().await;
    assert!(report.agrees(), "{}", report.to_text());

    // Without the CA the server's certificate is unknown: the start fails
    // at once, naming the node and the broker.
    let untrusting = check_file(&topology_file(dir.path(), port, false))
        .unwrap()
        .valid
        .unwrap();
    let error = tokio::time::timeout(
        Duration::from_secs(10),
        Running::start(&untrusting.topology),
    )
    .await
    .expect("a TLS failure is reported, not awaited")
    .err()
    .expect("an unknown certificate authority is refused")
    .to_string();
    assert!(
        error.contains(&format!("cannot reach redis rediss://127.0.0.1:{port}")),
        "{error}"
    );
}
