//! `topo validate` and `topo graph`: a checked file rendered as text,
//! JSON, DOT or Mermaid.

use super::GraphFormat;
use super::exit::{EXIT_INVALID, EXIT_OK, EXIT_USAGE, Exit};
use std::fmt::Write;
use std::path::PathBuf;
use topo::check::{Checked, check_file, validation_json};
use topo::command::Format;
use topo::graph::render;

pub(super) fn validate(files: &[PathBuf], format: Format) -> Exit {
    let mut code = EXIT_OK;
    // `run` has already raised the soft limit: this reads it, once.
    let limit = topo::runtime::fds::raise_limit();
    for path in files {
        let checked = match check_file(path) {
            Ok(checked) => checked,
            Err(error) => {
                eoutln!("{error}");
                code = EXIT_USAGE;
                continue;
            }
        };
        if checked.valid.is_none() && code == EXIT_OK {
            code = EXIT_INVALID;
        }
        let fds = checked
            .valid
            .as_ref()
            .map(|v| (topo::runtime::fds::needed(&v.topology), limit));
        match format {
            Format::Json => {
                let mut object = validation_json(&checked);
                if let Some((needed, limit)) = fds {
                    object["descriptors"] = serde_json::json!({"needed": needed, "limit": limit});
                }
                outln!("{object}");
            }
            Format::Text => {
                eout!("{}", checked.render());
                out!("{}", summary(&checked));
                if let Some((needed, limit)) = fds {
                    out!("{}", descriptors_line(needed, limit));
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
    let durable = durable_nodes(topology);
    if !durable.is_empty() {
        let listed: Vec<String> = durable
            .iter()
            .map(|(node, queue)| format!("{node} (queue {queue})"))
            .collect();
        let _ = writeln!(
            out,
            "durable: {} (what is sent while such a node is down or has no client waits in its queue)",
            listed.join(", ")
        );
    }
    // File order, as written: `n2` before `n10`. Only the rows shown below.
    let senders = analysis.deliveries.len();
    let shown = if senders <= 12 { senders } else { 20 };
    let deliveries = analysis.first_deliveries_in_file_order(topology, shown);
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
        let one_of = analysis.one_of_by_name(topology);
        for (from, row) in &deliveries {
            let _ = write!(out, "  {from:width$}");
            let chosen = one_of.get(from).map(Vec::as_slice).unwrap_or_default();
            for to in &names {
                let definite = row.iter().find(|(name, _)| name == *to).map(|(_, n)| *n);
                let maybe = chosen.iter().any(|c| c.among.contains(to));
                let cell = match (definite, maybe) {
                    (Some(n), false) => n.to_string(),
                    (Some(n), true) => format!("{n}+?"),
                    (None, true) => "?".to_owned(),
                    (None, false) => "·".to_owned(),
                };
                let _ = write!(out, " {cell:>width$}");
            }
            out.push('\n');
        }
    } else {
        out.push_str("reach (sender -> receiving nodes)\n");
        for (from, row) in &deliveries {
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
        if senders > shown {
            let _ = writeln!(
                out,
                "  … and {} more senders (use --format json)",
                senders - shown
            );
        }
    }
    out.push_str(&one_of_lines(&analysis.one_of_by_name(topology)));
    out
}

/// The queue groups under the matrix: what its `?` cells mean.
fn one_of_lines(
    one_of: &std::collections::BTreeMap<String, Vec<topo::graph::analyze::OneOf>>,
) -> String {
    let mut out = String::new();
    if one_of.is_empty() {
        return out;
    }
    out.push_str(
        "?: NATS queue groups, each copy to exactly one member
",
    );
    for (from, list) in one_of {
        for choice in list {
            let among = choice.among.join(", ");
            let _ = match choice.count {
                1 => writeln!(out, "  {from} -> exactly one of {{{among}}}"),
                n => writeln!(
                    out,
                    "  {from} -> {n} copies, each to exactly one of {{{among}}}"
                ),
            };
        }
    }
    out
}

/// Nodes with a named AMQP queue, in file order, with their queue.
fn durable_nodes(topology: &topo::model::Topology) -> Vec<(&str, &str)> {
    topology
        .nodes
        .iter()
        .filter_map(|n| Some((n.name.as_str(), n.amqp.as_ref()?.queue.as_deref()?)))
        .collect()
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub(super) fn graph(file: &std::path::Path, format: GraphFormat) -> Exit {
    let checked = match check_file(file) {
        Ok(checked) => checked,
        Err(error) => {
            eoutln!("{error}");
            return EXIT_USAGE;
        }
    };
    eout!("{}", checked.render());
    let Some(valid) = &checked.valid else {
        return EXIT_INVALID;
    };
    let (topology, graph) = (&valid.topology, &valid.analysis.graph);
    match format {
        GraphFormat::Dot => out!("{}", render::dot(topology, graph)),
        GraphFormat::Mermaid => out!("{}", render::mermaid(topology, graph)),
        GraphFormat::Json => outln!("{}", render::json(topology, graph)),
    }
    EXIT_OK
}
