//! Private NATS servers: one `nats-server` per subject space of a file for
//! `topo test --run` (a cluster answers as one space, so one server stands
//! for it), and whole clusters of several routed servers for the tests and
//! measurements that kill one. Each server is on free loopback ports,
//! killed when dropped, and the kernel kills it if we die.

use super::ports::free_port;
use crate::model::{NatsAuth, ServerKey, Topology};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// The program started for each private NATS server.
pub const NATS_SERVER: &str = "nats-server";
/// A server (or a cluster's routes) not ready within this long is given up.
const READY_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NatsServerError {
    #[error(
        "cannot start a private NATS server: `{NATS_SERVER}` is not installed or not on PATH \
         (install nats-server, or run with `--brokers as-is` to use the file's brokers)"
    )]
    NotInstalled,
    #[error("cannot start `{NATS_SERVER}`: {0}")]
    Spawn(std::io::Error),
    #[error("`{NATS_SERVER}` on port {port} exited at start ({status})")]
    Exited {
        port: u16,
        status: std::process::ExitStatus,
    },
    #[error("`{NATS_SERVER}` on port {port} was not ready within {READY_LIMIT:?}")]
    NotReady { port: u16 },
    #[error("no free loopback port for a private NATS server")]
    NoPort,
}

/// One running `nats-server` of ours.
pub struct NatsServer {
    /// Where clients connect.
    pub port: u16,
    /// The cluster (route) port; 0 for a lone server.
    pub cluster_port: u16,
    /// The monitoring port (`/routez`, `/varz`).
    pub monitor_port: u16,
    child: Option<tokio::process::Child>,
}

impl NatsServer {
    /// A lone server, ready when it greets a client.
    pub async fn start() -> Result<NatsServer, NatsServerError> {
        let port = free_port().ok_or(NatsServerError::NoPort)?;
        let monitor_port = free_port().ok_or(NatsServerError::NoPort)?;
        let mut server = NatsServer {
            port,
            cluster_port: 0,
            monitor_port,
            child: Some(spawn(port, monitor_port, None)?),
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    async fn wait_ready(&mut self) -> Result<(), NatsServerError> {
        let deadline = Instant::now() + READY_LIMIT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(NatsServerError::Exited {
                    port: self.port,
                    status,
                });
            }
            if greets(self.port).await {
                return Ok(());
            }
            // nats-server says it listens only by accepting: poll it.
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        Err(NatsServerError::NotReady { port: self.port })
    }

    /// Starts a lone server again on its ports (after `kill`), with the
    /// configuration file `config` if any, ready when it greets a client.
    pub async fn restart(&mut self, config: Option<&Path>) -> Result<(), NatsServerError> {
        self.kill().await;
        let mut child = command(self.port, self.monitor_port, None);
        if let Some(config) = config {
            child.arg("-c").arg(config);
        }
        self.child = Some(spawn_command(child)?);
        self.wait_ready().await
    }

    /// Makes the server read its configuration file again (SIGHUP).
    pub fn reload(&self) -> bool {
        self.pid()
            .and_then(|pid| i32::try_from(pid).ok())
            // SAFETY: a signal to our own child, by pid.
            .is_some_and(|pid| unsafe { libc::kill(pid, libc::SIGHUP) } == 0)
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = timeout(Duration::from_secs(2), child.kill()).await;
        }
    }
}

/// True when a server on `port` sends its `INFO` greeting.
async fn greets(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let mut hello = [0u8; 4];
        stream.read_exact(&mut hello).await.ok()?;
        (&hello == b"INFO").then_some(())
    };
    matches!(
        timeout(Duration::from_millis(500), attempt).await,
        Ok(Some(()))
    )
}

fn spawn(
    port: u16,
    monitor: u16,
    cluster: Option<(u16, &[u16])>,
) -> Result<tokio::process::Child, NatsServerError> {
    spawn_command(command(port, monitor, cluster))
}

fn command(port: u16, monitor: u16, cluster: Option<(u16, &[u16])>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(NATS_SERVER);
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(["-m", &monitor.to_string()]);
    if let Some((cluster_port, peers)) = cluster {
        let routes: Vec<String> = peers
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect();
        cmd.args(["--cluster_name", "topo"])
            .args(["--cluster", &format!("nats://127.0.0.1:{cluster_port}")])
            .args(["--routes", &routes.join(",")]);
    }
    cmd
}

fn spawn_command(
    mut cmd: tokio::process::Command,
) -> Result<tokio::process::Child, NatsServerError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    crate::runtime::child::own(&mut cmd, None);
    cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => NatsServerError::NotInstalled,
        _ => NatsServerError::Spawn(e),
    })
}

