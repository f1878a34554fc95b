//! Which files `topo test` looks at: every FILE given, and under every DIR
//! the topology files that carry expectations (an `expect:` section or a
//! `NAME.expect.yaml` beside them), recursively, in name order.

use std::path::{Path, PathBuf};

/// Directories deeper than this are not searched (and symlinked ones never).
const MAX_DEPTH: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("{path}: no such file or directory")]
    Missing { path: String },
    #[error("{path}: cannot list: {source}")]
    List {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path}: no topology file with expectations found (an `expect:` section or NAME.expect.yaml)"
    )]
    Empty { path: String },
}

/// Whether `file` has a sidecar: anything at its path counts (a link to a
/// device too), so a sidecar that cannot be read is reported, not ignored.
pub fn has_sidecar(file: &Path) -> bool {
    std::fs::symlink_metadata(sidecar_of(file)).is_ok()
}

/// The sidecar of `NAME.yaml` (or `NAME.yml`): `NAME.expect.yaml` beside it.
pub fn sidecar_of(file: &Path) -> PathBuf {
    let stem = file
        .file_stem()
        .map_or("topology".into(), |s| s.to_string_lossy().into_owned());
    file.with_file_name(format!("{stem}.expect.yaml"))
}

fn is_sidecar(name: &str) -> bool {
    name.ends_with(".expect.yaml") || name.ends_with(".expect.yml")
}

fn is_yaml(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// Whether the text has a top-level `expect:` key (a cheap look that does
/// not parse: the test proper parses and reports).
pub fn has_expect_key(text: &str) -> bool {
    text.lines().any(|line| {
        line.strip_prefix("expect")
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    })
}

fn has_expectations(file: &Path) -> bool {
    if has_sidecar(file) {
        return true;
    }
    crate::config::read::read_topology(file)
        .map(|bytes| has_expect_key(&String::from_utf8_lossy(&bytes)))
        .unwrap_or(false)
}

/// The files to test, sorted and without repeats.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, DiscoverError> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_file() {
            out.push(path.clone());
        } else if path.is_dir() {
            let before = out.len();
            walk(path, 0, &mut out)?;
            if out.len() == before {
                return Err(DiscoverError::Empty {
                    path: path.display().to_string(),
                });
            }
        } else {
            return Err(DiscoverError::Missing {
                path: path.display().to_string(),
            });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), DiscoverError> {
    let list = |source| DiscoverError::List {
        path: dir.display().to_string(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(list)?
        .collect::<Result<_, _>>()
        .map_err(list)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            let skipped = name.starts_with('.') || name == "target" || name == "node_modules";
            if !skipped && depth < MAX_DEPTH {
                walk(&path, depth + 1, out)?;
            }
        } else if kind.is_file() && is_yaml(&name) && !is_sidecar(&name) && has_expectations(&path)
        {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_files_with_expectations_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(
            root.join("inline.yaml"),
            "nodes: {}\nexpect:\n  deliveries: {}\n",
        )
        .unwrap();
        std::fs::write(root.join("side.yaml"), "nodes: {}\n").unwrap();
        std::fs::write(root.join("side.expect.yaml"), "deliveries: {}\n").unwrap();
        std::fs::write(root.join("plain.yaml"), "nodes: {}\n# expect: not a key\n").unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/deep.yml"), "expect: {}\n").unwrap();
        let found = discover(&[root.to_path_buf()]).unwrap();
        let names: Vec<String> = found
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["inline.yaml", "side.yaml", "sub/deep.yml"]);
        assert_eq!(
            sidecar_of(&root.join("sub/deep.yml")),
            root.join("sub/deep.expect.yaml")
        );
    }

    #[test]
    fn a_directory_without_tests_and_a_missing_path_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            discover(&[dir.path().to_path_buf()]),
            Err(DiscoverError::Empty { .. })
        ));
        assert!(matches!(
            discover(&[dir.path().join("nope.yaml")]),
            Err(DiscoverError::Missing { .. })
        ));
    }
}
