//! Puts the commit into `topo --version`: `git rev-parse --short HEAD`, or
//! "unknown" when the source is not a git checkout or git is missing (a
//! build never fails for want of git).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// Watches a git file if it exists (a missing one would re-run every build).
fn watch(git_path: &str) {
    if let Some(p) = git(&["rev-parse", "--git-path", git_path])
        && std::path::Path::new(&p).exists()
    {
        println!("cargo:rerun-if-changed={p}");
    }
}

fn main() {
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TOPO_COMMIT={commit}");
    // Re-run when HEAD moves: HEAD itself (a checkout), the branch it names
    // (a commit), and packed refs. Outside git, only when this file changes.
    println!("cargo:rerun-if-changed=build.rs");
    watch("HEAD");
    watch("packed-refs");
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(&branch);
    }
}
