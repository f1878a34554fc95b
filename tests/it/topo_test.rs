//! `topo test` as a CI job runs it: the binary, its output, its exit codes,
//! the files `--bless` writes, and that nothing it started outlives it.

use crate::util::{Ran, RedisServer, TestCommand, free_port, wait_until_blocking};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Runs `topo test ARGS` in `dir`; the last `.yaml` argument is the
/// topology a failure report shows.
fn topo_in(dir: &Path, args: &[&str]) -> Ran {
    let mut cmd = TestCommand::new();
    cmd.arg("test").args(args).current_dir(dir);
    if let Some(file) = args.iter().rev().find(|a| a.ends_with(".yaml")) {
        cmd.topology(file);
    }
    cmd.run()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// a -> b over ZeroMQ, and an expectation that also claims b -> a.
fn zmq_pair(http_a: u16, pub_a: u16, http_b: u16) -> String {
    format!(
        "# two nodes\nnodes:\n  a:\n    http: {http_a}\n    zmq: {{ pub: {pub_a} }}\n  b:\n    http: {http_b}  # b listens\n    zmq: {{ sub: [a] }}\nexpect:\n  deliveries:\n    a: {{ a: 1, b: 1 }}\n    b: {{ b: 1, a: 1 }}\n"
    )
}

#[test]
fn static_test_names_each_differing_cell_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "pair.yaml", &zmq_pair(8080, 5000, 8081));
    let out = topo_in(dir.path(), &["pair.yaml"]);
    let all = out.all();
    out.expect_code(1);
    assert!(
        all.contains("FAIL pair.yaml\n  b -> a: expected 1, predicted 0\n"),
        "{all}"
    );
    assert!(all.ends_with("0 passed, 1 failed\n"), "{all}");
}

#[test]
fn run_observes_on_free_ports_even_when_the_files_ports_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    // The file's own ports are busy, as with the demo running beside it.
    let held: Vec<_> = (0..3)
        .map(|_| std::net::TcpListener::bind(("127.0.0.1", free_port())).unwrap())
        .collect();
    let port = |i: usize| held[i].local_addr().unwrap().port();
    write(
        dir.path(),
        "pair.yaml",
        &zmq_pair(port(0), port(1), port(2)),
    );
    let junit = dir.path().join("junit.xml");
    let out = topo_in(
        dir.path(),
        &[
            "--run",
            "--format",
            "json",
            "--junit",
            junit.to_str().unwrap(),
            "pair.yaml",
        ],
    );
    let all = out.all();
    out.expect_code(1);
    let json: serde_json::Value = serde_json::from_slice(&out.output.stdout).expect(&all);
    let file = &json["files"][0];
    assert_eq!(file["ran"], true, "{all}");
    let cell = |from: &str, to: &str| {
        file["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["from"] == from && c["to"] == to)
            .cloned()
            .unwrap()
    };
    assert_eq!(cell("a", "b")["observed"], 1, "{all}");
    assert_eq!(cell("b", "a")["observed"], 0, "{all}");
    assert_eq!(cell("b", "a")["expected"], 1, "{all}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("failures=\"1\""), "{xml}");
    assert!(
        xml.contains("b -&gt; a: expected 1, predicted 0, observed 0"),
        "{xml}"
    );
}

#[test]
fn a_passing_run_exits_0_with_one_line_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let file =
        "nodes:\n  a: { http: 8080, zmq: { pub: 5000 } }\n  b: { http: 8081, zmq: { sub: [a] } }\n";
    write(dir.path(), "pair.yaml", file);
    write(
        dir.path(),
        "pair.expect.yaml",
        "deliveries:\n  a: { a: 1, b: 1 }\n  b: { b: 1 }\n",
    );
    write(dir.path(), "notes.yaml", "just: other yaml\n");
    let out = topo_in(dir.path(), &["--run", "."]);
    let all = out.all();
    out.expect_code(0);
    assert!(
        all.starts_with("PASS ./pair.yaml (4 cells predicted and observed, "),
        "{all}"
    );
    assert!(all.ends_with("1 passed, 0 failed\n"), "{all}");
}

#[test]
fn sidecar_errors_name_the_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.yaml", "nodes:\n  a: { http: 8080 }\n");
    write(
        dir.path(),
        "t.expect.yaml",
        "deliveries:\n  a: { a: 1, ghost: 1 }\n",
    );
    let out = topo_in(dir.path(), &["t.yaml"]);
    let all = out.all();
    out.expect_code(1);
    assert!(
        all.contains("t.expect.yaml:2:14: error: expected receiver `ghost` is not a node"),
        "{all}"
    );
    // Expectations in two places: neither wins silently.
    write(
        dir.path(),
        "t.yaml",
        "nodes:\n  a: { http: 8080 }\nexpect:\n  deliveries:\n    a: { a: 1 }\n",
    );
    let out = topo_in(dir.path(), &["t.yaml"]);
    let all = out.all();
    out.expect_code(1);
    assert!(
        all.contains("has an `expect:` section and a sidecar"),
        "{all}"
    );
}

