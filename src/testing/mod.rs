//! `topo test`: golden reachability tests of a user's own topology files.
//! A file's `expect:` (or its `NAME.expect.yaml`) is compared cell by cell
//! with the prediction, and with `--run` with what real sockets deliver:
//! the topology starts in this process on free ports, with private Redis
//! servers, and is probed like `topo probe` does.
//!
//! discover.rs picks the files, remap.rs and brokers.rs (server.rs, cluster.rs) isolate a run,
//! report.rs prints, bless.rs writes the prediction into the file. This
//! module returns typed reports; the binary prints them and picks the
//! exit code.

pub mod bless;
pub mod brokers;
pub mod cluster;
pub mod discover;
pub mod nats;
pub mod ports;
pub mod remap;
pub mod report;
pub mod server;

use crate::check::{Checked, Valid, check_file};
use crate::command::Format;
use crate::config::diagnostic::{Diagnostic, Lines, render};
use crate::config::expect::{Expectations, resolve};
use crate::config::spec::Decoder;
use crate::config::yaml;
use crate::node::StartError;
use crate::probe::{ProbeOptions, ProbeReport, probe};
use crate::runtime::Running;
use brokers::{BrokerError, PrivateBrokers};
use cluster::ClusterError;
use futures_util::StreamExt;
use remap::{RemapError, remap};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

/// One file's whole `--run` (brokers, start, probes, stop) ends by then.
pub const FILE_LIMIT: Duration = Duration::from_secs(60);
/// How long ZeroMQ SUBs get to connect.
const LINKS_LIMIT: Duration = Duration::from_secs(10);
/// Probes per file: ZeroMQ's slow joiner may drop the first frames after a
/// subscription, so a probe is repeated while messages are missing (never
/// when one arrived too often: a duplicate is a real failure).
const PROBE_ATTEMPTS: usize = 3;
/// Listener ports are re-drawn this often when one was taken meanwhile.
const BIND_ATTEMPTS: usize = 3;

#[derive(clap::Args, Debug, Clone)]
pub struct TestArgs {
    /// Topology files, or directories searched for files with expectations
    /// (an `expect:` section or NAME.expect.yaml). Default: the current directory.
    pub paths: Vec<PathBuf>,
    /// Also start each topology in this process on free ports, probe it
    /// over real sockets and compare what arrives.
    #[arg(long)]
    pub run: bool,
    /// With --run: start a private redis-server per Redis server of the
    /// file (`private`), or use the file's own brokers (`as-is`).
    #[arg(long, value_enum, default_value_t = BrokerMode::Private)]
    pub brokers: BrokerMode,
    /// Files tested at once (each with its own ports and brokers).
    #[arg(short = 'j', long = "jobs", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also write the results as JUnit XML to this file.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write the current prediction into each file's expectations
    /// (`expect:`, or the sidecar when that is where they are).
    #[arg(long, conflicts_with_all = ["run", "junit"])]
    pub bless: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BrokerMode {
    #[default]
    Private,
    AsIs,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct TestOptions {
    pub run: bool,
    pub brokers: BrokerMode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every cell agrees.
    Pass,
    /// The file is invalid, or a cell differs, or a node was unreachable.
    Fail,
    /// The test could not be done (unreadable file, no redis-server, no
    /// port, interrupted): exit 2.
    Error,
}

/// Where a file's expectations are written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ExpectSource {
    Inline,
    Sidecar { path: String },
}

/// One (sender, receiver) pair of nodes with an HTTP server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cell {
    pub from: String,
    pub to: String,
    pub expected: u64,
    pub predicted: u64,
    /// How many more copies NATS queue groups may give this receiver
    /// (`one_of`); 0, and absent from JSON, outside queue groups.
    #[serde(skip_serializing_if = "is_zero")]
    pub maybe: u64,
    /// With --run: what the receiver's client got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Cell {
    pub fn differs(&self) -> bool {
        self.expected != self.predicted
            || self
                .observed
                .is_some_and(|o| !(self.expected..=self.expected + self.maybe).contains(&o))
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    pub file: String,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<ExpectSource>,
    /// Whether the topology was started and probed.
    pub ran: bool,
    /// Every cell, sorted by sender then receiver.
    pub cells: Vec<Cell>,
    /// What else went wrong, for people (diagnostics, unreachable nodes, errors).
    pub problems: Vec<String>,
    pub seconds: f64,
}

impl FileReport {
    fn new(file: &Path) -> FileReport {
        FileReport {
            file: file.display().to_string(),
            verdict: Verdict::Fail,
            expect: None,
            ran: false,
            cells: Vec::new(),
            problems: Vec::new(),
            seconds: 0.0,
        }
    }

