//! Golden analysis: every `tests/golden/<case>/topology.yaml` and every
//! example in `topologies/` is validated and compared with the JSON beside
//! it (`expected.json`). `TOPO_BLESS=1 cargo test golden` rewrites them.

use std::path::{Path, PathBuf};
use topo::check::check_bytes;
use topo::check::validation_json;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (topology file, its expectation file), examples included.
pub fn golden_cases() -> Vec<(PathBuf, PathBuf)> {
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(root().join("tests/golden")).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("topology.yaml").exists() {
            cases.push((dir.join("topology.yaml"), dir.join("expected.json")));
        }
    }
    for entry in std::fs::read_dir(root().join("topologies")).unwrap() {
        let file = entry.unwrap().path();
        if file.extension().is_some_and(|e| e == "yaml") {
            let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
            let expected = root().join(format!("tests/golden/examples/{stem}.expected.json"));
            cases.push((file, expected));
        }
    }
    cases.sort();
    cases
}

/// The analysis as the golden files hold it: no environment, relative paths.
pub fn analyse(file: &Path) -> serde_json::Value {
    let bytes = std::fs::read(file).unwrap();
    let relative = file.strip_prefix(root()).unwrap().display().to_string();
    let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
    let checked = check_bytes(&relative, &stem, &bytes, &|_| None);
    validation_json(&checked)
}

#[test]
fn golden_analysis_matches() {
    let bless = std::env::var_os("TOPO_BLESS").is_some();
    let cases = golden_cases();
    assert!(
        cases.len() >= 27,
        "expected the examples and at least 20 cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for (topology, expected_file) in cases {
        let actual = analyse(&topology);
        assert_eq!(
            actual["valid"],
            true,
            "{} is not valid: {:#}",
            topology.display(),
            actual["errors"]
        );
        let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
        if bless {
            std::fs::create_dir_all(expected_file.parent().unwrap()).unwrap();
            std::fs::write(&expected_file, text).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_file).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run TOPO_BLESS=1 cargo test golden",
                expected_file.display()
            )
        });
        if expected != text {
            failures.push(format!(
                "{}\n--- expected\n{expected}\n--- actual\n{text}",
                topology.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}