#[test]
fn a_hostile_sidecar_is_bounded_and_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.yaml", "nodes:\n  a: { http: 8080 }\n");
    write(dir.path(), "t.expect.yaml", "deliveries:\n  a: { a: [1\n");
    let out = topo_in(dir.path(), &["t.yaml"]);
    let all = out.all();
    out.expect_code(1);
    assert!(
        all.contains("t.expect.yaml:2:11: error: unclosed bracket"),
        "{all}"
    );
    std::fs::write(dir.path().join("t.expect.yaml"), [0xff, 0xfe, b'\n']).unwrap();
    let all = topo_in(dir.path(), &["t.yaml"]).all();
    assert!(
        all.contains("t.expect.yaml: the file is not valid UTF-8"),
        "{all}"
    );
    // Over 8 MiB: refused while reading, never read whole.
    let big = std::fs::File::create(dir.path().join("t.expect.yaml")).unwrap();
    big.set_len(9 << 20).unwrap();
    let started = Instant::now();
    let out = topo_in(dir.path(), &["t.yaml"]);
    let all = out.all();
    out.expect_code(2);
    assert!(all.contains("t.expect.yaml: too large"), "{all}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = topo_in(dir.path(), &["missing.yaml"]);
    out.expect_code(2);
    let out = topo_in(dir.path(), &["."]);
    out.expect_code(2);
    assert!(out.all().contains("no topology file with expectations"));
}

#[test]
fn without_redis_server_on_path_the_error_names_it_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = "brokers:\n  main: { url: \"redis://127.0.0.1:6379\" }\nnodes:\n  a: { http: 8080, redis: { broker: main } }\nexpect:\n  deliveries:\n    a: { a: 1 }\n";
    write(dir.path(), "r.yaml", file);
    let empty = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = TestCommand::new()
        .args(["test", "--run", "r.yaml"])
        .current_dir(dir.path())
        .env("PATH", empty.path())
        .topology("r.yaml")
        .run();
    let all = out.all();
    out.expect_code(2);
    assert!(all.contains("ERROR r.yaml"), "{all}");
    assert!(
        all.contains("`redis-server` is not installed or not on PATH"),
        "{all}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn brokers_as_is_uses_the_files_redis_and_starts_none() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = format!(
        "brokers:\n  main: {{ url: \"{}\" }}\nnodes:\n  a: {{ http: 8080, redis: {{ broker: main }} }}\n  b: {{ http: 8081, redis: {{ broker: main }} }}\nexpect:\n  deliveries:\n    a: {{ a: 1, b: 1 }}\n    b: {{ a: 1, b: 1 }}\n",
        server.url()
    );
    write(dir.path(), "r.yaml", &file);
    // No redis-server on PATH: only the file's own broker can serve.
    let empty = tempfile::tempdir().unwrap();
    let out = TestCommand::new()
        .args(["test", "--run", "--brokers", "as-is", "r.yaml"])
        .current_dir(dir.path())
        .env("PATH", empty.path())
        .topology("r.yaml")
        .run();
    let all = out.all();
    out.expect_code(0);
    assert!(
        all.starts_with("PASS r.yaml (4 cells predicted and observed"),
        "{all}"
    );
    // The file's broker is down: an error naming the node and the broker, at once.
    let down = file.replace(&server.url(), &format!("redis://127.0.0.1:{}", free_port()));
    write(dir.path(), "r.yaml", &down);
    let started = Instant::now();
    let out = topo_in(dir.path(), &["--run", "--brokers", "as-is", "r.yaml"]);
    let all = out.all();
    out.expect_code(2);
    assert!(
        all.contains("node a: cannot reach redis redis://127.0.0.1:"),
        "{all}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn an_endpoint_outside_the_file_cannot_be_remapped() {
    let dir = tempfile::tempdir().unwrap();
    let file = format!(
        "nodes:\n  a: {{ http: 8080, zmq: {{ sub: [\"tcp://127.0.0.1:{}\"] }} }}\nexpect:\n  deliveries:\n    a: {{ a: 1 }}\n",
        free_port()
    );
    write(dir.path(), "x.yaml", &file);
    let out = topo_in(dir.path(), &["--run", "x.yaml"]);
    let all = out.all();
    out.expect_code(2);
    assert!(
        all.contains("which no node of this file binds: --run cannot move it"),
        "{all}"
    );
    // Statically the file is fine.
    topo_in(dir.path(), &["x.yaml"]).expect_code(0);
}

