//! A private Redis Cluster for `topo test --run` and the tests: three
//! masters and three replicas (`redis-server --cluster-enabled yes`) on free
//! loopback ports, joined by `redis-cli --cluster create`, ready once every
//! node reports `cluster_state:ok`. Each server is a child of ours (killed
//! with us, by pid); its `nodes.conf` lives in a directory of its own that
//! is removed when the cluster stops. `scripts/redis-cluster` does the same
//! by hand for the example.

use super::ports::free_port;
use super::server::{BrokerError, PrivateBroker};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// The program that joins the servers into a cluster.
pub const REDIS_CLI: &str = "redis-cli";
/// Masters and replicas: one replica per master, so any master may die.
const SERVERS: usize = 6;
/// How long the cluster may take to agree on `cluster_state:ok`.
const READY_LIMIT: Duration = Duration::from_secs(20);
/// A master silent this long is failed over (milliseconds): short, so that
/// failover tests are quick; Redis's default is 15 s.
pub const NODE_TIMEOUT_MS: u64 = 1000;
/// Longest reply read from a node (CLUSTER NODES of six nodes is ~1 KiB).
const MAX_REPLY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Server(#[from] BrokerError),
    #[error(
        "cannot create a private Redis Cluster: `{REDIS_CLI}` is not installed or not on PATH (install redis-tools)"
    )]
    CliNotInstalled,
    #[error("`{REDIS_CLI} --cluster create` failed: {0}")]
    Create(String),
    #[error("the private Redis Cluster did not reach cluster_state:ok within {READY_LIMIT:?}")]
    NotReady,
    #[error("no free loopback port pair (port and its cluster bus port +10000)")]
    NoPort,
    #[error("cannot move slot {slot} to the master on port {to}: {step} failed")]
    Move {
        slot: u16,
        to: u16,
        step: &'static str,
    },
}

/// Six running cluster nodes of ours.
pub struct PrivateCluster {
    nodes: Vec<PrivateBroker>,
    dir: PathBuf,
}

impl PrivateCluster {
    /// Starts the six servers, creates the cluster and waits until it is ok.
    pub async fn start() -> Result<PrivateCluster, ClusterError> {
        let dir = std::env::temp_dir().join(format!(
            "topo-cluster-{}-{}",
            std::process::id(),
            free_port().ok_or(ClusterError::NoPort)?
        ));
        std::fs::create_dir_all(&dir).map_err(BrokerError::Spawn)?;
        let mut cluster = PrivateCluster {
            nodes: Vec::new(),
            dir,
        };
        match cluster.launch().await {
            Ok(()) => Ok(cluster),
            Err(e) => {
                cluster.stop().await;
                Err(e)
            }
        }
    }