    fn failed(mut self, verdict: Verdict, problem: impl Into<String>) -> FileReport {
        self.verdict = verdict;
        self.problems.push(problem.into());
        self
    }

    pub fn differences(&self) -> impl Iterator<Item = &Cell> {
        self.cells.iter().filter(|c| c.differs())
    }
}

/// A valid file and its expectations, if it has any.
pub struct Subject {
    pub checked: Checked,
    pub expect: Option<Located>,
}

impl Subject {
    pub fn valid(&self) -> &Valid {
        self.checked.valid.as_ref().expect("a subject is valid")
    }
}

pub struct Located {
    pub expectations: Expectations,
    pub source: ExpectSource,
}

/// Reads and checks `file` and its sidecar. An unreadable file is an
/// `Error`, an invalid one (or an invalid sidecar) a `Fail`.
pub fn load(file: &Path) -> Result<Subject, FileReport> {
    let report = FileReport::new(file);
    let checked = match check_file(file) {
        Ok(checked) => checked,
        Err(e) => return Err(report.failed(Verdict::Error, e.to_string())),
    };
    if checked.valid.is_none() {
        return Err(report.failed(Verdict::Fail, checked.render().trim_end()));
    }
    let sidecar = discover::sidecar_of(file);
    let mut expect = checked.expect.clone().map(|expectations| Located {
        expectations,
        source: ExpectSource::Inline,
    });
    if discover::has_sidecar(file) {
        if expect.is_some() {
            let problem = format!(
                "{}: has an `expect:` section and a sidecar {}: keep one of them",
                report.file,
                sidecar.display()
            );
            return Err(report.failed(Verdict::Fail, problem));
        }
        let valid = checked.valid.as_ref().expect("checked above");
        match load_sidecar(&sidecar, valid) {
            Ok(expectations) => {
                expect = Some(Located {
                    expectations,
                    source: ExpectSource::Sidecar {
                        path: sidecar.display().to_string(),
                    },
                })
            }
            Err((verdict, problem)) => return Err(report.failed(verdict, problem)),
        }
    }
    Ok(Subject { checked, expect })
}

/// Reads `NAME.expect.yaml`; its errors name the sidecar, not the topology.
fn load_sidecar(path: &Path, valid: &Valid) -> Result<Expectations, (Verdict, String)> {
    let name = path.display().to_string();
    let bytes =
        crate::config::read::read_topology(path).map_err(|e| (Verdict::Error, e.to_string()))?;
    let Ok(source) = String::from_utf8(bytes) else {
        return Err((
            Verdict::Fail,
            format!("{name}: the file is not valid UTF-8"),
        ));
    };
    load_sidecar_text(path, &source, valid).map_err(|e| (Verdict::Fail, e.to_string()))
}

/// A sidecar that does not decode or names what the topology lacks: its
/// diagnostics, rendered with the sidecar's name.
#[derive(Debug, thiserror::Error)]
#[error("{rendered}")]
pub struct InvalidSidecar {
    rendered: String,
}

/// Decodes a sidecar's text against the topology.
fn load_sidecar_text(
    path: &Path,
    source: &str,
    valid: &Valid,
) -> Result<Expectations, InvalidSidecar> {
    let name = path.display().to_string();
    let lines = Lines::new(source);
    let rendered = |diagnostics: &[Diagnostic]| {
        let text: String = diagnostics
            .iter()
            .map(|d| render(&name, &lines, d))
            .collect();
        InvalidSidecar {
            rendered: text.trim_end().to_owned(),
        }
    };
    let doc = yaml::parse(source).map_err(|e| rendered(&[Diagnostic::error(e.span, e.message)]))?;
    let env = |var: &str| std::env::var(var).ok();
    let mut decoder = Decoder::new(&env);
    let spec = decoder.sidecar(&doc);
    let mut diagnostics = decoder.diagnostics;
    let nodes: Vec<(&str, bool)> = valid
        .topology
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.http.is_some()))
        .collect();
    let resolved = spec.and_then(|s| resolve(&s, &nodes, &mut diagnostics));
    match resolved {
        Some(expectations) if diagnostics.iter().all(|d| !d.is_error()) => Ok(expectations),
        _ => Err(rendered(&diagnostics)),
    }
}

