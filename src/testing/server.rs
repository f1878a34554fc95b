//! One private `redis-server` for `topo test --run` and the tests: on a
//! free loopback port (or a given one, with extra arguments: a cluster
//! node), without persistence. A server never outlives `topo test`: it is stopped (SIGKILL, then
//! reaped) when the test ends, killed when its handle is dropped, and the
//! kernel kills it if we die (`PR_SET_PDEATHSIG`).

use super::ports::free_port;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// The program started for each private broker.
pub const REDIS_SERVER: &str = "redis-server";
/// A server that does not answer PING within this long is given up.
const READY_LIMIT: Duration = Duration::from_secs(5);
/// Another port is tried when the first is taken at the last moment.
const START_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "cannot start a private Redis broker: `{REDIS_SERVER}` is not installed or not on PATH \
         (install redis-server, or run with `--brokers as-is` to use the file's brokers)"
    )]
    NotInstalled,
    #[error("cannot start `{REDIS_SERVER}`: {0}")]
    Spawn(std::io::Error),
    #[error("`{REDIS_SERVER}` on port {port} exited at start ({status})")]
    Exited {
        port: u16,
        status: std::process::ExitStatus,
    },
    #[error("`{REDIS_SERVER}` on port {port} did not answer PING within {READY_LIMIT:?}")]
    NotReady { port: u16 },
    #[error("no free loopback port for a private broker")]
    NoPort,
}

/// One running `redis-server` of ours.
pub struct PrivateBroker {
    pub port: u16,
    child: tokio::process::Child,
}

impl PrivateBroker {
    /// Starts a server with at least `databases` databases (the file's
    /// highest `/db` + 1) and waits until it answers PING.
    pub async fn start(databases: u32) -> Result<PrivateBroker, BrokerError> {
        let mut last = BrokerError::NoPort;
        for _ in 0..START_ATTEMPTS {
            let port = free_port().ok_or(BrokerError::NoPort)?;
            let mut broker = PrivateBroker {
                port,
                child: spawn(port, databases.max(16), &[])?,
            };
            match broker.wait_ready().await {
                Ok(()) => return Ok(broker),
                // Taken between our check and its bind: try another port.
                Err(e @ BrokerError::Exited { .. }) => last = e,
                Err(e) => {
                    broker.stop().await;
                    return Err(e);
                }
            }
        }
        Err(last)
    }

    /// Starts a server on `port` with `extra` arguments (a cluster node's)
    /// and waits until it answers PING.
    pub async fn start_with(port: u16, extra: &[String]) -> Result<PrivateBroker, BrokerError> {
        let mut broker = PrivateBroker {
            port,
            child: spawn(port, 16, extra)?,
        };
        match broker.wait_ready().await {
            Ok(()) => Ok(broker),
            Err(e) => {
                broker.stop().await;
                Err(e)
            }
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn wait_ready(&mut self) -> Result<(), BrokerError> {
        let deadline = Instant::now() + READY_LIMIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(BrokerError::Exited {
                    port: self.port,
                    status,
                });
            }
            if ping(self.port).await {
                return Ok(());
            }
            // Polling is the readiness signal here: redis-server has no
            // other way to say it listens.
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        Err(BrokerError::NotReady { port: self.port })
    }

    /// Kills the server and waits until it is gone.
    pub async fn stop(mut self) {
        let _ = timeout(Duration::from_secs(2), self.child.kill()).await;
    }
}

async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.ok()?;
        (&reply == b"+PONG\r\n").then_some(())
    };
    matches!(
        timeout(Duration::from_millis(500), attempt).await,
        Ok(Some(()))
    )
}

fn spawn(
    port: u16,
    databases: u32,
    extra: &[String],
) -> Result<tokio::process::Child, BrokerError> {
    let mut cmd = tokio::process::Command::new(REDIS_SERVER);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--databases", &databases.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    crate::runtime::child::own(&mut cmd, None);
    cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BrokerError::NotInstalled,
        _ => BrokerError::Spawn(e),
    })
}