/// Several servers joined by routes, every one routed to every other.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` servers and waits until each has a route to every other
    /// (the monitoring port's `/routez` counts them).
    pub async fn start(n: usize) -> Result<NatsCluster, NatsServerError> {
        let mut ports = Vec::with_capacity(n);
        for _ in 0..n {
            let client = free_port().ok_or(NatsServerError::NoPort)?;
            let cluster = free_port().ok_or(NatsServerError::NoPort)?;
            let monitor = free_port().ok_or(NatsServerError::NoPort)?;
            ports.push((client, cluster, monitor));
        }
        let cluster_ports: Vec<u16> = ports.iter().map(|p| p.1).collect();
        let mut servers = Vec::with_capacity(n);
        for &(port, cluster_port, monitor_port) in &ports {
            let peers: Vec<u16> = cluster_ports
                .iter()
                .copied()
                .filter(|p| *p != cluster_port)
                .collect();
            servers.push(NatsServer {
                port,
                cluster_port,
                monitor_port,
                child: Some(spawn(port, monitor_port, Some((cluster_port, &peers)))?),
            });
        }
        let mut cluster = NatsCluster { servers };
        for server in &mut cluster.servers {
            server.wait_ready().await?;
        }
        cluster.wait_routes(n - 1).await?;
        Ok(cluster)
    }

    /// Every server's client URL, comma-separated: a broker's `url:`.
    pub fn url(&self) -> String {
        self.servers
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts server `i` again on its ports (after `kill`) and waits until
    /// the whole cluster is routed again.
    pub async fn restart(&mut self, i: usize) -> Result<(), NatsServerError> {
        let peers: Vec<u16> = (0..self.servers.len())
            .filter(|j| *j != i)
            .map(|j| self.servers[j].cluster_port)
            .collect();
        let server = &mut self.servers[i];
        server.kill().await;
        let cluster = Some((server.cluster_port, peers.as_slice()));
        server.child = Some(spawn(server.port, server.monitor_port, cluster)?);
        server.wait_ready().await?;
        self.wait_routes(self.servers.len() - 1).await
    }

    /// Waits until every running server reports at least `routes` routes.
    pub async fn wait_routes(&self, routes: usize) -> Result<(), NatsServerError> {
        let deadline = Instant::now() + READY_LIMIT;
        for server in self.servers.iter().filter(|s| s.is_running()) {
            loop {
                if route_count(server.monitor_port).await >= Some(routes) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(NatsServerError::NotReady { port: server.port });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }
}

/// `num_routes` of a server's `/routez`.
pub async fn route_count(monitor_port: u16) -> Option<usize> {
    let addr = format!("127.0.0.1:{monitor_port}");
    let body = crate::http_get::get(addr, "/routez", Duration::from_secs(1), 1 << 20)
        .await
        .ok()?;
    let value: serde_json::Value = serde_json::from_str(&body).ok()?;
    value["num_routes"].as_u64().map(|n| n as usize)
}

/// The private servers of one topology for `topo test --run`.
#[derive(Default)]
pub struct PrivateNats(Vec<NatsServer>);

impl PrivateNats {
    /// Starts one server per subject space of the file and points every
    /// NATS broker at it: plain TCP, no credentials.
    pub async fn start_for(topology: &mut Topology) -> Result<PrivateNats, NatsServerError> {
        let spaces = crate::graph::build::nats_spaces(topology);
        let mut started = PrivateNats::default();
        let mut ports: Vec<(usize, u16)> = Vec::new();
        for (i, broker) in topology.nats_brokers.iter_mut().enumerate() {
            let port = match ports.iter().find(|(s, _)| *s == spaces[i]) {
                Some(&(_, port)) => port,
                None => match NatsServer::start().await {
                    Ok(server) => {
                        ports.push((spaces[i], server.port));
                        let port = server.port;
                        started.0.push(server);
                        port
                    }
                    Err(e) => {
                        started.stop().await;
                        return Err(e);
                    }
                },
            };
            let url = &mut broker.url;
            url.servers = vec![ServerKey {
                host: "127.0.0.1".into(),
                port,
            }];
            url.tls = false;
            url.ca = None;
            url.auth = NatsAuth::None;
        }
        Ok(started)
    }

    pub fn pids(&self) -> Vec<u32> {
        self.0.iter().filter_map(NatsServer::pid).collect()
    }

    pub async fn stop(self) {
        for mut server in self.0 {
            server.kill().await;
        }
    }
}
