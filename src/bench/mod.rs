//! `topo bench`: a load generator in the topo binary. It loads a topology
//! file's nodes (whose URLs and predicted deliveries it knows) or any chat
//! server given by `--url`, and measures deliveries/s, end-to-end latency,
//! losses and duplicates, and the CPU and memory of itself and of `--pid`s.
//!
//! plan.rs decides, load.rs generates and tallies, run.rs coordinates,
//! report.rs prints, procstat.rs reads /proc, startup.rs times a command
//! from launch to ready. The comparison's plot and table are project
//! tooling, outside the library (`bench/plot/`).
//! It never starts the servers it loads (except `--startup`'s command).

mod load;
pub mod payload;
pub mod plan;
pub mod procstat;
pub mod progress;
pub mod report;
mod run;
pub mod startup;

use crate::command::Format;
use plan::{Expect, Load, LoadPlan};
use std::path::PathBuf;
use std::time::Duration;

pub use progress::Progress;
pub use report::Report;
pub use run::{RunError, run};

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// A topology file: load every node with an HTTP server, check the
    /// analysis' predicted deliveries.
    pub file: Option<PathBuf>,
    /// Load this WebSocket URL instead (repeat for several servers).
    #[arg(long = "url", conflicts_with = "file")]
    pub urls: Vec<String>,
    /// With --url: who should get a message (every client, or only the
    /// clients of the sender's URL).
    #[arg(long, value_enum, default_value_t = Expect::All)]
    pub expect: Expect,
    /// WebSocket clients, spread evenly over the nodes.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// How many of the clients send.
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Open loop: messages per second from all senders together.
    #[arg(long, conflicts_with = "window")]
    pub rate: Option<f64>,
    /// Closed loop: unanswered messages per sender (the default, 16).
    #[arg(long)]
    pub window: Option<u32>,
    /// Connect the clients and hold them, sending nothing (memory per connection).
    #[arg(long, conflicts_with_all = ["rate", "window"])]
    pub idle: bool,
    /// Seconds measured.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds to wait for messages still in flight after the window.
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,
    /// Bytes per message (at least 41).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Generator threads (each a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Also report the CPU and memory of this process (repeatable).
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// A name for this run in the JSON output.
    #[arg(long)]
    pub label: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Time this command from launch until every target accepts a client
    /// (and, with a topology file, every link is up); median of --repeat.
    #[arg(long)]
    pub startup: Option<String>,
    #[arg(long, default_value_t = 7)]
    pub repeat: usize,
}

/// What `topo bench` measured: a load run, or `--startup`'s launches.
pub enum Outcome {
    Load(Box<Report>),
    Startup(startup::Startup),
}

/// What a bench has to tell its user while it runs; the caller shows it.
#[derive(Clone, Copy, Debug)]
pub enum BenchEvent<'a> {
    /// The topology file's diagnostics, before anything is loaded.
    Diagnostics(&'a str),
    /// About five times a second while the load runs.
    Progress(Progress),
    /// The load is over (the report follows).
    Loaded,
}

/// Why `topo bench` measured nothing.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Read(#[from] crate::check::ReadError),
    /// The diagnostics went to the events already.
    #[error("{file}: invalid")]
    Invalid { file: String },
    #[error("{file}: no node has an HTTP server")]
    NoHttpServer { file: String },
    #[error("error: give a topology FILE or at least one --url")]
    NoTarget,
    #[error("error: need at least one client and no more senders than clients")]
    Senders,
    #[error("error: {0}")]
    Run(#[from] RunError),
    #[error("error: {0}")]
    Startup(#[from] startup::StartupError),
}

impl BenchError {
    /// The arguments or the file cannot be used, rather than a run that
    /// went wrong.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            BenchError::Read(_)
                | BenchError::NoHttpServer { .. }
                | BenchError::NoTarget
                | BenchError::Senders
        )
    }
}

/// Runs `topo bench`; `events` hears the file's diagnostics and the load's
/// progress.
pub fn bench(
    args: &BenchArgs,
    mut events: impl FnMut(BenchEvent<'_>),
) -> Result<Outcome, BenchError> {
    let (targets, expected, links) = targets(args, &mut events)?;
    if let Some(command) = &args.startup {
        let measured = startup::measure(command, &targets, links, args.repeat)?;
        return Ok(Outcome::Startup(measured));
    }
    let load = if args.idle {
        Load::Idle
    } else if let Some(rate) = args.rate {
        Load::Rate(rate)
    } else {
        Load::Window(args.window.unwrap_or(16).max(1))
    };
    let senders = if args.idle { 0 } else { args.senders };
    if senders > args.clients || args.clients == 0 {
        return Err(BenchError::Senders);
    }
    let secs = |s: f64| Duration::from_secs_f64(s.clamp(0.0, 86_400.0));
    let plan = LoadPlan {
        targets,
        expected,
        clients: args.clients,
        senders,
        load,
        warmup: secs(args.warmup),
        duration: secs(args.duration.max(0.01)),
        drain: secs(args.drain),
        payload: args.payload.max(payload::MIN_SIZE),
        threads: args.threads.max(1),
        connect_timeout: Duration::from_secs(10),
    };
    Ok(Outcome::Load(Box::new(run(plan, &args.pids, &mut events)?)))
}

/// Targets and prediction from the file or the URLs; with a file, also the
/// nodes' health URLs (for `--startup`).
#[allow(clippy::type_complexity)]
fn targets(
    args: &BenchArgs,
    events: &mut impl FnMut(BenchEvent<'_>),
) -> Result<(Vec<plan::Target>, Vec<Vec<u32>>, bool), BenchError> {
    match (&args.file, args.urls.is_empty()) {
        (Some(file), _) => {
            let checked = crate::check::check_file(file)?;
            events(BenchEvent::Diagnostics(&checked.render()));
            let valid = checked.valid.ok_or_else(|| BenchError::Invalid {
                file: file.display().to_string(),
            })?;
            let (targets, expected) = plan::from_topology(&valid);
            if targets.is_empty() {
                return Err(BenchError::NoHttpServer {
                    file: file.display().to_string(),
                });
            }
            Ok((targets, expected, true))
        }
        (None, false) => {
            let (targets, expected) = plan::from_urls(&args.urls, args.expect);
            Ok((targets, expected, false))
        }
        (None, true) => Err(BenchError::NoTarget),
    }
}
