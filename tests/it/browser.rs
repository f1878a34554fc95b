//! The chat page in a real browser: headless Chromium (Debian's package,
//! driven by playwright-core from `tests/browser/`) opens the pages of two
//! nodes of `topologies/zmq-3node.yaml`, sends from one and sees the message
//! on the other; markup shows as text. Screenshots land in `tests/artifacts/`.

use crate::external::{chromium_or_skip, npm_dir};
use crate::golden_runtime::relocate;
use std::path::Path;
use std::time::Duration;
use topo::check::check_file;
use topo::probe::{ProbeOptions, probe};
use topo::runtime::Running;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browser_tabs_chat_across_nodes_and_markup_stays_text() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let dir = npm_dir("browser", "playwright-core");
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/zmq-3node.yaml");
    let mut valid = check_file(&file).unwrap().valid.unwrap();
    let _servers = relocate(&mut valid);
    let running = Running::start(&valid.topology)
        .await
        .expect("start zmq-3node");
    running
        .wait_links_up(Duration::from_secs(10))
        .await
        .expect("links up");
    // The first frames after a ZeroMQ SUB connects may be lost (slow
    // joiner): once a probe gets through everywhere, the links carry.
    let options = ProbeOptions {
        timeout: Duration::from_secs(3),
        settle: Duration::from_millis(50),
    };
    let mut ready = false;
    for _ in 0..5 {
        if probe(&valid, options).await.agrees() {
            ready = true;
            break;
        }
    }
    assert!(ready, "the topology never carried a probe");

    let url = |name: &str| {
        let node = valid.topology.node(valid.topology.node_id(name).unwrap());
        format!("http://{}/", node.http.unwrap())
    };
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    let (url_a, url_b) = (url("a"), url("b"));
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("node")
            .arg(dir.join("chat.mjs"))
            .args([url_a.as_str(), "a", url_b.as_str(), "b"])
            .arg(&shots)
            .env("CHROMIUM", &chromium)
            .output(),
    )
    .await
    .expect("the browser test finished within 60 s")
    .expect("node runs");
    running.shutdown().await;
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(shots.join("chat-a.png").exists() && shots.join("chat-b.png").exists());
}
