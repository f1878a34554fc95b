//! The command line (part of the binary, not of the library): argument
//! definitions (clap), and the one place that prints what the library's
//! commands return. `main` maps the [`Exit`] to the process.

#[macro_use]
mod output;
mod bench;
mod exit;
mod import;
mod logging;
mod plan;
mod test;
mod up;
mod validate;

use clap::{Parser, Subcommand, ValueEnum};
use exit::{EXIT_INVALID, EXIT_OK, EXIT_USAGE, Exit};
use import::import;
use std::path::Path;
use std::path::PathBuf;
use topo::check::Valid;
use topo::check::check_file;
use topo::command::Format;
use topo::command::{runtime, shutdown_signal};
use topo::config::diagnostic::did_you_mean;
use topo::config::spec::TopologySpec;
use validate::{graph, validate};

#[derive(Parser, Debug)]
#[command(
    name = "topo",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("TOPO_COMMIT"), ")"),
    about = "Validate, run and hot-reload chat topologies (Redis pub/sub, ZeroMQ PUB/SUB)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check topology files and print who receives whose messages.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print the graph of a topology for Graphviz, Mermaid or programs.
    Graph {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Print the JSON Schema of topology files.
    Schema,
    /// Start every node of a topology, watch the file and apply its edits.
    Up {
        file: PathBuf,
        /// One child process per node (`topo node FILE NAME`).
        #[arg(long)]
        process: bool,
        /// Poll for changes (network filesystems) instead of file events.
        #[arg(long)]
        poll: bool,
        /// Address of the admin server (`GET /api/topology`, used by `topo plan`).
        #[arg(long, default_value = topo::admin::DEFAULT_ADDR)]
        admin: std::net::SocketAddr,
        /// Run without the admin server.
        #[arg(long, conflicts_with = "admin")]
        no_admin: bool,
        /// List every link in the ready table (it is summarised to 100 columns).
        #[arg(short, long)]
        verbose: bool,
    },
    /// Run one node of a topology (for several hosts, or child processes).
    Node {
        file: PathBuf,
        name: String,
        /// The reload generation shown by /healthz (set by `up --process`).
        #[arg(long, default_value_t = 0, hide = true)]
        generation: u64,
        /// The admin server whose page may open WebSockets here (set by `up --process`).
        #[arg(long, hide = true)]
        admin_origin: Option<std::net::SocketAddr>,
    },
    /// What saving FILE would do to the running `topo up`: nodes added,
    /// removed, rewired, restarted, and how deliveries change.
    Plan {
        file: PathBuf,
        /// The admin server of the running `topo up`.
        #[arg(long, default_value = topo::admin::DEFAULT_ADDR)]
        admin: std::net::SocketAddr,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// What a reload from OLD to NEW would do (as `plan`, for two files).
    Diff {
        old: PathBuf,
        new: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Send a tagged message from a client of every node of a running
    /// topology and compare what arrives with the prediction.
    Probe {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Seconds to wait for the predicted deliveries.
        #[arg(long, default_value_t = 3.0)]
        timeout: f64,
    },
    /// Turn the command lines that start the chapter's Node.js chat servers
    /// (one per line, a Procfile or a shell script) into a topology file.
    Import {
        /// The file of command lines; `-` reads stdin.
        file: PathBuf,
        /// What a bare-port line (`node app 8080`) starts: the chapter's
        /// single server or its Redis server.
        #[arg(long, value_enum)]
        bare: Option<topo::import::Bare>,
        /// `name:` of the topology; default: the file's stem.
        #[arg(long)]
        name: Option<String>,
        /// Where the `$schema` comment points (`topo schema` writes the schema).
        #[arg(long, default_value = "../schemas/topology.schema.json")]
        schema: String,
    },
    /// Print a shell completion script (e.g. `topo completions bash >
    /// /etc/bash_completion.d/topo`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff: `topo man | man -l -`).
    Man,
    /// Load a topology (or any chat server with --url) and measure
    /// deliveries/s, latency, losses, CPU and memory.
    Bench(Box<topo::bench::BenchArgs>),
    /// Compare each file's `expect:` deliveries with the prediction and,
    /// with --run, with what real sockets deliver (for CI).
    Test(Box<topo::testing::TestArgs>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
    Json,
}

pub fn run(cli: Cli) -> Exit {
    // Every node, link and client is a descriptor: take all we may have.
    topo::runtime::fds::raise_limit();
    match cli.command {
        Command::Validate { files, format } => validate(&files, format),
        Command::Graph { file, format } => graph(&file, format),
        Command::Schema => {
            outln!("{}", schema_json());
            EXIT_OK
        }
        Command::Up {
            file,
            process,
            poll,
            admin,
            no_admin,
            verbose,
        } => {
            if !file.is_file() {
                eoutln!("{}: cannot read: not a file", file.display());
                return EXIT_USAGE;
            }
            let options = topo::runtime::reload::UpOptions {
                file,
                process,
                poll,
                admin: (!no_admin).then_some(admin),
                verbose,
                colour: up::children_colour(),
            };
            run_async(|| topo::runtime::reload::up(options, up::printer(), shutdown_signal()))
        }
        Command::Plan {
            file,
            admin,
            format,
        } => plan::plan(&file, admin, format),
        Command::Diff { old, new, format } => plan::diff(&old, &new, format),
        Command::Node {
            file,
            name,
            generation,
            admin_origin,
        } => match load_valid(&file) {
            Ok(valid) => match valid.topology.node_id(&name) {
                Some(id) => run_async(|| {
                    if let Some(addr) = admin_origin {
                        topo::node::ws::allow_admin_origin(addr);
                    }
                    topo::runtime::run_node(
                        valid.topology,
                        id,
                        generation,
                        print_table,
                        shutdown_signal(),
                    )
                }),
                None => {
                    let names = valid.topology.nodes.iter().map(|n| n.name.as_str());
                    let hint = match did_you_mean(&name, names) {
                        Some(s) => format!("; did you mean `{s}`?"),
                        None => String::new(),
                    };
                    eoutln!("{}: no node `{name}`{hint}", file.display());
                    EXIT_USAGE
                }
            },
            Err(code) => code,
        },
        Command::Probe {
            file,
            format,
            timeout,
        } => match load_valid(&file) {
            Ok(valid) => probe(&file, &valid, format, timeout),
            Err(code) => code,
        },
        Command::Bench(args) => bench::bench(&args),
        Command::Test(args) => test::test(&args),
        Command::Import {
            file,
            bare,
            name,
            schema,
        } => import(&file, bare, name, schema),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "topo", &mut script);
            out!("{}", String::from_utf8_lossy(&script));
            EXIT_OK
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            let mut page = Vec::new();
            match clap_mangen::Man::new(command).render(&mut page) {
                Ok(()) => {
                    out!("{}", String::from_utf8_lossy(&page));
                    EXIT_OK
                }
                Err(e) => {
                    eprintln!("topo man: {e}");
                    EXIT_USAGE
                }
            }
        }
    }
}

/// Checks `file` and prints its diagnostics; a valid file comes back to run.
pub(crate) fn load_valid(file: &Path) -> Result<Valid, Exit> {
    let checked = check_file(file).map_err(|error| {
        eoutln!("{error}");
        Exit::Usage
    })?;
    eout!("{}", checked.render());
    checked.valid.ok_or_else(|| {
        eoutln!("{}: invalid, nothing started", checked.file);
        Exit::Invalid
    })
}

/// The ready table of `up` and `node`, on stdout once every node runs.
fn print_table(table: &str) {
    output::print_lossy(&format!("{table}\n"));
}

/// Runs the future `job` makes; it is made inside the runtime, so that the
/// signal handlers of `shutdown_signal` exist before anything starts.
fn run_async<E: std::fmt::Display, F: Future<Output = Result<(), E>>>(
    job: impl FnOnce() -> F,
) -> Exit {
    logging::init();
    let runtime = runtime();
    let job = {
        let _entered = runtime.enter();
        job()
    };
    let outcome = runtime.block_on(job);
    // Every node has stopped; don't let a library's leftover blocking task
    // hold the exit (the contract: exit within 2 s of Ctrl-C).
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match outcome {
        Ok(()) => EXIT_OK,
        Err(error) => {
            eoutln!("error: {error}");
            EXIT_INVALID
        }
    }
}

fn probe(file: &std::path::Path, valid: &Valid, format: Format, timeout: f64) -> Exit {
    let options = topo::probe::ProbeOptions {
        timeout: std::time::Duration::from_secs_f64(timeout.clamp(0.1, 600.0)),
        ..Default::default()
    };
    let report = runtime().block_on(topo::probe::probe(valid, options));
    match format {
        Format::Json => outln!("{}", report.to_json(&file.display().to_string())),
        Format::Text => out!("{}", report.to_text()),
    }
    if report.agrees() {
        EXIT_OK
    } else {
        EXIT_INVALID
    }
}

/// The JSON Schema of topology files, as committed in `schemas/`.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(TopologySpec);
    serde_json::to_string_pretty(&schema).expect("a schema serialises")
}
