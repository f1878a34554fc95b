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