    async fn launch(&mut self) -> Result<(), ClusterError> {
        for _ in 0..SERVERS {
            let port = cluster_port().ok_or(ClusterError::NoPort)?;
            let args = cluster_args(&self.dir, port);
            self.nodes
                .push(PrivateBroker::start_with(port, &args).await?);
        }
        let mut create = tokio::process::Command::new(REDIS_CLI);
        create.arg("--cluster").arg("create");
        for port in self.ports() {
            create.arg(format!("127.0.0.1:{port}"));
        }
        create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = timeout(READY_LIMIT, create.output())
            .await
            .map_err(|_| ClusterError::Create("timed out".into()))?
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ClusterError::CliNotInstalled,
                _ => ClusterError::Create(e.to_string()),
            })?;
        if !output.status.success() {
            let text = String::from_utf8_lossy(&output.stdout);
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return Err(ClusterError::Create(format!("{} ({last})", output.status)));
        }
        self.wait_ok(&self.ports()).await
    }

    /// Waits until every node among `ports` reports `cluster_state:ok` and
    /// every replica's link to its master is up: a replica that has not yet
    /// synchronised cannot take over, and a failover test would wait forever.
    pub async fn wait_ok(&self, ports: &[u16]) -> Result<(), ClusterError> {
        let deadline = Instant::now() + READY_LIMIT;
        while Instant::now() < deadline {
            let mut all = true;
            for &port in ports {
                let info = command(port, &["CLUSTER", "INFO"]).await;
                all &= info.is_some_and(|i| i.contains("cluster_state:ok"));
                let replication = command(port, &["INFO", "replication"]).await;
                all &= replication.is_some_and(|r| {
                    r.contains("role:master") || r.contains("master_link_status:up")
                });
            }
            if all {
                return Ok(());
            }
            // No push tells us: the nodes gossip until they agree.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(ClusterError::NotReady)
    }

    /// Every node's port, masters first (as `--cluster create` assigned them).
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(PrivateBroker::pid).collect()
    }

    /// The port of the master serving `channel`'s slot now, asked of any
    /// live node among `alive`.
    pub async fn master_of(&self, channel: &str, alive: &[u16]) -> Option<u16> {
        for &port in alive {
            let Some(slot) = command(port, &["CLUSTER", "KEYSLOT", channel]).await else {
                continue;
            };
            let slot: u16 = slot.trim().parse().ok()?;
            let nodes = command(port, &["CLUSTER", "NODES"]).await?;
            return master_line(&nodes, slot);
        }
        None
    }

    /// The ports of the nodes that are masters now.
    pub async fn masters(&self) -> Vec<u16> {
        let mut masters = Vec::new();
        for port in self.ports() {
            let role = command(port, &["INFO", "replication"]).await;
            if role.is_some_and(|r| r.contains("role:master")) {
                masters.push(port);
            }
        }
        masters
    }

    /// Hands `slot` to the master on `to`. Pub/sub channels hold no keys, so
    /// nothing is migrated: IMPORTING on the target and MIGRATING on the
    /// owner, then NODE on the target first (which bumps its config epoch,
    /// so its claim wins in gossip), on the owner (which drops the slot's
    /// shard-channel subscribers with a `sunsubscribe` push) and on the
    /// other masters. Returns once every master names the target.
    pub async fn move_slot(&self, slot: u16, to: u16) -> Result<(), ClusterError> {
        let fail = |step| ClusterError::Move { slot, to, step };
        let slot_text = slot.to_string();
        let nodes = command(to, &["CLUSTER", "NODES"])
            .await
            .ok_or(fail("CLUSTER NODES"))?;
        let from = master_line(&nodes, slot).ok_or(fail("finding the owner"))?;
        let id_of = |port| async move { command(port, &["CLUSTER", "MYID"]).await };
        let to_id = id_of(to).await.ok_or(fail("CLUSTER MYID (target)"))?;
        let from_id = id_of(from).await.ok_or(fail("CLUSTER MYID (owner)"))?;
        let setslot = |port, state: &'static str, id: String| {
            let slot = slot_text.clone();
            async move {
                let args = ["CLUSTER", "SETSLOT", slot.as_str(), state, id.as_str()];
                command(port, &args).await.filter(|r| r == "OK")
            }
        };
        if from != to {
            setslot(to, "IMPORTING", from_id.clone())
                .await
                .ok_or(fail("SETSLOT IMPORTING"))?;
            setslot(from, "MIGRATING", to_id.clone())
                .await
                .ok_or(fail("SETSLOT MIGRATING"))?;
        }
        let masters = self.masters().await;
        let others = masters.iter().filter(|p| **p != to && **p != from);
        for port in [to, from].into_iter().chain(others.copied()) {
            setslot(port, "NODE", to_id.clone())
                .await
                .ok_or(fail("SETSLOT NODE"))?;
        }
        Ok(())
    }

    /// Kills the node on `port` (SIGKILL) and waits until it is gone.
    pub async fn kill(&mut self, port: u16) -> bool {
        let Some(i) = self.nodes.iter().position(|n| n.port == port) else {
            return false;
        };
        self.nodes.remove(i).stop().await;
        true
    }

    /// Stops every node and removes the nodes' directory.
    pub async fn stop(mut self) {
        let nodes = std::mem::take(&mut self.nodes);
        futures_util::future::join_all(nodes.into_iter().map(PrivateBroker::stop)).await;
        // Dropping `self` removes the directory.
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        // The servers are killed with their handles; only the files remain.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cluster_args(dir: &std::path::Path, port: u16) -> Vec<String> {
    vec![
        "--cluster-enabled".into(),
        "yes".into(),
        "--cluster-node-timeout".into(),
        NODE_TIMEOUT_MS.to_string(),
        // A replica takes over however long ago it last heard its master:
        // these clusters hold no data worth refusing a failover for.
        "--cluster-replica-validity-factor".into(),
        "0".into(),
        "--cluster-config-file".into(),
        format!("nodes-{port}.conf"),
        "--dir".into(),
        dir.display().to_string(),
    ]
}

/// A free port whose cluster bus port (+10000) is free as well.
fn cluster_port() -> Option<u16> {
    for _ in 0..100 {
        let port = free_port()?;
        let bus = port.checked_add(10_000)?;
        if std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return Some(port);
        }
    }
    None
}

/// In `CLUSTER NODES` output, the port of the live master whose slot ranges hold `slot`.
fn master_line(nodes: &str, slot: u16) -> Option<u16> {
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(address), Some(flags)) = (fields.get(1), fields.get(2)) else {
            continue;
        };
        if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
            continue;
        }
        let owns = fields.iter().skip(8).any(|range| {
            let (low, high) = range.split_once('-').unwrap_or((range, range));
            matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(l), Ok(h)) if (l..=h).contains(&slot))
        });
        if owns {
            let host_port = address.split('@').next()?;
            return host_port.rsplit_once(':')?.1.parse().ok();
        }
    }
    None
}

/// Sends one command to the node on `port`; its reply as text (a bulk
/// string's bytes, an integer's digits), `None` on any error or timeout.
pub async fn command(port: u16, args: &[&str]) -> Option<String> {
    let exchange = async {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let mut stream = BufReader::new(stream);
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.get_mut().write_all(request.as_bytes()).await.ok()?;
        let mut header = String::new();
        (&mut stream).take(1024).read_line(&mut header).await.ok()?;
        let header = header.trim_end();
        match header.as_bytes().first()? {
            b':' | b'+' => Some(header[1..].to_owned()),
            b'$' => {
                let len: usize = header[1..].parse().ok()?;
                if len > MAX_REPLY {
                    return None;
                }
                let mut body = vec![0; len + 2];
                stream.read_exact(&mut body).await.ok()?;
                body.truncate(len);
                String::from_utf8(body).ok()
            }
            _ => None,
        }
    };
    timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_master_of_a_slot() {
        let nodes = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7002@17002 master,fail - 0 0 3 connected 10923-16383
d4 127.0.0.1:7003@17003 master - 0 0 7 connected 10923-16383
e5 127.0.0.1:7004@17004 slave a1 0 0 1 connected
";
        assert_eq!(master_line(nodes, 0), Some(7000));
        assert_eq!(master_line(nodes, 5461), Some(7001));
        assert_eq!(master_line(nodes, 16383), Some(7003));
    }
}
