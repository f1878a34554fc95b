//! The shared RabbitMQ (127.0.0.1:5672, guest/guest) for AMQP tests: a
//! connection that fails with a clear message when the server is not
//! there, and names unique to one test so tests run in parallel on it.

use lapin::{Connection, ConnectionProperties};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A name no other test (or run) uses: `prefix-pid-n`.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "topo-test-{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn properties() -> ConnectionProperties {
    ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current())
}

/// Connects to the shared server, or fails the test saying how to start it.
pub async fn connect() -> Connection {
    connect_to(URL).await
}

pub async fn connect_to(url: &str) -> Connection {
    match tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(url, properties()),
    )
    .await
    {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => panic!(
            "RabbitMQ is not reachable at {url} ({e}): these tests need rabbitmq-server on 127.0.0.1:5672 \
             with the user guest/guest (install the Debian package rabbitmq-server; start it with \
             `rabbitmq-server -detached`)"
        ),
        Err(_) => panic!("RabbitMQ at {url} did not answer within 10 s"),
    }
}

/// A RabbitMQ of the test's own, on free ports, for a test that stops the
/// broker; its data directory survives a restart (durable queues too).
pub struct PrivateRabbit {
    pub port: u16,
    /// The TLS listener's port (`start_tls`).
    pub tls_port: Option<u16>,
    dist: u16,
    name: String,
    /// The user RabbitMQ creates at its first start, and its password.
    user: &'static str,
    password: &'static str,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

/// The user of a TLS RabbitMQ: a password no other text in a test holds,
/// so that finding it in an output is a leak.
pub const TLS_USER: &str = "topo";
pub const TLS_PASSWORD: &str = "amqps-s3cret-pw";

impl PrivateRabbit {
    /// Starts it (without waiting: see `wait_ready`).
    pub fn start() -> PrivateRabbit {
        PrivateRabbit::with_config(None, "guest", "guest", "")
    }

    /// Starts it with a TLS listener too, serving `server.pem` and
    /// `server.key` of `certs` (see `tls::certificates`), with the user
    /// [`TLS_USER`]; clients need no certificate.
    pub fn start_tls(certs: &std::path::Path) -> PrivateRabbit {
        // rabbitmq-server started as root runs as the user rabbitmq.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(certs, std::fs::Permissions::from_mode(0o755)).unwrap();
        for file in ["ca.pem", "server.pem", "server.key"] {
            let path = certs.join(file);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let port = crate::util::free_port();
        let path = |file: &str| certs.join(file).display().to_string();
        let config = format!(
            "listeners.ssl.default = {port}\n\
             ssl_options.cacertfile = {}\n\
             ssl_options.certfile = {}\n\
             ssl_options.keyfile = {}\n\
             ssl_options.verify = verify_none\n\
             ssl_options.fail_if_no_peer_cert = false\n\
             default_user = {TLS_USER}\n\
             default_pass = {TLS_PASSWORD}\n",
            path("ca.pem"),
            path("server.pem"),
            path("server.key"),
        );
        PrivateRabbit::with_config(Some(port), TLS_USER, TLS_PASSWORD, &config)
    }

    fn with_config(
        tls_port: Option<u16>,
        user: &'static str,
        password: &'static str,
        config: &str,
    ) -> PrivateRabbit {
        let dir = tempfile::tempdir().unwrap();
        // rabbitmq-server started as root runs as the user rabbitmq.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let config = format!("loopback_users = none\n{config}");
        std::fs::write(dir.path().join("rabbitmq.conf"), config).unwrap();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        let mut rabbit = PrivateRabbit {
            port: crate::util::free_port(),
            tls_port,
            dist: crate::util::free_port(),
            name: unique("node").replace('.', "-"),
            user,
            password,
            dir,
            child: None,
        };
        rabbit.spawn();
        rabbit
    }

    pub fn url(&self) -> String {
        let (user, password) = (self.user, self.password);
        format!("amqp://{user}:{password}@127.0.0.1:{}/%2f", self.port)
    }

    /// The TLS listener's URL, to `host` (`start_tls`).
    pub fn tls_url(&self, host: &str) -> String {
        let port = self.tls_port.expect("started with start_tls");
        let (user, password) = (self.user, self.password);
        format!("amqps://{user}:{password}@{host}:{port}/%2f")
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let child = std::process::Command::new("rabbitmq-server")
            .env("HOME", d)
            .env("RABBITMQ_NODENAME", format!("{}@localhost", self.name))
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_FEATURE_FLAGS_FILE", d.join("feature_flags"))
            .env("RABBITMQ_PID_FILE", d.join("pid"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run rabbitmq-server ({e}): install the Debian package rabbitmq-server"
                )
            });
        self.child = Some(child);
    }

    /// Waits until it accepts AMQP connections (and TLS connections on
    /// its TLS listener: RabbitMQ opens it with the plain one, so one
    /// accepted TCP connection there means it is up).
    pub async fn wait_ready(&self) {
        let url = self.url();
        crate::util::wait_until(
            "the private rabbitmq-server",
            Duration::from_secs(40),
            || async {
                Connection::connect(&url, properties())
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        )
        .await;
        if let Some(port) = self.tls_port {
            crate::util::wait_until("its TLS listener", Duration::from_secs(10), || async {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .map(drop)
            })
            .await;
        }
    }

    /// Kills the broker (its Erlang VM, by the pid it wrote, and the script).
    pub fn kill(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("pid")) {
            let _ = std::process::Command::new("kill")
                .args(["-9", pid.trim()])
                .status();
            let _ = std::fs::remove_file(self.dir.path().join("pid"));
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        self.kill();
    }
}
