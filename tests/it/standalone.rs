//! The repository as a new user meets it: nothing outside it is needed,
//! `topo import` turns the chapter's command lines into topologies that
//! predict what those lines start, and the binary's extras (version with
//! commit, completions, man page, logs without colour off a terminal).

use crate::util::{Ran, TestCommand, free_port};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Runs `topo ARGS` in the crate root with `stdin` (empty if `None`) on
/// a pipe.
fn topo(args: &[&str], stdin: Option<&str>) -> Ran {
    TestCommand::new()
        .args(args)
        .stdin(stdin.unwrap_or(""))
        .run()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The tracked files of the checkout (or, in a copy without git, every
/// file outside build output and installed packages).
fn project_files() -> Vec<PathBuf> {
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(ROOT)
        .output();
    if let Ok(out) = listed
        && out.status.success()
    {
        return out
            .stdout
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| Path::new(ROOT).join(String::from_utf8_lossy(p).as_ref()))
            .filter(|p| p.is_file())
            .collect();
    }
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if matches!(
                name.to_str(),
                Some("target" | "node_modules" | ".git" | "artifacts")
            ) {
                continue;
            }
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new(ROOT), &mut out);
    out
}

#[test]
fn no_file_of_the_project_refers_to_the_shared_folder_beside_it() {
    // Spelled in pieces so that this file does not match itself.
    let needles = [
        ["..", "/shared"].concat(),
        ["shared", "/peers"].concat(),
        ["CRATES", ".md"].concat(),
        ["SPEC", ".md"].concat(),
        ["node", "-seed"].concat(),
    ];
    let files = project_files();
    assert!(files.len() > 50, "only {} files found", files.len());
    let mut hits = Vec::new();
    for file in &files {
        let Ok(bytes) = std::fs::read(file) else {
            continue;
        };
        let content = String::from_utf8_lossy(&bytes);
        for (n, line) in content.lines().enumerate() {
            if needles.iter().any(|needle| line.contains(needle.as_str())) {
                hits.push(format!("{}:{}: {line}", file.display(), n + 1));
            }
        }
    }
    assert!(hits.is_empty(), "outside references:\n{}", hits.join("\n"));
}

/// `validate --format json` of a file, with node names mapped through
/// `rename` (imported nodes are named by port, the examples by letter).
fn prediction(
    file: &Path,
    rename: &dyn Fn(&str) -> String,
) -> (serde_json::Value, serde_json::Value) {
    let out = topo(
        &["validate", "--format", "json", file.to_str().unwrap()],
        None,
    );
    out.expect_code(0);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rename_all = |v: &serde_json::Value| -> serde_json::Value {
        let mut text = v.to_string();
        for name in v.as_object().unwrap().keys() {
            text = text.replace(&format!("\"{name}\""), &format!("\"{}\"", rename(name)));
        }
        serde_json::from_str(&text).unwrap()
    };
    (
        rename_all(&value["reach"]),
        rename_all(&value["deliveries"]),
    )
}

/// Imports `lines` and checks that the file predicts what `example` does.
fn imports_like(lines: &str, args: &[&str], example: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("chapter.sh");
    std::fs::write(&input, lines).unwrap();
    let mut all = vec!["import"];
    all.extend_from_slice(args);
    all.push(input.to_str().unwrap());
    let out = topo(&all, None);
    out.expect_code(0);
    let yaml = text(&out.stdout);
    assert!(
        yaml.starts_with("# yaml-language-server: $schema="),
        "{yaml}"
    );
    let imported = dir.path().join("imported.yaml");
    std::fs::write(&imported, &yaml).unwrap();
    let by_port = |name: &str| match name {
        "a" | "n8080" | "web1" => "8080".to_owned(),
        "b" | "n8081" | "web2" => "8081".to_owned(),
        "c" | "n8082" | "web3" => "8082".to_owned(),
        other => panic!("unexpected node {other}"),
    };
    let expected = prediction(&Path::new(ROOT).join(example), &by_port);
    assert_eq!(prediction(&imported, &by_port), expected, "{yaml}");
    yaml
}

const ZMQ_LINES: &str = "node app --http 8080 --pub 5000 --sub 5001 --sub 5002
node app --http 8081 --pub 5001 --sub 5000 --sub 5002
node app --http 8082 --pub 5002 --sub 5000 --sub 5001
";

#[test]
fn import_of_the_chapters_zmq_lines_predicts_what_zmq_3node_does() {
    let yaml = imports_like(ZMQ_LINES, &[], "topologies/zmq-3node.yaml");
    assert!(
        yaml.contains(
            "chapter.sh:2: node app --http 8081 --pub 5001 --sub 5000 --sub 5002\n  n8081:\n"
        ),
        "{yaml}"
    );
    assert!(yaml.contains("sub: [n8080, n8082]"), "{yaml}");
}

#[test]
fn import_of_the_chapters_redis_lines_predicts_what_redis_3node_does() {
    let lines = "node app 8080\nnode app 8081\nnode app 8082\n";
    let yaml = imports_like(lines, &["--bare", "redis"], "topologies/redis-3node.yaml");
    assert!(yaml.contains("publish: chat_messages"), "{yaml}");
}

