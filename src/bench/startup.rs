//! `topo bench --startup CMD`: launches CMD (through `sh -c 'exec CMD'`, so
//! the pid is the server's), polls until every target accepts a WebSocket
//! client and, for a topology file, every node's `/healthz` says all its
//! links are up; then notes the process's memory and threads and stops it
//! (SIGTERM). Repeated; the median is the figure.

use super::plan::Target;
use super::procstat;
use crate::health::{Health, LinkState};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Give up on one launch after this long.
const LIMIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(1);
/// Memory is read this long after ready, once start-up allocations settled.
const SETTLE: Duration = Duration::from_millis(500);

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Startup {
    pub command: String,
    pub runs_ms: Vec<f64>,
    pub median_ms: f64,
    /// Resident memory and threads of the process, idle, after the last run.
    pub rss_kib: Option<u64>,
    pub threads: Option<u64>,
    /// Open file descriptors of the process at the same moment (sockets:
    /// listeners, broker connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fds: Option<u64>,
    /// Added by `bench/compare.sh`; absent from what topo prints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Why `--startup` measured nothing.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot run {command:?}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command:?}: {source}")]
    NotReady { command: String, source: NotReady },
}

/// Launches `command` `repeat` times and times each launch until ready.
pub fn measure(
    command: &str,
    targets: &[Target],
    links: bool,
    repeat: usize,
) -> Result<Startup, StartupError> {
    let runtime = crate::command::thread_runtime();
    let mut runs = Vec::new();
    let (mut rss, mut threads, mut fds) = (None, None, None);
    for _ in 0..repeat.max(1) {
        let mut child = spawn(command).map_err(|source| StartupError::Spawn {
            command: command.to_owned(),
            source,
        })?;
        let started = Instant::now();
        let ready = runtime.block_on(wait_ready(targets, links, &mut child));
        let took = started.elapsed();
        if ready.is_ok() {
            std::thread::sleep(SETTLE);
            rss = procstat::rss_kib(Some(child.id()));
            threads = procstat::threads(Some(child.id()));
            fds = procstat::fds(child.id());
        }
        stop(&mut child);
        ready.map_err(|source| StartupError::NotReady {
            command: command.to_owned(),
            source,
        })?;
        runs.push(took.as_secs_f64() * 1e3);
    }
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(Startup {
        command: command.to_owned(),
        median_ms: sorted[sorted.len() / 2],
        runs_ms: runs,
        rss_kib: rss,
        threads,
        fds,
        label: None,
    })
}

impl Startup {
    /// `--format json`: one line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("serialises")
    }

    /// The text report, ending in a newline.
    pub fn to_text(&self) -> String {
        let runs: Vec<String> = self.runs_ms.iter().map(|r| format!("{r:.1}")).collect();
        format!(
            "startup: {}\n  launch → ready  median {:.1} ms  (runs: {} ms)\n  idle process   rss {}  threads {}  fds {}\n",
            self.command,
            self.median_ms,
            runs.join(", "),
            self.rss_kib
                .map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
            self.threads.map_or("n/a".into(), |t| t.to_string()),
            self.fds.map_or("n/a".into(), |t| t.to_string()),
        )
    }
}

fn spawn(command: &str) -> std::io::Result<Child> {
    Command::new("sh")
        .arg("-c")
        .arg(format!("exec {command}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// SIGTERM, then SIGKILL if it has not exited within 3 s.
fn stop(child: &mut Child) {
    // SAFETY: a signal to our own child, whose pid we hold.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Why a launched command never became ready.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("exited before ready ({0})")]
    Exited(std::process::ExitStatus),
    #[error("{url} not ready after {limit:?}")]
    TimedOut { url: String, limit: Duration },
}

async fn wait_ready(targets: &[Target], links: bool, child: &mut Child) -> Result<(), NotReady> {
    let deadline = Instant::now() + LIMIT;
    for target in targets {
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(NotReady::Exited(status));
            }
            if Instant::now() > deadline {
                return Err(NotReady::TimedOut {
                    url: target.url.clone(),
                    limit: LIMIT,
                });
            }
            if ready(target, links).await {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}

async fn ready(target: &Target, links: bool) -> bool {
    let attempt = async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&target.url).await.ok()?;
        let _ = ws.close(None).await;
        if !links {
            return Some(true);
        }
        let authority = target
            .url
            .trim_start_matches("ws://")
            .split('/')
            .next()?
            .to_owned();
        let health = crate::http_get::get(
            authority.as_str(),
            "/healthz",
            Duration::from_secs(1),
            crate::admin::HEALTH_MAX_BYTES,
        )
        .await
        .ok()?;
        let health: Health = serde_json::from_str(&health).ok()?;
        Some(health.links.iter().all(|l| l.state == LinkState::Up))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(true))
    )
}
