//! The binary as a user runs it: exit codes, JSON shape, text output.

use crate::util::{Ran, TestCommand};
use std::path::PathBuf;

/// Runs `topo ARGS` in the crate root; the last `.yaml` argument is the
/// topology a failure report shows.
fn topo(args: &[&str]) -> Ran {
    let mut cmd = TestCommand::new();
    cmd.args(args);
    if let Some(file) = args.iter().rev().find(|a| a.ends_with(".yaml")) {
        cmd.topology(file);
    }
    cmd.run()
}

fn stdout(ran: &Ran) -> String {
    ran.stdout()
}

fn stderr(ran: &Ran) -> String {
    ran.stderr()
}

#[test]
fn validate_valid_file_exits_0_with_a_reach_table() {
    let out = topo(&["validate", "topologies/zmq-3node.yaml"]);
    out.expect_code(0);
    let text = stdout(&out);
    assert!(
        text.contains("topologies/zmq-3node.yaml: valid (3 nodes, 6 links)"),
        "{text}"
    );
    assert!(text.contains("  a     1   1   1"), "{text}");
}

#[test]
fn validate_json_has_exactly_the_spec_shape() {
    let out = topo(&["validate", "--format", "json", "topologies/zmq-3node.yaml"]);
    out.expect_code(0);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "one object on one line");
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "file",
            "valid",
            "errors",
            "warnings",
            "reach",
            "deliveries",
            "descriptors"
        ]
    );
    assert_eq!(value["file"], "topologies/zmq-3node.yaml");
    assert_eq!(value["reach"]["b"], serde_json::json!(["a", "b", "c"]));
    assert_eq!(
        value["deliveries"]["c"],
        serde_json::json!({"a": 1, "b": 1, "c": 1})
    );
}

#[test]
fn invalid_file_exits_1_with_positions_and_a_caret() {
    let out = topo(&["validate", "tests/errors/unknown-key-typo.yaml"]);
    out.expect_code(1);
    let err = stderr(&out);
    assert!(
        err.starts_with("tests/errors/unknown-key-typo.yaml:4:5: error: unknown key `hhtp` in a node; did you mean `http`?\n"),
        "{err}"
    );
    assert!(err.contains("4 |     hhtp: 8080\n  |     ^\n"), "{err}");
    let out = topo(&[
        "validate",
        "--format",
        "json",
        "tests/errors/unknown-key-typo.yaml",
    ]);
    out.expect_code(1);
    let value: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(value["valid"], false);
    assert_eq!(value["errors"][0]["line"], 4);
    assert_eq!(value["errors"][0]["column"], 5);
    assert!(value.get("reach").is_none() && value.get("deliveries").is_none());
}

#[test]
fn unreadable_file_and_bad_usage_exit_2() {
    let out = topo(&["validate", "no/such/file.yaml"]);
    out.expect_code(2);
    out.stderr_has("no/such/file.yaml: cannot read");
    topo(&["validate"]).expect_code(2);
    topo(&["validate", "--format", "xml", "topologies/single.yaml"]).expect_code(2);
    // A readable file and an unreadable one: the unreadable one decides.
    let out = topo(&["validate", "topologies/single.yaml", "missing.yaml"]);
    out.expect_code(2);
}

#[test]
fn several_files_are_all_checked() {
    let out = topo(&[
        "validate",
        "topologies/single.yaml",
        "tests/errors/sub-self.yaml",
    ]);
    out.expect_code(1);
    out.stdout_has("topologies/single.yaml: valid");
    out.stderr_has("sub-self.yaml:4:29: error");
}

#[test]
fn warnings_do_not_fail_validation() {
    let out = topo(&[
        "validate",
        "tests/golden/redis-pattern-duplicate/topology.yaml",
    ]);
    out.expect_code(0);
    out.stderr_has(":12:3: warning: duplicate delivery");
}

#[test]
fn graph_formats() {
    let dot = topo(&["graph", "topologies/hybrid-bridge.yaml"]);
    dot.expect_code(0);
    let dot = stdout(&dot);
    assert!(dot.starts_with("digraph \"hybrid-bridge\" {"), "{dot}");
    assert!(
        dot.contains("shape=cylinder"),
        "brokers drawn as cylinders: {dot}"
    );
    assert!(
        dot.contains("\"zmq-in\" [label=\"zmq-in (relay)\", shape=diamond"),
        "{dot}"
    );
    assert!(dot.contains("\"z1\" -> \"z2\" [label=\"chat\""), "{dot}");
    let mermaid = stdout(&topo(&[
        "graph",
        "--format",
        "mermaid",
        "topologies/zmq-3node.yaml",
    ]));
    assert!(mermaid.starts_with("flowchart LR\n"));
    assert_eq!(mermaid.matches("-->|\"chat\"|").count(), 6, "{mermaid}");
    let json = stdout(&topo(&[
        "graph",
        "--format",
        "json",
        "topologies/redis-3node.yaml",
    ]));
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["links"].as_array().unwrap().len(), 6);
    assert_eq!(value["brokers"][0]["url"], "redis://127.0.0.1:6379");
    topo(&["graph", "tests/errors/sub-self.yaml"]).expect_code(1);
}