/// Every pair of nodes with an HTTP server, expectation beside prediction.
pub fn cells(valid: &Valid, expectations: &Expectations) -> Vec<Cell> {
    let topology = &valid.topology;
    let mut senders: Vec<_> = valid.analysis.deliveries.iter().map(|(n, _)| *n).collect();
    senders.sort_by(|a, b| topology.node(*a).name.cmp(&topology.node(*b).name));
    let mut out = Vec::with_capacity(senders.len() * senders.len());
    for &from in &senders {
        for &to in &senders {
            let (f, t) = (&topology.node(from).name, &topology.node(to).name);
            out.push(Cell {
                from: f.clone(),
                to: t.clone(),
                expected: expectations.count(f, t),
                predicted: valid.analysis.expected(from, to),
                maybe: crate::probe::maybe(valid, from, to),
                observed: None,
            });
        }
    }
    out
}

/// Why `--run` could not observe a topology.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Nats(#[from] nats::NatsServerError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Remap(#[from] RemapError),
    #[error("cannot start the topology: {0}")]
    Start(#[from] StartError),
    #[error("{0}")]
    LinksNotUp(#[from] crate::runtime::LinksNotUp),
    #[error("interrupted")]
    Interrupted,
}

impl RunError {
    fn verdict(&self) -> Verdict {
        match self {
            // The topology itself does not work as written.
            RunError::LinksNotUp(_) => Verdict::Fail,
            _ => Verdict::Error,
        }
    }
}

/// Tests one file: static comparison, and with `options.run` a real run.
pub async fn test_file(
    file: &Path,
    options: TestOptions,
    cancel: &CancellationToken,
) -> FileReport {
    let started = Instant::now();
    let mut report = match load(file) {
        Ok(subject) => compare(subject, options, cancel).await,
        Err(report) => report,
    };
    report.seconds = started.elapsed().as_secs_f64();
    report
}

async fn compare(subject: Subject, options: TestOptions, cancel: &CancellationToken) -> FileReport {
    let mut report = FileReport::new(Path::new(&subject.checked.file));
    let Some(located) = &subject.expect else {
        let problem = format!(
            "{}: no expectations: add an `expect:` section or {}, or write the prediction with `topo test --bless`",
            report.file,
            discover::sidecar_of(Path::new(&report.file)).display()
        );
        return report.failed(Verdict::Fail, problem);
    };
    report.expect = Some(located.source.clone());
    report.cells = cells(subject.valid(), &located.expectations);
    report.verdict = Verdict::Pass;
    let valid = subject.valid();
    let predicted = valid.analysis.one_of_by_name(&valid.topology);
    if predicted != located.expectations.one_of {
        report.verdict = Verdict::Fail;
        report.problems.push(format!(
            "one_of: expected {}, predicted {}",
            serde_json::json!(located.expectations.one_of),
            serde_json::json!(predicted)
        ));
    }
    if options.run {
        let outcome = timeout(FILE_LIMIT, observe(subject.valid(), options, cancel)).await;
        match outcome {
            Ok(Ok(probed)) => {
                report.ran = true;
                for cell in &mut report.cells {
                    cell.observed = Some(
                        probed
                            .cells
                            .iter()
                            .find(|c| c.from == cell.from && c.to == cell.to)
                            .map_or(0, |c| c.observed),
                    );
                }
                for c in probed.choice_differences() {
                    report.verdict = Verdict::Fail;
                    report.problems.push(format!(
                        "{} -> one of {{{}}}: observed {} copies, predicted {}",
                        c.from,
                        c.among.join(", "),
                        c.observed,
                        c.predicted
                    ));
                }
                for (node, why) in &probed.unreachable {
                    report.verdict = Verdict::Fail;
                    report
                        .problems
                        .push(format!("cannot reach node `{node}`: {why}"));
                }
            }
            Ok(Err(e)) => report = report.failed(e.verdict(), e.to_string()),
            Err(_) => {
                report = report.failed(
                    Verdict::Error,
                    format!("--run did not finish within {FILE_LIMIT:?}"),
                )
            }
        }
    }
    if report.verdict == Verdict::Pass && report.differences().next().is_some() {
        report.verdict = Verdict::Fail;
    }
    report
}

/// Starts the topology isolated (free ports, private brokers unless
/// `as-is`), probes it, and stops everything it started, also on `cancel`.
pub async fn observe(
    valid: &Valid,
    options: TestOptions,
    cancel: &CancellationToken,
) -> Result<ProbeReport, RunError> {
    let mut valid = valid.clone();
    let brokers = match options.brokers {
        BrokerMode::AsIs => PrivateBrokers::default(),
        BrokerMode::Private => tokio::select! {
            started = PrivateBrokers::start_for(&mut valid.topology) => started?,
            _ = cancel.cancelled() => return Err(RunError::Interrupted),
        },
    };
    let nats = match options.brokers {
        BrokerMode::AsIs => Ok(nats::PrivateNats::default()),
        BrokerMode::Private => tokio::select! {
            started = nats::PrivateNats::start_for(&mut valid.topology) => started.map_err(RunError::from),
            _ = cancel.cancelled() => Err(RunError::Interrupted),
        },
    };
    let nats = match nats {
        Ok(nats) => nats,
        Err(e) => {
            brokers.stop().await;
            return Err(e);
        }
    };
    let outcome = tokio::select! {
        outcome = run_and_probe(&mut valid, cancel) => outcome,
        _ = cancel.cancelled() => Err(RunError::Interrupted),
    };
    brokers.stop().await;
    nats.stop().await;
    outcome
}

async fn run_and_probe(
    valid: &mut Valid,
    cancel: &CancellationToken,
) -> Result<ProbeReport, RunError> {
    let mut attempt = 0;
    let running = loop {
        attempt += 1;
        remap(&mut valid.topology)?;
        match Running::start(&valid.topology).await {
            Ok(running) => break running,
            // A port drawn free was taken before the node bound it.
            Err(StartError::Bind { .. }) if attempt < BIND_ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let outcome = tokio::select! {
        outcome = probe_settled(&running, valid) => outcome,
        _ = cancel.cancelled() => Err(RunError::Interrupted),
    };
    running.shutdown().await;
    outcome
}

async fn probe_settled(running: &Running, valid: &Valid) -> Result<ProbeReport, RunError> {
    running.wait_links_up(LINKS_LIMIT).await?;
    let options = ProbeOptions {
        timeout: Duration::from_secs(3),
        settle: Duration::from_millis(250),
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let report = probe(valid, options).await;
        let missing = report.cells.iter().any(|c| c.observed < c.predicted);
        let extra = report.cells.iter().any(|c| c.observed > c.predicted);
        if !missing || extra || !report.unreachable.is_empty() || attempt == PROBE_ATTEMPTS {
            return Ok(report);
        }
    }
}

/// Tests `files`, `jobs` at a time, in the order given.
pub async fn test_files(
    files: &[PathBuf],
    options: TestOptions,
    jobs: usize,
    cancel: &CancellationToken,
) -> Vec<FileReport> {
    futures_util::stream::iter(files)
        .map(|file| test_file(file, options, cancel))
        .buffered(jobs.max(1))
        .collect()
        .await
}

/// What `topo test` found for every file, and whether Ctrl-C or SIGTERM
/// cut it short (the reports then cover what was done).
pub struct Tested {
    pub reports: Vec<FileReport>,
    pub interrupted: bool,
}

/// Tests `files` (from [`discover::discover`]) on a runtime of its own. On
/// Ctrl-C or SIGTERM it calls `interrupted` (the caller says so), stops the
/// nodes and brokers it started and returns.
pub fn test(files: &[PathBuf], args: &TestArgs, interrupted: impl FnOnce()) -> Tested {
    let options = TestOptions {
        run: args.run,
        brokers: args.brokers,
    };
    let runtime = crate::command::runtime();
    let cancel = CancellationToken::new();
    let (reports, interrupted) = runtime.block_on(async {
        let work = test_files(files, options, usize::from(args.jobs), &cancel);
        tokio::pin!(work);
        tokio::select! {
            reports = &mut work => (reports, false),
            _ = crate::command::shutdown_signal() => {
                interrupted();
                cancel.cancel();
                // Every file stops its nodes and brokers on `cancel`; the
                // limit only matters if one does not.
                let reports = timeout(Duration::from_secs(5), work).await.unwrap_or_default();
                (reports, true)
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    Tested {
        reports,
        interrupted,
    }
}
