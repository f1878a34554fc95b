//! The error corpus: each `tests/errors/*.yaml` is a broken file whose
//! first lines say which errors it must produce:
//! `# error: LINE:COLUMN: message fragment`.

use std::path::PathBuf;
use topo::check::check_bytes;

struct Expected {
    line: u32,
    column: u32,
    fragment: String,
}

fn expectations(text: &str) -> Vec<Expected> {
    text.lines()
        .map_while(|line| line.strip_prefix("# error: "))
        .map(|rest| {
            let (line, rest) = rest
                .split_once(':')
                .expect("# error: LINE:COLUMN: fragment");
            let (column, fragment) = rest.split_once(": ").unwrap_or((rest, ""));
            Expected {
                line: line.trim().parse().unwrap(),
                column: column.trim().parse().unwrap(),
                fragment: fragment.trim().to_owned(),
            }
        })
        .collect()
}

#[test]
fn every_broken_file_reports_its_errors_where_they_are() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/errors");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "the corpus shrank to {} files",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let expected = expectations(&text);
        assert!(
            !expected.is_empty(),
            "{} has no `# error:` line",
            file.display()
        );
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let checked = check_bytes(&name, "t", &bytes, &|_| None);
        if checked.valid.is_some() {
            failures.push(format!("{name}: accepted as valid"));
            continue;
        }
        // Advice written for programmers using the YAML library
        // ("set DuplicateKeyPolicy in Options") never reaches the user.
        for d in checked.errors() {
            for word in ["from_str", "Options", "Policy", "serde"] {
                if d.message.contains(word) {
                    failures.push(format!("{name}: library wording {word:?}: {}", d.message));
                }
            }
        }
        for e in &expected {
            let found = checked.errors().any(|d| {
                d.span.line == e.line
                    && d.span.column == e.column
                    && d.message.contains(&e.fragment)
            });
            if !found {
                failures.push(format!(
                    "{name}: no error at {}:{} containing {:?}; got:\n{}",
                    e.line,
                    e.column,
                    e.fragment,
                    checked.render()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
