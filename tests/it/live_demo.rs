//! The live page at demo quality (issue 18), in headless Chromium against
//! the real `topo up`: a stable layout across reloads that add and remove
//! nodes (and across a reload of the page, with a dragged node), no label
//! box over a node or another label at 3, 12 and 30 nodes.
//! Screenshots land in `tests/artifacts/` (copied to `docs/` for the README).

use crate::browser::{browser_dir, chromium_or_skip};
use crate::chat::LIMIT;
use crate::reload::Up;
use crate::util::free_port;
use std::path::Path;
use std::time::{Duration, Instant};

/// A ring over `members` (indices into the port lists): each node subscribes
/// to the one before it.
pub fn ring(name: &str, members: &[usize], http: &[u16], publ: &[u16]) -> String {
    let mut yaml = format!("name: {name}\nnodes:\n");
    for (k, &i) in members.iter().enumerate() {
        let before = members[(k + members.len() - 1) % members.len()];
        yaml.push_str(&format!(
            "  n{i}: {{ http: {}, zmq: {{ pub: {}, sub: [n{before}] }} }}\n",
            http[i], publ[i]
        ));
    }
    yaml
}

async fn wait_admin(up: &Up) {
    let deadline = Instant::now() + LIMIT;
    while up.generation().await != Some(0) {
        assert!(Instant::now() < deadline, "no admin server:\n{}", up.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layout_is_stable_across_reloads_and_no_label_overlaps_at_3_12_30_nodes() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let dir = browser_dir().expect("playwright-core");
    let tmp = tempfile::tempdir().unwrap();
    let http: Vec<u16> = (0..30).map(|_| free_port()).collect();
    let publ: Vec<u16> = (0..30).map(|_| free_port()).collect();
    let write = |file: &str, members: Vec<usize>| {
        let path = tmp.path().join(file);
        std::fs::write(&path, ring("ring", &members, &http, &publ)).unwrap();
        path
    };
    let file = write("ring.yaml", (0..3).collect());
    let ring3 = write("ring3.yaml", (0..3).collect());
    let ring12 = write("ring12.yaml", (0..12).collect());
    let edited = write("ring12-edited.yaml", (0..14).filter(|i| *i != 5).collect());
    let ring30 = write("ring30.yaml", (0..30).collect());
    let up = Up::start(&file, &[]);
    wait_admin(&up).await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    let output = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new("node")
            .arg(dir.join("layout.mjs"))
            .arg(format!("http://127.0.0.1:{}/", up.admin))
            .args([&file, &ring3, &ring12, &edited, &ring30])
            .arg(&shots)
            .env("CHROMIUM", &chromium)
            .output(),
    )
    .await
    .expect("the browser test finished within 180 s")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        up.log()
    );
    eprintln!("{stdout}");
    for n in [3, 12, 30] {
        assert!(shots.join(format!("live-{n}.png")).exists());
    }
}
