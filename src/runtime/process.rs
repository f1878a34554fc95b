//! `topo up --process`: one child process per node, each running
//! `topo node FILE NAME` (this same binary), supervised: each line of its
//! output goes to the caller's [`ChildOutput`] with the node's name (the
//! binary prefixes and prints it), restarts with exponential backoff, a
//! crash loop marks the node failed, stop = SIGTERM then SIGKILL. Children
//! never outlive us: each is its own process group and gets SIGKILL from the
//! kernel when we die (`PR_SET_PDEATHSIG`), even by SIGKILL.
//! It applies diffs by restarting only the children of changed nodes.
//! Start-up waits for every child to say it is ready through a pipe of its
//! own ([`READY_FD`]), not by reading its logs.

use super::controller::Failure;
use crate::diff::Diff;
use crate::model::Wiring;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The environment variable naming the descriptor a child writes `ready`
/// to once its node runs (then closes it; exiting first means it failed).
pub const READY_FD: &str = "TOPO_READY_FD";
/// Set (non-empty, not `0`) for children whose logs should be coloured:
/// their stderr is a pipe the parent copies to its own terminal.
pub const FORCE_COLOUR: &str = "CLICOLOR_FORCE";
/// How long start-up waits for every child to be ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A child that did not become ready at start-up.
#[derive(Debug, thiserror::Error)]
#[error("node {node}: {reason}")]
pub struct NotReady {
    pub node: String,
    pub reason: WhyNotReady,
}

/// Why a child did not say `ready` at start-up.
#[derive(Debug, thiserror::Error)]
pub enum WhyNotReady {
    #[error("cannot start `topo node`: {0}")]
    Spawn(std::io::Error),
    #[error("exited before it was ready (its errors are above)")]
    Exited,
    #[error("readiness pipe: {0}")]
    Pipe(std::io::Error),
    #[error("its supervisor ended")]
    SupervisorEnded,
    #[error("not ready within {0:?}")]
    TimedOut(Duration),
}

/// A child gets this long to stop after SIGTERM before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(3);
/// This many exits within [`CRASH_WINDOW`] mark the node failed.
pub const CRASH_LIMIT: usize = 5;
pub const CRASH_WINDOW: Duration = Duration::from_secs(30);
/// First restart delay; doubles per exit (plus jitter, as for the links),
/// capped.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Which of a child's streams a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildStream {
    Stdout,
    Stderr,
}

/// One line a child wrote (without its newline), for the caller to show.
#[derive(Clone, Copy, Debug)]
pub struct ChildLine<'a> {
    pub node: &'a str,
    /// The width of the name column, so that the lines of every node line
    /// up: the longest node name at start.
    pub name_width: usize,
    pub stream: ChildStream,
    pub text: &'a str,
}

