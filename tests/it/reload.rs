//! Hot reload through the real binary: `topo up FILE` on free ports and a
//! private redis-server, the file edited the way editors and Kubernetes do
//! it, observed through the admin server's generation, real WebSocket
//! clients and `topo::probe`.

use crate::chat::{Client, LIMIT, http_get};
use crate::util::{RedisServer, Spawned, TestCommand, free_port, wait_until};
use std::path::{Path, PathBuf};
use std::time::Duration;
use topo::check::{Valid, check_file};
use topo::probe::{ProbeOptions, probe};

/// A `topo up` process of this test's own (the [`TestCommand`] harness:
/// killed on drop, its output kept for the failure report).
pub struct Up {
    pub process: Spawned,
    pub admin: u16,
}

impl Up {
    pub fn start(file: &Path, extra: &[&str]) -> Up {
        let admin = free_port();
        let process = TestCommand::new()
            .arg("up")
            .arg(file)
            .args(["--admin", &format!("127.0.0.1:{admin}")])
            .args(extra)
            .env("RUST_LOG", "info")
            .topology(file)
            .spawn();
        Up { process, admin }
    }

    /// stderr so far: the log.
    pub fn log(&self) -> String {
        self.process.stderr()
    }

    /// Waits until the log contains `text` `times` times.
    pub async fn wait_log(&self, text: &str, times: usize) {
        self.process.wait_stderr(text, times, LIMIT).await
    }

    /// The admin server's generation (`None` until it answers).
    pub async fn generation(&self) -> Option<u64> {
        let addr = ([127, 0, 0, 1], self.admin).into();
        topo::admin::fetch(addr).await.ok().map(|a| a.generation)
    }

    pub async fn wait_generation(&self, generation: u64) {
        wait_until(
            &format!("generation {generation} applied"),
            LIMIT,
            || async {
                match self.generation().await {
                    Some(g) if g == generation => Ok(()),
                    _ => Err(self.process.to_string()),
                }
            },
        )
        .await
    }
}

