//! The whole static check of one file: read, parse, decode, compile, build
//! the graph, analyse. Its result is either a topology the runtime can trust
//! or the complete list of what is wrong, in file order.

use crate::config::compile::compile;
use crate::config::diagnostic::{Diagnostic, Lines};
use crate::config::expect::{Expectations, resolve as resolve_expect};
use crate::config::read::read_topology;
use crate::config::spec::Decoder;
use crate::config::spec::http_nodes;
use crate::config::yaml;
use crate::graph::analyze::{Analysis, analyze};
use crate::graph::build::build;
use crate::model::Topology;
use std::path::Path;

/// A file that passed every check.
#[derive(Clone, Debug)]
pub struct Valid {
    pub topology: Topology,
    pub analysis: Analysis,
}

#[derive(Clone, Debug)]
pub struct Checked {
    /// The file name as the user gave it, for messages.
    pub file: String,
    pub source: String,
    /// Errors and warnings, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
    /// Present exactly when there is no error.
    pub valid: Option<Valid>,
    /// The file's `expect:` section, when it has one without errors.
    pub expect: Option<Expectations>,
}

impl Checked {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| !d.is_error())
    }

    /// Every diagnostic rendered with its source line, as the CLI prints them.
    pub fn render(&self) -> String {
        let lines = Lines::new(&self.source);
        self.diagnostics
            .iter()
            .map(|d| crate::config::diagnostic::render(&self.file, &lines, d))
            .collect()
    }
}

pub use crate::config::read::ReadError;

/// Reads (bounded, see `config::read`) and checks `path`, with `${VAR}`
/// taken from the process environment.
pub fn check_file(path: &Path) -> Result<Checked, ReadError> {
    let file = path.display().to_string();
    let bytes = read_topology(path)?;
    let stem = path
        .file_stem()
        .map_or("topology".into(), |s| s.to_string_lossy().into_owned());
    let env = |name: &str| std::env::var(name).ok();
    // The bytes become the source without a copy (a copy is one more file
    // size at the peak of a large file's check).
    Ok(match String::from_utf8(bytes) {
        Ok(source) => check_str(&file, &stem, source, &env),
        Err(e) => check_bytes(&file, &stem, e.as_bytes(), &env),
    })
}

/// Checks a file's bytes. `stem` names the topology when the file does not.
pub fn check_bytes(
    file: &str,
    stem: &str,
    bytes: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
) -> Checked {
    let source = match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(e) => {
            let before = &bytes[..e.valid_up_to()];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&before[line_start..])
                .chars()
                .count()
                + 1;
            let span = yaml::Span::new(line as u32, column as u32);
            return Checked {
                file: file.to_owned(),
                source: String::from_utf8_lossy(bytes).into_owned(),
                diagnostics: vec![Diagnostic::error(span, "the file is not valid UTF-8")],
                valid: None,
                expect: None,
            };
        }
    };
    check_str(file, stem, source, env)
}

pub fn check_str(
    file: &str,
    stem: &str,
    source: String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Checked {
    let mut checked = Checked {
        file: file.to_owned(),
        source,
        diagnostics: Vec::new(),
        valid: None,
        expect: None,
    };
    let doc = match yaml::parse(&checked.source) {
        Ok(doc) => doc,
        Err(e) => {
            checked
                .diagnostics
                .push(Diagnostic::error(e.span, e.message));
            return checked;
        }
    };
    let mut decoder = Decoder::new(env);
    let spec = decoder.topology(&doc);
    checked.diagnostics = decoder.diagnostics;
    // Each stage's input is freed as soon as the next stage has what it
    // needs: the document (a value and a position per item, the largest of
    // all), then the spec, so that a large file's stages do not all stay
    // resident at once. `expect:` is resolved first for that reason; its
    // diagnostics still follow compile's, as before.
    let mut expect_diagnostics = Vec::new();
    if let Some(expect) = &spec.expect {
        let nodes = http_nodes(&spec, &doc);
        checked.expect = resolve_expect(expect, &nodes, &mut expect_diagnostics);
    }
    drop(doc);
    let base_dir = Path::new(file).parent().unwrap_or(Path::new(""));
    let (topology, diagnostics) = compile(&spec, stem, base_dir);
    drop(spec);
    checked.diagnostics.extend(diagnostics);
    checked.diagnostics.extend(expect_diagnostics);
    let topology = topology.filter(|_| checked.errors().next().is_none());
    if let Some(topology) = topology {
        let graph = build(&topology);
        let (analysis, diagnostics) = analyze(&topology, graph);
        checked.diagnostics.extend(diagnostics);
        if let Some(analysis) = analysis.filter(|_| checked.errors().next().is_none()) {
            checked.valid = Some(Valid { topology, analysis });
        }
    }
    checked.diagnostics.sort_by_key(|d| (d.span, d.severity));
    checked
}

/// SPEC's `validate --format json` object.
pub fn validation_json(checked: &Checked) -> serde_json::Value {
    let entries = |errors: bool| -> Vec<serde_json::Value> {
        checked
            .diagnostics
            .iter()
            .filter(|d| d.is_error() == errors)
            .map(|d| serde_json::json!({"line": d.span.line, "column": d.span.column, "message": d.message}))
            .collect()
    };
    let mut object = serde_json::json!({
        "file": checked.file,
        "valid": checked.valid.is_some(),
        "errors": entries(true),
        "warnings": entries(false),
    });
    if let Some(valid) = &checked.valid {
        object["reach"] = serde_json::json!(valid.analysis.reach_by_name(&valid.topology));
        object["deliveries"] =
            serde_json::json!(valid.analysis.deliveries_by_name(&valid.topology));
        // Durable subscribers (a named AMQP queue): node → queue; only when there are any.
        let durable: serde_json::Map<String, serde_json::Value> = valid
            .topology
            .nodes
            .iter()
            .filter_map(|n| Some((n.name.clone(), n.amqp.as_ref()?.queue.clone()?.into())))
            .collect();
        if !durable.is_empty() {
            object["durable"] = serde_json::Value::Object(durable);
        }
        // Only when a NATS queue group is reached: every other file's object
        // stays as it was, key for key.
        let one_of = valid.analysis.one_of_by_name(&valid.topology);
        if !one_of.is_empty() {
            object["one_of"] = serde_json::json!(one_of);
        }
    }
    object
}