/// Where the children's lines go; called from the tasks that read them.
pub type ChildOutput = Arc<dyn Fn(ChildLine<'_>) + Send + Sync>;

/// How the children are started and where their output goes.
pub struct ChildSettings {
    /// `topo` itself, normally `current_exe()`.
    pub exe: PathBuf,
    /// Children colour their logs (the caller's terminal shows them).
    pub colour: bool,
    pub output: ChildOutput,
    /// The admin server whose page may open WebSockets on the children.
    pub admin: Option<std::net::SocketAddr>,
}

pub struct Supervisor {
    exe: PathBuf,
    file: PathBuf,
    colour: bool,
    output: ChildOutput,
    width: usize,
    /// The admin server whose page may open WebSockets on the children.
    admin: Option<std::net::SocketAddr>,
    children: Vec<Child>,
    tracker: TaskTracker,
    /// Each first start's readiness, taken by [`Supervisor::ready`].
    starting: Vec<(String, oneshot::Receiver<Result<(), WhyNotReady>>)>,
}

struct Child {
    wiring: Wiring,
    stop: CancellationToken,
    /// Cancelled when the supervising task ends (its process is gone).
    done: CancellationToken,
}

impl Supervisor {
    /// Starts one child per wiring.
    pub fn start(
        settings: ChildSettings,
        file: &Path,
        wirings: &[Wiring],
        generation: u64,
    ) -> Supervisor {
        let width = wirings.iter().map(|w| w.name.len()).max().unwrap_or(4);
        let mut s = Supervisor {
            exe: settings.exe,
            file: file.to_path_buf(),
            colour: settings.colour,
            output: settings.output,
            width,
            admin: settings.admin,
            children: Vec::new(),
            tracker: TaskTracker::new(),
            starting: Vec::new(),
        };
        for w in wirings {
            s.spawn(w, generation);
        }
        s
    }

    /// Waits until every child started so far said it is ready (within
    /// [`READY_TIMEOUT`]); the children that did not, with why.
    pub async fn ready(&mut self) -> Result<(), Vec<NotReady>> {
        let waits = std::mem::take(&mut self.starting)
            .into_iter()
            .map(|(node, rx)| async move {
                let reason = match tokio::time::timeout(READY_TIMEOUT, rx).await {
                    Ok(Ok(Ok(()))) => return None,
                    Ok(Ok(Err(reason))) => reason,
                    Ok(Err(_)) => WhyNotReady::SupervisorEnded,
                    Err(_) => WhyNotReady::TimedOut(READY_TIMEOUT),
                };
                Some(NotReady { node, reason })
            });
        let failed: Vec<NotReady> = futures_util::future::join_all(waits)
            .await
            .into_iter()
            .flatten()
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed)
        }
    }

    fn spawn(&mut self, wiring: &Wiring, generation: u64) {
        let stop = CancellationToken::new();
        let done = CancellationToken::new();
        let (ready_tx, ready_rx) = oneshot::channel();
        self.starting.push((wiring.name.clone(), ready_rx));
        let child = Spec {
            exe: self.exe.clone(),
            file: self.file.clone(),
            name: wiring.name.clone(),
            generation,
            width: self.width,
            colour: self.colour,
            output: self.output.clone(),
            admin: self.admin,
        };
        let span = tracing::info_span!("node", node = %wiring.name);
        self.tracker.spawn(tracing::Instrument::instrument(
            supervise(
                child,
                ready_tx,
                stop.clone(),
                done.clone().drop_guard(),
                self.tracker.clone(),
            ),
            span,
        ));
        self.children.push(Child {
            wiring: wiring.clone(),
            stop,
            done,
        });
    }

    /// What each child was started with.
    pub fn wirings(&self) -> Vec<Wiring> {
        self.children.iter().map(|c| c.wiring.clone()).collect()
    }

    /// Stops removed and changed nodes' children, starts added and changed
    /// ones (they read the file again). Unchanged children are not touched.
    pub async fn apply(&mut self, diff: &Diff, generation: u64) -> Vec<Failure> {
        let stopping: Vec<&str> = diff
            .remove
            .iter()
            .map(|w| w.name.as_str())
            .chain(diff.change.iter().map(|c| c.name()))
            .collect();
        let (gone, kept): (Vec<Child>, Vec<Child>) = std::mem::take(&mut self.children)
            .into_iter()
            .partition(|c| stopping.contains(&c.wiring.name.as_str()));
        self.children = kept;
        for c in &gone {
            c.stop.cancel();
        }
        // The children must be gone before their successors bind the same ports.
        wait_stopped(&gone).await;
        for change in &diff.change {
            self.spawn(&change.new, generation);
            tracing::info!(node = %change.name(), generation, "child restarted");
        }
        for w in &diff.add {
            self.spawn(w, generation);
            tracing::info!(node = %w.name, generation, "child added");
        }
        // Failures show up as child exits (restarted with backoff); only
        // start-up waits for readiness.
        self.starting.clear();
        Vec::new()
    }

    /// Stops every child (SIGTERM, then SIGKILL after [`GRACE`]).
    pub async fn shutdown(self) {
        for c in &self.children {
            c.stop.cancel();
        }
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Waits until the supervising tasks of `children` saw their process exit
/// (bounded: a task SIGKILLs its child after [`GRACE`]).
async fn wait_stopped(children: &[Child]) {
    let all = futures_util::future::join_all(children.iter().map(|c| c.done.cancelled()));
    let _ = tokio::time::timeout(GRACE + Duration::from_secs(1), all).await;
}

struct Spec {
    exe: PathBuf,
    file: PathBuf,
    name: String,
    generation: u64,
    width: usize,
    colour: bool,
    output: ChildOutput,
    admin: Option<std::net::SocketAddr>,
}

/// Runs one child until `stop`, restarting it when it exits; says through
/// `ready` whether its first start became ready.
async fn supervise(
    spec: Spec,
    ready: oneshot::Sender<Result<(), WhyNotReady>>,
    stop: CancellationToken,
    _done: tokio_util::sync::DropGuard,
    tracker: TaskTracker,
) {
    let mut exits: Vec<Instant> = Vec::new();
    let mut delays = crate::transport::retry::backoff(BACKOFF_START, BACKOFF_MAX);
    let mut ready = Some(ready);
    loop {
        let (mut child, signal) = match spawn(&spec) {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(error = %e, "cannot start child");
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(WhyNotReady::Spawn(e)));
                }
                return;
            }
        };
        let pid = child.id();
        tracing::info!(pid, "child started");
        if let Some(ready) = ready.take() {
            tracker.spawn(await_ready(signal, ready));
        }
        if let Some(out) = child.stdout.take() {
            tracker.spawn(relay_lines(out, spec.line_sink(ChildStream::Stdout)));
        }
        if let Some(err) = child.stderr.take() {
            tracker.spawn(relay_lines(err, spec.line_sink(ChildStream::Stderr)));
        }
        let status = tokio::select! {
            _ = stop.cancelled() => {
                terminate(&mut child, pid).await;
                return;
            }
            status = child.wait() => status,
        };
        let now = Instant::now();
        exits.retain(|t| now.duration_since(*t) < CRASH_WINDOW);
        exits.push(now);
        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
        if exits.len() >= CRASH_LIMIT {
            tracing::error!(%status, exits = exits.len(), "child exited {CRASH_LIMIT} times within {CRASH_WINDOW:?}: node marked failed, not restarted");
            return;
        }
        // The backoff is endless; the cap is only a fallback.
        let backoff = delays.next().unwrap_or(BACKOFF_MAX);
        tracing::warn!(%status, restart_in = ?backoff, "child exited, restarting");
        if crate::transport::retry::sleep_or_cancelled(&stop, backoff).await {
            return;
        }
    }
}

