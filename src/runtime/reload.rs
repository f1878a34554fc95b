//! `topo up FILE`: start the file's nodes (in this process, or one child
//! each), then turn every save of the file into a reload: re-validate,
//! diff against what runs, apply only the difference, publish the applied
//! state on the admin server. An invalid save changes nothing. The admin
//! page's fault switches are applied here too, between saves (`faults`).
//! It prints nothing: what the user should see goes to the caller as
//! [`UpEvent`]s, the rest is logged.

use super::controller::{self, Failure};
use super::faults::{FaultRequest, Faults};
use super::process::{ChildLine, ChildOutput, ChildSettings, Supervisor};
use super::watch;
use super::{Running, StartError, ready_table};
use crate::admin::{self, Applied, LiveFeed};
use crate::check::{Checked, check_bytes};
use crate::diff::{Diff, wirings};
use crate::model::{Topology, Wiring};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Debug)]
pub struct UpOptions {
    pub file: PathBuf,
    /// One child process per node (`topo node FILE NAME`).
    pub process: bool,
    /// Poll the directory instead of waiting for file events.
    pub poll: bool,
    /// Where the admin server listens; `None`: no admin server.
    pub admin: Option<SocketAddr>,
    /// The ready table lists every link in full (`-v`).
    pub verbose: bool,
    /// `--process`: the children colour their logs.
    pub colour: bool,
}

