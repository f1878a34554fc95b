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
mod progress;
pub mod report;
mod run;
pub mod startup;

use crate::command::{EXIT_INVALID, EXIT_OK, EXIT_USAGE, Exit, Format};
use plan::{Expect, Load, LoadPlan};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

pub use report::Report;
pub use run::run;

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

pub fn main(args: BenchArgs) -> Exit {
    let (targets, expected, links) = match targets(&args) {
        Ok(t) => t,
        Err(code) => return code,
    };
    if let Some(command) = &args.startup {
        return startup::main(command, &targets, links, args.repeat, args.format);
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
        eprintln!("error: need at least one client and no more senders than clients");
        return EXIT_USAGE;
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
    let progress = args.format == Format::Text && std::io::stderr().is_terminal();
    match run(plan, &args.pids, progress) {
        Ok(report) => {
            match args.format {
                Format::Json => crate::outln!("{}", report.to_json(args.label.as_deref())),
                Format::Text => crate::out!("{}", report.to_text()),
            }
            if report.clean() {
                EXIT_OK
            } else {
                EXIT_INVALID
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_INVALID
        }
    }
}

/// Targets and prediction from the file or the URLs; with a file, also the
/// nodes' health URLs (for `--startup`).
#[allow(clippy::type_complexity)]
fn targets(args: &BenchArgs) -> Result<(Vec<plan::Target>, Vec<Vec<u32>>, bool), Exit> {
    match (&args.file, args.urls.is_empty()) {
        (Some(file), _) => {
            let checked = crate::check::check_file(file).map_err(|e| {
                eprintln!("{e}");
                EXIT_USAGE
            })?;
            eprint!("{}", checked.render());
            let valid = checked.valid.ok_or(EXIT_INVALID)?;
            let (targets, expected) = plan::from_topology(&valid);
            if targets.is_empty() {
                eprintln!("{}: no node has an HTTP server", file.display());
                return Err(EXIT_USAGE);
            }
            Ok((targets, expected, true))
        }
        (None, false) => {
            let (targets, expected) = plan::from_urls(&args.urls, args.expect);
            Ok((targets, expected, false))
        }
        (None, true) => {
            eprintln!("error: give a topology FILE or at least one --url");
            Err(EXIT_USAGE)
        }
    }
}
