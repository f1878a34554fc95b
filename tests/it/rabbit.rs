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
    dist: u16,
    name: String,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateRabbit {
    /// Starts it (without waiting: see `wait_ready`).
    pub fn start() -> PrivateRabbit {
        let dir = tempfile::tempdir().unwrap();
        // rabbitmq-server started as root runs as the user rabbitmq.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(dir.path().join("rabbitmq.conf"), "loopback_users = none\n").unwrap();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        let mut rabbit = PrivateRabbit {
            port: crate::util::free_port(),
            dist: crate::util::free_port(),
            name: unique("node").replace('.', "-"),
            dir,
            child: None,
        };
        rabbit.spawn();
        rabbit
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
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

    /// Waits until it accepts AMQP connections.
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