#[test]
fn passwords_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret.yaml");
    std::fs::write(
        &file,
        "brokers:\n  main: { url: \"redis://user:hunter2@127.0.0.1:6379\" }\nnodes:\n  a:\n    http: 8080\n    redis: { broker: main }\n  b:\n    redis: { broker: \"redis://:hunter2@127.0.0.1:6379/3\" }\n    relay: nope\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    for args in [
        vec!["validate", file],
        vec!["validate", "--format", "json", file],
        vec!["graph", file],
    ] {
        let out = topo(&args);
        let all = stdout(&out) + &stderr(&out);
        assert!(
            !all.contains("hunter2"),
            "{args:?} printed the password:\n{all}"
        );
    }
    std::fs::write(
        dir.path().join("ok.yaml"),
        "brokers:\n  main: { url: \"redis://user:hunter2@127.0.0.1:6379\" }\nnodes:\n  a:\n    http: 8080\n    redis: { broker: main }\n",
    )
    .unwrap();
    let ok = dir.path().join("ok.yaml");
    for format in ["dot", "mermaid", "json"] {
        let out = topo(&["graph", "--format", format, ok.to_str().unwrap()]);
        out.expect_code(0);
        let text = stdout(&out);
        assert!(
            !text.contains("hunter2") && text.contains("user:***@"),
            "{format}: {text}"
        );
    }
}

#[test]
fn committed_schema_is_what_the_code_generates() {
    let committed = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/topology.schema.json"),
    )
    .unwrap();
    let generated = TestCommand::new().arg("schema").stdout();
    assert!(
        committed == generated,
        "schemas/topology.schema.json is stale: run `cargo run -- schema > schemas/topology.schema.json`"
    );
}

#[test]
fn every_example_points_editors_at_the_schema() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for dir in ["topologies"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with(
                    "# yaml-language-server: $schema=../schemas/topology.schema.json\n"
                ),
                "{} lacks the schema line",
                path.display()
            );
        }
    }
}

#[test]
fn oversized_files_and_alias_bombs_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    let mut text = String::from("nodes:\n  a: {}\n");
    text.push_str(
        &"# padding padding padding padding padding padding padding padding\n".repeat(140_000),
    );
    std::fs::write(&big, text).unwrap();
    let out = topo(&["validate", big.to_str().unwrap()]);
    out.expect_code(2);
    out.stderr_has("limited to 8 MiB");

    let bomb = dir.path().join("bomb.yaml");
    let mut text = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    let mut previous = 'a';
    for name in 'b'..='i' {
        text.push_str(&format!(
            "{name}: &{name} [{}]\n",
            vec![format!("*{previous}"); 9].join(", ")
        ));
        previous = name;
    }
    std::fs::write(&bomb, text).unwrap();
    let out = topo(&["validate", bomb.to_str().unwrap()]);
    out.expect_code(1);
    out.stderr_has("billion laughs");
}

/// A ring of `n` nodes `n0..`: each subscribes to the one before it.
pub fn ring_yaml(n: usize, http: impl Fn(usize) -> u16, zmq: impl Fn(usize) -> u16) -> String {
    let mut yaml = String::from("nodes:\n");
    for i in 0..n {
        let before = (i + n - 1) % n;
        yaml.push_str(&format!(
            "  n{i}: {{ http: {}, zmq: {{ pub: {}, sub: [n{before}] }} }}\n",
            http(i),
            zmq(i)
        ));
    }
    yaml
}

#[test]
fn validate_orders_names_as_written_n2_before_n10() {
    let dir = tempfile::tempdir().unwrap();
    for (n, marker) in [(11, "deliveries per message"), (13, "reach (sender")] {
        let file = dir.path().join(format!("ring{n}.yaml"));
        std::fs::write(
            &file,
            ring_yaml(n, |i| 8100 + i as u16, |i| 5100 + i as u16),
        )
        .unwrap();
        let out = topo(&["validate", file.to_str().unwrap()]);
        out.expect_code(0);
        let text = stdout(&out);
        assert!(text.contains(marker), "{text}");
        let senders: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("  n"))
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        let expected: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        assert_eq!(senders, expected, "{text}");
    }
}

#[test]
fn a_failed_expectation_reports_the_command_the_topology_and_the_output() {
    let file = "tests/errors/sub-self.yaml";
    let text =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    let ran = topo(&["validate", file]);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ran.expect_code(0);
    }))
    .expect_err("exit code 1 passed for 0");
    let report = caught
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(report.contains("expected exit code 0"), "{report}");
    assert!(report.contains("\"validate\""), "{report}");
    assert!(
        report.contains(&format!("--- topology {file} ---\n{text}")),
        "{report}"
    );
    assert!(report.contains("sub-self.yaml:4:29: error"), "{report}");
    assert!(report.contains("--- stdout ---"), "{report}");
}