/// What `topo up` has to tell its user besides the log, in the order it
/// happens; the caller shows it (the binary prints it).
#[derive(Clone, Copy, Debug)]
pub enum UpEvent<'a> {
    /// The checker's diagnostics of the file (at start and on each save;
    /// empty when there is nothing to say).
    Diagnostics(&'a str),
    /// The admin server listens on an address that is not loopback.
    AdminExposed(SocketAddr),
    /// Every node runs: the ready table.
    Ready(&'a str),
    /// `--process`: a line one child wrote.
    Child(ChildLine<'a>),
}

/// Where `topo up`'s events go; called from its tasks too.
pub type UpEvents = Arc<dyn Fn(UpEvent<'_>) + Send + Sync>;

/// What runs the nodes.
enum Engine {
    InProcess(Running),
    Process(Supervisor),
}

impl Engine {
    async fn wirings(&self) -> Vec<Wiring> {
        match self {
            Engine::InProcess(r) => r.wirings().await,
            Engine::Process(s) => s.wirings(),
        }
    }

    async fn apply(&mut self, diff: &Diff, generation: u64) -> Vec<Failure> {
        match self {
            Engine::InProcess(r) => controller::apply(r, diff, generation).await,
            Engine::Process(s) => s.apply(diff, generation).await,
        }
    }

    async fn shutdown(self) {
        match self {
            Engine::InProcess(r) => r.shutdown().await,
            Engine::Process(s) => s.shutdown().await,
        }
    }
}

/// Why `topo up` stopped before it ran, or could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(transparent)]
    Read(#[from] crate::config::read::ReadError),
    #[error("{file}: invalid, nothing started")]
    Invalid { file: String },
    #[error(transparent)]
    Start(#[from] StartError),
    /// In one process, the topology needs more descriptors than allowed.
    #[error(transparent)]
    Descriptors(#[from] super::fds::TooFew),
    #[error(transparent)]
    AdminBind(#[from] admin::BindError),
    #[error("admin server: {0}")]
    AdminAddress(std::io::Error),
    /// `--process`: these children did not become ready (all were stopped).
    #[error("{} node(s) did not start: {}", .0.len(), join(.0))]
    Children(Vec<super::process::NotReady>),
    /// `--process` runs this executable for each node.
    #[error("{0}")]
    OwnExecutable(std::io::Error),
    #[error("{file}: cannot watch: {error}")]
    Watch { file: String, error: notify::Error },
}

fn join(failed: &[super::process::NotReady]) -> String {
    let why: Vec<String> = failed.iter().map(ToString::to_string).collect();
    why.join("; ")
}

/// Runs until `shutdown` resolves, applying every valid save of the file.
/// `events` hears what the user should see: diagnostics, the ready table
/// once every node runs, the children's output.
pub async fn up(
    options: UpOptions,
    events: UpEvents,
    shutdown: impl Future<Output = ()>,
) -> Result<(), UpError> {
    let file = options.file.display().to_string();
    let bytes = crate::config::read::read_topology(&options.file)?;
    let checked = check(&options, &bytes);
    events(UpEvent::Diagnostics(&checked.render()));
    let Some(valid) = checked.valid else {
        return Err(UpError::Invalid { file });
    };
    let topology = valid.topology.clone();
    // In one process every link holds descriptors here: never "ready" on
    // a topology whose links cannot all come up.
    if !options.process {
        super::fds::check(&topology)?;
    }
    // Bound before the nodes start: a taken admin port fails start-up
    // (a second `topo up` on the same machine needs --admin or --no-admin).
    let admin_listener = match options.admin {
        Some(addr) => {
            let listener = admin::bind(addr).await?;
            if !addr.ip().is_loopback() {
                events(UpEvent::AdminExposed(addr));
            }
            Some(listener)
        }
        None => None,
    };
    let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    // Its page's send boxes are WebSocket clients of every node.
    if let Some(addr) = admin_addr {
        crate::node::ws::allow_admin_origin(addr);
    }
    let mut engine = start(&options, &topology, admin_addr, &events).await?;
    let ids: Vec<_> = topology.node_ids().collect();
    let table = if options.verbose {
        super::ready_table_verbose(&topology, &ids)
    } else {
        ready_table(&topology, &ids)
    };
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    // Watching before "ready": a save made as soon as topo says it runs is
    // never missed (and the watcher's first look catches one made since the
    // file was read).
    // One save waits while the previous one is applied; later ones queue in
    // the watcher as a single wake-up (it re-reads the file when it runs).
    let (saves, mut saved) = mpsc::channel(1);
    let (_watch, watcher) =
        watch::watch(&options.file, &bytes, options.poll, saves, cancel.clone()).map_err(
            |error| UpError::Watch {
                file: file.clone(),
                error,
            },
        )?;
    tracker.spawn(watcher);
    tracing::info!(file = %file, poll = options.poll, "watching for changes (SIGHUP reloads too)");
    events(UpEvent::Ready(&table));

    let applied = Applied {
        file: file.clone(),
        source: checked.source,
        generation: 0,
        failed: Vec::new(),
    };
    let published = LiveFeed::new(applied, valid);
    // The admin page's fault switches; a few waiting at most (each answers).
    let (fault_tx, mut fault_rx) = mpsc::channel::<FaultRequest>(4);
    let mut faults = Faults::default();
    if let Some(listener) = admin_listener {
        let addr = listener.local_addr().map_err(UpError::AdminAddress)?;
        tracing::info!(%addr, "admin server: live view at http://{addr}/");
        tracker.spawn(admin::serve(
            listener,
            published.subscribe(),
            Some(fault_tx.clone()),
            cancel.clone(),
        ));
    }

    let mut generation = 0;
    tokio::pin!(shutdown);
    loop {
        let save = tokio::select! {
            _ = &mut shutdown => break,
            save = saved.recv() => match save {
                Some(save) => save,
                None => break,
            },
            Some(request) = fault_rx.recv() => {
                let result = match &mut engine {
                    Engine::InProcess(r) => {
                        let valid = published.valid();
                        faults.apply(r, &valid.topology, generation, request.command).await
                    }
                    Engine::Process(s) => {
                        let valid = published.valid();
                        faults.apply_process(s, &valid.topology, generation, request.command).await
                    }
                };
                // Also after an error: a Restore all may have undone some.
                published.faults(faults.active().to_vec());
                // The page may have gone: nobody to tell.
                let _ = request.reply.send(result);
                continue;
            }
        };
        // Checking a big file takes seconds: off the runtime's threads, and
        // shutdown does not wait for it (`run_async` drops the runtime with
        // a short timeout, abandoning the thread). Fault switches wait for it.
        tracing::info!(bytes = save.bytes.len(), "checking the saved file");
        let for_check = options.clone();
        let for_events = events.clone();
        let checking = tokio::task::spawn_blocking(move || {
            let checked = check(&for_check, &save.bytes);
            for_events(UpEvent::Diagnostics(&checked.render()));
            (checked, save.forced)
        });
        let (checked, forced) = tokio::select! {
            _ = &mut shutdown => break,
            done = checking => match done {
                Ok(done) => done,
                Err(_) => continue,
            },
        };
        let applied = reload(
            &options,
            &mut engine,
            checked,
            forced,
            &mut generation,
            &published,
        )
        .await;
        // The save rewired cut links back and started stopped nodes.
        if applied {
            match &engine {
                Engine::InProcess(r) => faults.forget(r).await,
                Engine::Process(_) => faults.clear(),
            }
        }
    }
    tracing::info!("shutting down");
    cancel.cancel();
    tracker.close();
    engine.shutdown().await;
    tracker.wait().await;
    tracing::info!("stopped");
    Ok(())
}

fn check(options: &UpOptions, bytes: &[u8]) -> Checked {
    let stem = options
        .file
        .file_stem()
        .map_or("topology".into(), |s| s.to_string_lossy().into_owned());
    let env = |name: &str| std::env::var(name).ok();
    check_bytes(&options.file.display().to_string(), &stem, bytes, &env)
}

async fn start(
    options: &UpOptions,
    topology: &Topology,
    admin: Option<SocketAddr>,
    events: &UpEvents,
) -> Result<Engine, UpError> {
    if options.process {
        let events = events.clone();
        let output: ChildOutput = Arc::new(move |line| events(UpEvent::Child(line)));
        let settings = ChildSettings {
            exe: std::env::current_exe().map_err(UpError::OwnExecutable)?,
            colour: options.colour,
            output,
            admin,
        };
        let all = wirings(topology);
        let mut supervisor = Supervisor::start(settings, &options.file, &all, 0);
        // Like in-process start-up: every node runs, or none does.
        if let Err(failed) = supervisor.ready().await {
            supervisor.shutdown().await;
            return Err(UpError::Children(failed));
        }
        return Ok(Engine::Process(supervisor));
    }
    Ok(Engine::InProcess(Running::start(topology).await?))
}

async fn reload(
    options: &UpOptions,
    engine: &mut Engine,
    checked: Checked,
    forced: bool,
    generation: &mut u64,
    published: &LiveFeed,
) -> bool {
    let file = options.file.display();
    let Some(valid) = checked.valid else {
        let errors = checked.errors().count();
        tracing::warn!(
            generation = *generation,
            errors,
            "reload rejected: {file} is invalid, nothing changed"
        );
        published.rejected(&checked);
        return false;
    };
    let next = *generation + 1;
    let diff = Diff::of_wirings(&engine.wirings().await, &wirings(&valid.topology));
    tracing::info!(generation = next, changes = %diff.summary(), forced, "reloading {file}");
    let failures = engine.apply(&diff, next).await;
    *generation = next;
    if failures.is_empty() {
        tracing::info!(generation = next, "reload applied");
    } else {
        let failed: Vec<String> = failures.iter().map(|f| f.to_string()).collect();
        tracing::warn!(generation = next, failed = %failed.join(" | "), "reload applied except for {} node(s)", failures.len());
    }
    let applied = Applied {
        file: file.to_string(),
        source: checked.source,
        generation: next,
        failed: failures.iter().map(|f| f.node.clone()).collect(),
    };
    let why = failures.iter().map(|f| f.to_string()).collect();
    published.applied(applied, valid, &diff, why);
    true
}