/// Reads the child's readiness pipe: `ready`, or end of file (it exited).
async fn await_ready(signal: ReadyPipe, ready: oneshot::Sender<Result<(), WhyNotReady>>) {
    use tokio::io::AsyncReadExt;
    let mut said = Vec::new();
    let result = match signal.take(64).read_to_end(&mut said).await {
        Ok(_) if said.starts_with(b"ready") => Ok(()),
        Ok(_) => Err(WhyNotReady::Exited),
        Err(e) => Err(WhyNotReady::Pipe(e)),
    };
    let _ = ready.send(result);
}

type ReadyPipe = tokio::net::unix::pipe::Receiver;

/// A pipe whose write end the child inherits (its number in [`READY_FD`]).
fn ready_pipe() -> std::io::Result<(ReadyPipe, std::os::fd::OwnedFd)> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills the two descriptors, which we then own. Both are
    // close-on-exec: the write end is let through to one child only.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((ReadyPipe::from_owned_fd(read)?, write))
}

fn spawn(spec: &Spec) -> std::io::Result<(tokio::process::Child, ReadyPipe)> {
    use std::os::fd::AsRawFd;
    let (signal, write) = ready_pipe()?;
    let write_fd = write.as_raw_fd();
    let mut cmd = tokio::process::Command::new(&spec.exe);
    cmd.arg("node")
        .arg("--generation")
        .arg(spec.generation.to_string());
    if let Some(admin) = spec.admin {
        cmd.arg("--admin-origin").arg(admin.to_string());
    }
    // `--`: a file named `-x.yaml` is a path, not an option.
    cmd.arg("--")
        .arg(&spec.file)
        .arg(&spec.name)
        .env(READY_FD, write_fd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // The child's stderr is a pipe: it colours only when told to.
    if spec.colour {
        cmd.env(FORCE_COLOUR, "1");
    } else {
        cmd.env("NO_COLOR", "1");
    }
    // The readiness pipe survives exec in this child only.
    super::child::own(&mut cmd, Some(write_fd));
    let child = cmd.spawn()?;
    // Ours closed: the pipe ends when the child's copy does.
    drop(write);
    Ok((child, signal))
}

/// SIGTERM to the child's group, SIGKILL after [`GRACE`].
async fn terminate(child: &mut tokio::process::Child, pid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pid) = pid {
        // SAFETY: plain syscall; the group id is the child's pid (process_group(0)).
        unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGTERM) };
        if tokio::time::timeout(GRACE, child.wait()).await.is_ok() {
            tracing::info!("child stopped");
            return;
        }
        tracing::warn!("child did not stop within {GRACE:?}, killing it");
        unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
    }
    let _ = child.kill().await;
}

/// Where one stream of one child goes.
struct LineSink {
    node: String,
    name_width: usize,
    stream: ChildStream,
    output: ChildOutput,
}

impl Spec {
    fn line_sink(&self, stream: ChildStream) -> LineSink {
        LineSink {
            node: self.name.clone(),
            name_width: self.width,
            stream,
            output: self.output.clone(),
        }
    }
}

/// Hands a child's output to its sink line by line.
async fn relay_lines(stream: impl AsyncRead + Unpin, sink: LineSink) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        (sink.output)(ChildLine {
            node: &sink.node,
            name_width: sink.name_width,
            stream: sink.stream,
            text: &line,
        });
    }
}