#[test]
fn bless_writes_only_the_section_and_keeps_comments() {
    let dir = tempfile::tempdir().unwrap();
    let head = "# my topology\nnodes:\n  a: { http: 8080, zmq: { pub: 5000 } }  # the source\n  b: { http: 8081, zmq: { sub: [a] } }\n";
    let path = write(dir.path(), "t.yaml", head);
    let out = topo_in(dir.path(), &["--bless", "t.yaml"]);
    out.expect_code(0);
    let blessed = std::fs::read_to_string(&path).unwrap();
    let section = "expect:\n  deliveries:\n    a: { a: 1, b: 1 }\n    b: { b: 1 }\n";
    assert_eq!(blessed, format!("{head}{section}"));
    topo_in(dir.path(), &["t.yaml"]).expect_code(0);
    assert!(
        topo_in(dir.path(), &["--bless", "t.yaml"])
            .all()
            .contains("unchanged t.yaml")
    );

    // A stale section in the middle (naming a node since renamed) is replaced in place.
    let stale = format!(
        "# my topology\nexpect:\n  deliveries:\n    old: {{ old: 1 }}\n# nodes follow\n{}",
        &head[14..]
    );
    std::fs::write(&path, &stale).unwrap();
    topo_in(dir.path(), &["t.yaml"]).expect_code(1);
    let out = topo_in(dir.path(), &["--bless", "t.yaml"]);
    out.expect_code(0);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("# my topology\n{section}# nodes follow\n{}", &head[14..])
    );

    // With a sidecar, only the sidecar changes.
    std::fs::write(&path, head).unwrap();
    let sidecar = write(
        dir.path(),
        "t.expect.yaml",
        "# reviewed by me\ndeliveries:\n  a: { a: 5 }\n",
    );
    let out = topo_in(dir.path(), &["--bless", "t.yaml"]);
    out.expect_code(0);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), head);
    assert_eq!(
        std::fs::read_to_string(&sidecar).unwrap(),
        "# reviewed by me\ndeliveries:\n  a: { a: 1, b: 1 }\n  b: { b: 1 }\n"
    );
}

#[test]
fn expect_changes_nothing_that_runs() {
    let plain =
        "nodes:\n  a: { http: 8080, zmq: { pub: 5000 } }\n  b: { http: 8081, zmq: { sub: [a] } }\n";
    let with = format!("{plain}expect:\n  deliveries:\n    a: {{ a: 1, b: 1 }}\n");
    let check = |text: &str| topo::check::check_str("t.yaml", "t", text.into(), &|_| None);
    let (a, b) = (check(plain), check(&with));
    assert!(b.expect.is_some() && a.expect.is_none());
    assert_eq!(a.valid.unwrap().topology, b.valid.unwrap().topology);
}

/// The pids of `parent`'s children running `name`.
fn children_named(parent: u32, name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let ppid = rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
        if comm.ends_with(&format!("({name}")) && ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .split_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

#[cfg(unix)]
#[test]
fn sigterm_stops_every_private_broker() {
    let dir = tempfile::tempdir().unwrap();
    let file = "brokers:\n  one: { url: \"redis://127.0.0.1:6379\" }\n  two: { url: \"redis://127.0.0.1:6380\" }\nnodes:\n  a: { http: 8080, redis: { broker: one } }\n  b: { http: 8081, redis: { broker: two } }\nexpect:\n  deliveries:\n    a: { a: 1 }\n    b: { b: 1 }\n";
    // Enough files, one at a time, that the run is still going when the signal comes.
    for i in 0..12 {
        write(dir.path(), &format!("t{i:02}.yaml"), file);
    }
    let mut run = TestCommand::new()
        .args(["test", "--run", "-j", "1", "."])
        .current_dir(dir.path())
        .spawn();
    let pid = run.pid();
    // The signal comes while a file's two private servers are running.
    let seen = wait_until_blocking("two private redis-servers", Duration::from_secs(20), || {
        let seen = children_named(pid, "redis-server");
        if seen.len() >= 2 { Ok(seen) } else { Err(seen) }
    });
    run.signal(libc::SIGTERM);
    let status = run.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{run}");
    let said = run.stdout() + &run.stderr();
    assert!(said.contains("interrupted"), "{run}");
    let alive: Vec<_> = seen.iter().filter(|p| !gone(**p)).collect();
    assert!(
        alive.is_empty(),
        "redis-servers outlived topo test: {alive:?}"
    );
}