#[test]
fn import_reads_a_procfile_and_a_shell_script_of_the_same_lines() {
    let procfile: String = ZMQ_LINES
        .lines()
        .enumerate()
        .map(|(i, l)| format!("web{}: {l}\n", i + 1))
        .collect();
    let yaml = imports_like(&procfile, &[], "topologies/zmq-3node.yaml");
    assert!(yaml.contains("  web3:\n"), "{yaml}");
    let script = format!(
        "#!/usr/bin/env bash\nset -e\n{}wait\n",
        ZMQ_LINES
            .lines()
            .map(|l| format!("exec node app.js \\\n  {} > /tmp/log 2>&1 &\n", &l[9..]))
            .collect::<String>()
    );
    imports_like(&script, &[], "topologies/zmq-3node.yaml");
}

#[test]
fn import_from_stdin_with_a_sub_nobody_binds_keeps_the_endpoint_and_warns() {
    let out = topo(
        &["import", "-"],
        Some("node app --http 8080 --pub 5000 --sub 5009\n"),
    );
    out.expect_code(0);
    assert!(
        text(&out.stdout).contains("sub: [\"tcp://127.0.0.1:5009\"]"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn import_errors_name_their_line_and_column_and_write_nothing() {
    for (input, args, expected) in [
        (
            "node app --http 8080 --pub 5000\nnode app --http 8081 --pbu 5001\n",
            &[][..],
            "stdin:2:22: error: unknown flag --pbu",
        ),
        (
            "node app 8080\n",
            &[][..],
            "stdin:1:6: error: `node app PORT`",
        ),
        (
            "\n\npython app.py\n",
            &[][..],
            "stdin:3:1: error: expected `node`",
        ),
        (
            "node app --http $PORT --pub 5000\n",
            &[][..],
            "stdin:1:17: error: a `$` expansion",
        ),
        (
            "node app 8080\nnode app 8080\n",
            &["--bare", "single"][..],
            "stdin:2:1: error: node `n8080` again (first on line 1)",
        ),
    ] {
        let mut all = vec!["import"];
        all.extend_from_slice(args);
        all.push("-");
        let out = topo(&all, Some(input));
        assert_eq!(out.status.code(), Some(1), "{input}");
        assert!(out.stdout.is_empty(), "{input}: {}", text(&out.stdout));
        assert!(
            text(&out.stderr).contains(expected),
            "{input}: {}",
            text(&out.stderr)
        );
    }
    let out = topo(&["import", "no/such/file"], None);
    out.expect_code(2);
    assert!(text(&out.stderr).contains("no/such/file: cannot read"));
}

#[test]
fn import_refuses_a_huge_input_before_reading_it_whole() {
    let line = "node app 8080\n".repeat(80_000);
    let out = topo(&["import", "-"], Some(&line));
    out.expect_code(2);
    assert!(
        text(&out.stderr).contains("larger than"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn version_names_the_commit() {
    let out = topo(&["--version"], None);
    out.expect_code(0);
    let version = text(&out.stdout);
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(ROOT)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".to_owned(), |o| text(&o.stdout).trim().to_owned());
    assert_eq!(
        version.trim(),
        format!("topo {} (commit {head})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn completions_and_man_page_come_from_the_command_definitions() {
    for (shell, marker) in [
        ("bash", "_topo()"),
        ("zsh", "#compdef topo"),
        ("fish", "complete -c topo"),
    ] {
        let out = topo(&["completions", shell], None);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("import"),
            "{shell} lacks the import command"
        );
    }
    let out = topo(&["completions", "tcsh"], None);
    out.expect_code(2);
    let out = topo(&["man"], None);
    out.expect_code(0);
    let page = text(&out.stdout);
    assert!(page.contains(".TH topo 1"), "{page}");
    assert!(page.contains("validate"), "{page}");
}

/// `topo up` of a one-node file with stderr into a file, stopped by
/// SIGTERM once it printed its ready table: the log it wrote.
fn up_log(extra: &[&str], env: &[(&str, &str)]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.yaml");
    std::fs::write(&file, format!("nodes:\n  a:\n    http: {}\n", free_port())).unwrap();
    let mut cmd = TestCommand::new();
    cmd.arg("up")
        .arg(&file)
        .arg("--no-admin")
        .args(extra)
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .topology(&file);
    for (key, value) in env {
        cmd.env(key, value);
    }
    // stderr is a pipe, not a terminal, as a file is.
    let mut up = cmd.spawn();
    up.wait_stdout_blocking("ready", Duration::from_secs(20));
    up.signal(libc::SIGTERM);
    let status = up.wait_exit(Duration::from_secs(10));
    let log = up.stderr();
    assert!(log.contains("INFO"), "{up}");
    // SIGTERM right after the ready line is a clean stop, not a kill.
    assert!(status.success(), "{status}: {up}");
    log.into_bytes()
}

#[test]
fn logs_written_to_a_file_hold_no_escape_sequences() {
    for extra in [&[][..], &["--process"][..]] {
        let log = up_log(extra, &[]);
        assert!(!log.contains(&0x1b), "{extra:?}: {}", text(&log));
    }
    // The same run told to colour does colour: the check above can fail.
    let log = up_log(&[], &[("CLICOLOR_FORCE", "1")]);
    assert!(log.contains(&0x1b), "{}", text(&log));
    let log = up_log(&[], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    assert!(!log.contains(&0x1b), "NO_COLOR wins: {}", text(&log));
}