/// Writes `text` next to `file` and renames it over (an editor's atomic save).
pub fn save(file: &Path, text: &str) {
    let tmp = file.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// The probe agrees with the file's prediction (repeated while only
/// missing messages, for ZeroMQ's slow joiner).
pub async fn probe_agrees(file: &Path) {
    let valid: Valid = check_file(file).unwrap().valid.expect("a valid file");
    let options = ProbeOptions {
        timeout: Duration::from_secs(3),
        settle: Duration::from_millis(150),
    };
    let mut last = String::new();
    for _ in 0..4 {
        let report = probe(&valid, options).await;
        if report.agrees() {
            return;
        }
        last = report.to_text();
        if report.cells.iter().any(|c| c.observed > c.predicted) {
            break;
        }
    }
    panic!("{}: observed != predicted\n{last}", file.display());
}

struct Ports {
    a: u16,
    b: u16,
    c: u16,
    r: u16,
    pub_a: u16,
    pub_b: u16,
    pub_b2: u16,
    pub_c: u16,
}

impl Ports {
    fn new() -> Ports {
        Ports {
            a: free_port(),
            b: free_port(),
            c: free_port(),
            r: free_port(),
            pub_a: free_port(),
            pub_b: free_port(),
            pub_b2: free_port(),
            pub_c: free_port(),
        }
    }
}

/// Ten files that move things around node `a` (whose own address never
/// changes): a node comes and goes, subscriptions and channels move, a
/// relay switches, a publisher moves to another port.
fn variant(i: usize, p: &Ports, redis: &str) -> String {
    let sub_a = if i.is_multiple_of(2) { "[b]" } else { "[b, c]" };
    let c = if i % 2 == 1 {
        format!(
            "  c: {{ http: {}, zmq: {{ pub: {}, sub: [a] }} }}\n",
            p.c, p.pub_c
        )
    } else {
        String::new()
    };
    let channel = if i.is_multiple_of(3) { "chat" } else { "room" };
    let pub_b = if i % 4 < 2 { p.pub_b } else { p.pub_b2 };
    let relay = if i % 5 == 4 { "true" } else { "false" };
    let topic = if i == 7 { "chatty" } else { "chat" };
    format!(
        "# generation {i}
brokers:
  main: {{ url: \"{redis}\" }}
nodes:
  a: {{ http: {}, zmq: {{ pub: {}, sub: {sub_a}, topic: {topic} }} }}
  b:
    http: {}
    relay: {relay}
    zmq: {{ pub: {pub_b}, sub: [a] }}
    redis: {{ broker: main, publish: {channel}, subscribe: [{channel}] }}
  r: {{ http: {}, redis: {{ broker: main, publish: {channel}, subscribe: [{channel}] }} }}
{c}",
        p.a, p.pub_a, p.b, p.r
    )
}

fn temp_file(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("topo.yaml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stays_connected_through_ten_reloads_and_probe_agrees_after_each() {
    let redis = RedisServer::start();
    let ports = Ports::new();
    let dir = tempfile::tempdir().unwrap();
    let file = temp_file(&dir);
    std::fs::write(&file, variant(0, &ports, &redis.url())).unwrap();
    let up = Up::start(&file, &[]);
    up.wait_generation(0).await;
    probe_agrees(&file).await;
    let mut client = Client::connect(ports.a).await;
    for i in 1..=10 {
        save(&file, &variant(i, &ports, &redis.url()));
        up.wait_generation(i as u64).await;
        probe_agrees(&file).await;
        // The client of `a` is still there and still gets its own messages.
        let text = format!("still here {i}");
        client.send(&text).await;
        client.wait_for(&text).await;
    }
    let (_, health) = http_get(ports.a, "/healthz").await;
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["generation"], 10);
    assert!(!up.log().contains("reload rejected"), "{}", up.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_save_changes_nothing_and_the_next_valid_one_applies() {
    let (a, b) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let file = temp_file(&dir);
    std::fs::write(&file, format!("nodes:\n  a: {{ http: {a} }}\n")).unwrap();
    let up = Up::start(&file, &[]);
    up.wait_generation(0).await;
    let mut client = Client::connect(a).await;
    save(
        &file,
        &format!("nodes:\n  a: {{ http: {a} }}\n  b: {{ htp: {b} }}\n"),
    );
    up.wait_log("reload rejected", 1).await;
    assert!(
        up.log().contains("topo.yaml:3:8: error: unknown key `htp`"),
        "{}",
        up.log()
    );
    assert_eq!(up.generation().await, Some(0));
    client.send("after the bad save").await;
    client.wait_for("after the bad save").await;
    save(
        &file,
        &format!("nodes:\n  a: {{ http: {a} }}\n  b: {{ http: {b} }}\n"),
    );
    up.wait_generation(1).await;
    let (status, _) = http_get(b, "/healthz").await;
    assert_eq!(status, 200);
    client.send("after the good save").await;
    client.wait_for("after the good save").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_style_symlink_swap_is_picked_up() {
    let (a, b) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // ConfigMap layout: topo.yaml -> ..data/topo.yaml, ..data -> ..v1
    std::fs::create_dir(d.join("..v1")).unwrap();
    std::fs::write(
        d.join("..v1/topo.yaml"),
        format!("nodes:\n  a: {{ http: {a} }}\n"),
    )
    .unwrap();
    std::os::unix::fs::symlink("..v1", d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/topo.yaml", d.join("topo.yaml")).unwrap();
    let up = Up::start(&d.join("topo.yaml"), &[]);
    up.wait_generation(0).await;
    std::fs::create_dir(d.join("..v2")).unwrap();
    let two = format!("nodes:\n  a: {{ http: {a} }}\n  b: {{ http: {b} }}\n");
    std::fs::write(d.join("..v2/topo.yaml"), two).unwrap();
    std::os::unix::fs::symlink("..v2", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    up.wait_generation(1).await;
    assert_eq!(http_get(b, "/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_against_the_running_topology_and_diff_of_two_files() {
    let (a, b) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let file = temp_file(&dir);
    std::fs::write(&file, format!("nodes:\n  a: {{ http: {a} }}\n")).unwrap();
    let up = Up::start(&file, &[]);
    up.wait_generation(0).await;
    let next = dir.path().join("next.yaml");
    std::fs::write(&next, format!("nodes:\n  b: {{ http: {b} }}\n")).unwrap();
    let admin = format!("127.0.0.1:{}", up.admin);
    let out = TestCommand::new()
        .args(["plan", next.to_str().unwrap(), "--admin", &admin])
        .topology(&next)
        .expect_code(0);
    let text = out.stdout();
    assert!(text.contains("+ b (start)"), "{text}");
    assert!(text.contains("- a (stop"), "{text}");
    assert!(text.contains("  a -> a: 1 -> 0"), "{text}");
    let out = TestCommand::new()
        .args(["diff", file.to_str().unwrap(), next.to_str().unwrap()])
        .args(["--format", "json"])
        .expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(json["add"], serde_json::json!(["b"]));
    assert_eq!(json["remove"], serde_json::json!(["a"]));
    // Nothing was applied by planning.
    assert_eq!(up.generation().await, Some(0));
}
