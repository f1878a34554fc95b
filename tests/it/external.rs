//! The programs some tests need beyond cargo: Node.js (the wire peers of
//! `tests/peers`, the browser driver of `tests/browser`), their npm packages,
//! and Chromium. A missing program fails the test with the line that
//! installs it; only the opt-out variables the README documents skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// `TOPO_SKIP_NODE=1` skips the tests that run Node.js programs.
pub const SKIP_NODE: &str = "TOPO_SKIP_NODE";
/// `TOPO_SKIP_BROWSER=1` skips the tests that drive Chromium.
pub const SKIP_BROWSER: &str = "TOPO_SKIP_BROWSER";

fn opted_out(var: &str) -> bool {
    if std::env::var(var).is_ok_and(|v| v == "1") {
        eprintln!("skipped: {var}=1");
        return true;
    }
    false
}

/// Whether to run a test that needs `node`: false only when opted out; a
/// missing `node` otherwise fails the test.
pub fn node_or_skip() -> bool {
    if opted_out(SKIP_NODE) {
        return false;
    }
    let found = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`node` is not installed: apt-get install nodejs npm \
         (or set {SKIP_NODE}=1 to skip the tests that need it)"
    );
    true
}

pub fn chromium() -> Option<PathBuf> {
    let path =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    path.exists().then_some(path)
}

/// Chromium (and `node`, which drives it) for a browser test, `None` only
/// when opted out; a missing one fails the test.
pub fn chromium_or_skip() -> Option<PathBuf> {
    if opted_out(SKIP_BROWSER) || !node_or_skip() {
        return None;
    }
    let found = chromium();
    assert!(
        found.is_some(),
        "no Chromium at /usr/bin/chromium (or $CHROMIUM): apt-get install chromium \
         (or set {SKIP_BROWSER}=1 to skip the browser tests)"
    );
    found
}

/// `tests/DIR` with its npm packages installed (`npm ci` on first use).
/// Tests run in parallel: one lock keeps two of them from installing into
/// the same folder at once.
pub fn npm_dir(dir: &str, package: &str) -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(dir);
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if !dir.join("node_modules").join(package).exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .unwrap_or_else(|e| panic!("npm: {e}: apt-get install npm"));
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    dir
}
