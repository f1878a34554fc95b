//! The command line: argument definitions (clap) and everything printed.
//! Commands return an [`Exit`]; `main` only maps it to the process.

use crate::check::{Checked, Valid, check_file};
pub use crate::command::{EXIT_INVALID, EXIT_OK, EXIT_USAGE, Exit, Format};
use crate::command::{load_valid, runtime, shutdown_signal};
use crate::config::diagnostic::did_you_mean;
use crate::config::spec::TopologySpec;
use crate::graph::render;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use std::fmt::Write;
use std::path::PathBuf;

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
        #[arg(long, default_value = crate::admin::DEFAULT_ADDR)]
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
        #[arg(long, default_value = crate::admin::DEFAULT_ADDR)]
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
        bare: Option<crate::import::Bare>,
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
    Bench(Box<crate::bench::BenchArgs>),
    /// Compare each file's `expect:` deliveries with the prediction and,
    /// with --run, with what real sockets deliver (for CI).
    Test(Box<crate::testing::TestArgs>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
    Json,
}

pub fn run(cli: Cli) -> Exit {
    // Every node, link and client is a descriptor: take all we may have.
    crate::runtime::fds::raise_limit();
    match cli.command {
        Command::Validate { files, format } => validate(&files, format),
        Command::Graph { file, format } => graph(&file, format),
        Command::Schema => {
            crate::outln!("{}", schema_json());
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
                crate::eoutln!("{}: cannot read: not a file", file.display());
                return EXIT_USAGE;
            }
            let options = crate::runtime::reload::UpOptions {
                file,
                process,
                poll,
                admin: (!no_admin).then_some(admin),
                verbose,
            };
            run_async(|| crate::runtime::reload::up(options, shutdown_signal()))
        }
        Command::Plan {
            file,
            admin,
            format,
        } => crate::plan::plan(&file, admin, format),
        Command::Diff { old, new, format } => crate::plan::diff(&old, &new, format),
        Command::Node {
            file,
            name,
            generation,
            admin_origin,
        } => match load_valid(&file) {
            Ok(valid) => match valid.topology.node_id(&name) {
                Some(id) => run_async(|| {
                    if let Some(addr) = admin_origin {
                        crate::node::ws::allow_admin_origin(addr);
                    }
                    crate::runtime::run_node(valid.topology, id, generation, shutdown_signal())
                }),
                None => {
                    let names = valid.topology.nodes.iter().map(|n| n.name.as_str());
                    let hint = match did_you_mean(&name, names) {
                        Some(s) => format!("; did you mean `{s}`?"),
                        None => String::new(),
                    };
                    crate::eoutln!("{}: no node `{name}`{hint}", file.display());
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
        Command::Bench(args) => crate::bench::main(*args),
        Command::Test(args) => crate::testing::main(*args),
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
            crate::out!("{}", String::from_utf8_lossy(&script));
            EXIT_OK
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            let mut page = Vec::new();
            match clap_mangen::Man::new(command).render(&mut page) {
                Ok(()) => {
                    crate::out!("{}", String::from_utf8_lossy(&page));
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

/// Input of `import` larger than this is refused before it is read whole:
/// command lines for a few hundred servers fit many times over.
const MAX_IMPORT_BYTES: u64 = 1 << 20;

fn import(
    file: &std::path::Path,
    bare: Option<crate::import::Bare>,
    name: Option<String>,
    schema: String,
) -> Exit {
    use std::io::Read;
    let stdin = file.as_os_str() == "-";
    let source = if stdin {
        "stdin".to_owned()
    } else {
        file.display().to_string()
    };
    let mut bytes = Vec::new();
    let read = if stdin {
        std::io::stdin()
            .take(MAX_IMPORT_BYTES + 1)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(MAX_IMPORT_BYTES + 1).read_to_end(&mut bytes))
    };
    if let Err(e) = read {
        eprintln!("{source}: cannot read: {e}");
        return EXIT_USAGE;
    }
    if bytes.len() as u64 > MAX_IMPORT_BYTES {
        eprintln!("{source}: larger than {MAX_IMPORT_BYTES} bytes, not imported");
        return EXIT_USAGE;
    }
    let Ok(text) = String::from_utf8(bytes) else {
        eprintln!("{source}: not UTF-8 text");
        return EXIT_USAGE;
    };
    let stem = match (&name, stdin) {
        (Some(name), _) => name.clone(),
        (None, true) => "imported".to_owned(),
        (None, false) => file
            .file_stem()
            .map_or(String::new(), |s| s.to_string_lossy().into_owned()),
    };
    let options = crate::import::Options {
        name: crate::import::name_from_stem(&stem),
        source: source.clone(),
        bare,
        schema,
    };
    let yaml = match crate::import::import(&text, &options) {
        Ok(yaml) => yaml,
        Err(errors) => {
            for e in &errors {
                let span = crate::config::yaml::Span::new(e.line as u32, e.column as u32);
                let diagnostic = crate::config::diagnostic::Diagnostic::error(span, &e.message);
                eprint!(
                    "{}",
                    crate::config::diagnostic::render(
                        &source,
                        &crate::config::diagnostic::Lines::new(&text),
                        &diagnostic
                    )
                );
            }
            eprintln!("{source}: {} error(s), nothing written", errors.len());
            return EXIT_INVALID;
        }
    };
    // The file must stand up to `validate` as written; its warnings (a
    // --sub no line binds) are worth showing.
    let env = |var: &str| std::env::var(var).ok();
    let checked = crate::check::check_str("<import>", &options.name, yaml.clone(), &env);
    eprint!("{}", checked.render());
    if checked.valid.is_none() {
        eprintln!("{source}: the imported topology is invalid, nothing written");
        return EXIT_INVALID;
    }
    crate::out!("{yaml}");
    EXIT_OK
}

/// Runs the future `job` makes; it is made inside the runtime, so that the
/// signal handlers of `shutdown_signal` exist before anything starts.
fn run_async<E: std::fmt::Display, F: Future<Output = Result<(), E>>>(
    job: impl FnOnce() -> F,
) -> Exit {
    crate::logging::init();
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
            crate::eoutln!("error: {error}");
            EXIT_INVALID
        }
    }
}

fn probe(file: &std::path::Path, valid: &Valid, format: Format, timeout: f64) -> Exit {
    let options = crate::probe::ProbeOptions {
        timeout: std::time::Duration::from_secs_f64(timeout.clamp(0.1, 600.0)),
        ..Default::default()
    };
    let report = runtime().block_on(crate::probe::probe(valid, options));
    match format {
        Format::Json => crate::outln!("{}", report.to_json(&file.display().to_string())),
        Format::Text => crate::out!("{}", report.to_text()),
    }
    if report.agrees() {
        EXIT_OK
    } else {
        EXIT_INVALID
    }
}

fn validate(files: &[PathBuf], format: Format) -> Exit {
    let mut code = EXIT_OK;
    for path in files {
        let checked = match check_file(path) {
            Ok(checked) => checked,
            Err(error) => {
                crate::eoutln!("{error}");
                code = EXIT_USAGE;
                continue;
            }
        };
        if checked.valid.is_none() && code == EXIT_OK {
            code = EXIT_INVALID;
        }
        let fds = checked.valid.as_ref().map(|v| {
            let needed = crate::runtime::fds::needed(&v.topology);
            (needed, crate::runtime::fds::raise_limit())
        });
        match format {
            Format::Json => {
                let mut object = validation_json(&checked);
                if let Some((needed, limit)) = fds {
                    object["descriptors"] = json!({"needed": needed, "limit": limit});
                }
                crate::outln!("{object}");
            }
            Format::Text => {
                crate::eout!("{}", checked.render());
                crate::out!("{}", summary(&checked));
                if let Some((needed, limit)) = fds {
                    crate::out!("{}", descriptors_line(needed, limit));
                }
            }
        }
    }
    code
}

/// What `validate` says about file descriptors (and a warning on stderr
/// when `topo up` would refuse the file).
fn descriptors_line(needed: u64, limit: Option<u64>) -> String {
    match limit {
        Some(limit) if needed > limit => {
            eprintln!(
                "warning: about {needed} file descriptors needed in one process, over the limit of {limit}: \
                 `topo up` would refuse to start (raise `ulimit -n`, or use `topo up --process`)"
            );
            format!(
                "file descriptors: about {needed} needed in one process, limit {limit} (too few)\n"
            )
        }
        Some(limit) => {
            format!("file descriptors: about {needed} needed in one process, limit {limit}\n")
        }
        None => format!("file descriptors: about {needed} needed in one process\n"),
    }
}

/// SPEC's `validate --format json` object.
pub fn validation_json(checked: &Checked) -> serde_json::Value {
    let entries = |errors: bool| -> Vec<serde_json::Value> {
        checked
            .diagnostics
            .iter()
            .filter(|d| d.is_error() == errors)
            .map(|d| json!({"line": d.span.line, "column": d.span.column, "message": d.message}))
            .collect()
    };
    let mut object = json!({
        "file": checked.file,
        "valid": checked.valid.is_some(),
        "errors": entries(true),
        "warnings": entries(false),
    });
    if let Some(valid) = &checked.valid {
        object["reach"] = json!(valid.analysis.reach_by_name(&valid.topology));
        object["deliveries"] = json!(valid.analysis.deliveries_by_name(&valid.topology));
    }
    object
}

/// The closing lines of `validate`: a verdict, and the reach as a matrix
/// when it fits on a screen, as one line per sender when it does not.
fn summary(checked: &Checked) -> String {
    let Some(valid) = &checked.valid else {
        let errors = checked.errors().count();
        return format!(
            "{}: invalid ({errors} error{})\n",
            checked.file,
            plural(errors)
        );
    };
    let (topology, analysis) = (&valid.topology, &valid.analysis);
    let warnings = checked.warnings().count();
    let mut out = format!(
        "{}: valid ({} node{}, {} link{}{})\n",
        checked.file,
        topology.nodes.len(),
        plural(topology.nodes.len()),
        analysis.graph.edge_count(),
        plural(analysis.graph.edge_count()),
        if warnings > 0 {
            format!(", {warnings} warning{}", plural(warnings))
        } else {
            String::new()
        }
    );
    // File order, as written: `n2` before `n10`.
    let deliveries = analysis.deliveries_in_file_order(topology);
    if deliveries.is_empty() {
        out.push_str("no node has an HTTP server, so no client can send\n");
        return out;
    }
    let names: Vec<&String> = deliveries.iter().map(|(name, _)| name).collect();
    if names.len() <= 12 {
        let width = names.iter().map(|n| n.len()).max().unwrap_or(1).max(3);
        out.push_str("deliveries per message (row: sender's node, column: receiving node)\n");
        let _ = write!(out, "  {:width$}", "");
        for name in &names {
            let _ = write!(out, " {name:>width$}");
        }
        out.push('\n');
        for (from, row) in &deliveries {
            let _ = write!(out, "  {from:width$}");
            for to in &names {
                let cell = row
                    .iter()
                    .find(|(name, _)| name == *to)
                    .map_or("·".to_owned(), |(_, n)| n.to_string());
                let _ = write!(out, " {cell:>width$}");
            }
            out.push('\n');
        }
    } else {
        out.push_str("reach (sender -> receiving nodes)\n");
        for (shown, (from, row)) in deliveries.iter().enumerate() {
            if shown == 20 {
                let _ = writeln!(
                    out,
                    "  … and {} more senders (use --format json)",
                    deliveries.len() - 20
                );
                break;
            }
            let targets: Vec<&String> = row.iter().map(|(name, _)| name).take(6).collect();
            let more = row.len().saturating_sub(6);
            let tail = if more > 0 {
                format!(" … +{more}")
            } else {
                String::new()
            };
            let targets: Vec<&str> = targets.iter().map(|s| s.as_str()).collect();
            let _ = writeln!(
                out,
                "  {from} -> {} node{}: {}{tail}",
                row.len(),
                plural(row.len()),
                targets.join(" ")
            );
        }
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn graph(file: &std::path::Path, format: GraphFormat) -> Exit {
    let checked = match check_file(file) {
        Ok(checked) => checked,
        Err(error) => {
            crate::eoutln!("{error}");
            return EXIT_USAGE;
        }
    };
    crate::eout!("{}", checked.render());
    let Some(valid) = &checked.valid else {
        return EXIT_INVALID;
    };
    let (topology, graph) = (&valid.topology, &valid.analysis.graph);
    match format {
        GraphFormat::Dot => crate::out!("{}", render::dot(topology, graph)),
        GraphFormat::Mermaid => crate::out!("{}", render::mermaid(topology, graph)),
        GraphFormat::Json => crate::outln!("{}", render::json(topology, graph)),
    }
    EXIT_OK
}

/// The JSON Schema of topology files, as committed in `schemas/`.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(TopologySpec);
    serde_json::to_string_pretty(&schema).expect("a schema serialises")
}
