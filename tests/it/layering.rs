//! No import cycles between sibling modules of the library: the top-level
//! modules (`config`, `graph`, `plan`, ...) and the modules inside each
//! directory (`config::spec`, `config::limits`, ...). Read from the source:
//! every `crate::` and `super::` path outside test code is an edge from the
//! file's module to the sibling it names. Run it alone with
//! `cargo test --test it layering`. Also: the library prints nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path from the crate root: `["config", "spec"]`.
type ModPath = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `config/spec.rs` → `[config, spec]`; `config/mod.rs` → `[config]`.
fn module_of(src: &Path, file: &Path) -> Option<ModPath> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: ModPath = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    // The crate root and the binary are not siblings of anything.
    match parts.as_slice() {
        [one] if one == "lib" || one == "main" => None,
        _ => Some(parts),
    }
}

/// The code of a file without comments and without its `#[cfg(test)]` tail
/// (tests may use anything).
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            break;
        }
        if !trimmed.starts_with("//") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// Every absolute module path the code names through `crate::` or `super::`
/// (with `{a, b}` groups expanded one level).
fn references(module: &ModPath, code: &str) -> Vec<ModPath> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    for (at, _) in code.match_indices("::") {
        // The root word before `::`, if it starts a path.
        let start = code[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |i| i + 1);
        let path = &code[start..];
        if start > 0 && bytes[start - 1] == b'$' {
            continue;
        }
        let (base, mut rest): (ModPath, &str) = if let Some(rest) = path.strip_prefix("crate::") {
            if start + "crate".len() != at {
                continue;
            }
            (Vec::new(), rest)
        } else if path.starts_with("super::") {
            if start + "super".len() != at {
                continue;
            }
            // `super` of `config/spec.rs` ([config, spec]) is `config`, of
            // `config/mod.rs` ([config]) the crate: one pop either way.
            let mut base = module.clone();
            let mut rest = path;
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            (base, rest)
        } else {
            continue;
        };
        let mut names = Vec::new();
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            names.extend(group.split(',').map(|s| ident(s.trim()).to_owned()));
        } else {
            // Follow `a::b::c` as far as it goes.
            let mut path = base.clone();
            loop {
                let name = ident(rest);
                if name.is_empty() {
                    break;
                }
                path.push(name.to_owned());
                match rest[name.len()..].strip_prefix("::") {
                    Some(r) if !r.starts_with('{') => rest = r,
                    _ => break,
                }
            }
            found.push(path);
            continue;
        }
        for name in names.into_iter().filter(|n| !n.is_empty()) {
            let mut path = base.clone();
            path.push(name);
            found.push(path);
        }
    }
    found
}

/// The first cycle in `edges`, as `a -> b -> a`.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

/// Sibling edges of the library, grouped by their parent module.
fn sibling_edges() -> BTreeMap<ModPath, BTreeMap<String, BTreeSet<String>>> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut modules: BTreeSet<ModPath> = BTreeSet::new();
    let mut sources = Vec::new();
    for file in &files {
        if let Some(module) = module_of(&src, file) {
            modules.insert(module.clone());
            sources.push((module, std::fs::read_to_string(file).unwrap()));
        }
    }
    let mut graphs: BTreeMap<ModPath, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (module, text) in &sources {
        for target in references(module, &code(text)) {
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            // Naming an ancestor (or itself) is not a sibling edge.
            if common == module.len() || common == target.len() {
                continue;
            }
            let parent = module[..common].to_vec();
            let mut sibling = parent.clone();
            sibling.push(target[common].clone());
            if !modules.contains(&sibling) {
                continue; // an item of the parent, not a module
            }
            graphs
                .entry(parent)
                .or_default()
                .entry(module[common].clone())
                .or_default()
                .insert(target[common].clone());
        }
    }
    graphs
}

#[test]
fn no_import_cycles_between_sibling_modules() {
    let graphs = sibling_edges();
    // The check must see the edges that do exist, or it proves nothing.
    let top = &graphs[&Vec::new()];
    assert!(top["config"].contains("model"), "{top:?}");
    assert!(top["bench"].contains("command"), "{top:?}");
    assert!(graphs[&vec!["config".to_owned()]]["spec"].contains("limits"));
    let cycles: Vec<String> = graphs
        .iter()
        .filter_map(|(parent, edges)| {
            find_cycle(edges).map(|cycle| {
                format!(
                    "in crate{}: {}",
                    parent.iter().map(|p| format!("::{p}")).collect::<String>(),
                    cycle.join(" -> ")
                )
            })
        })
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_cycle_finder_names_the_whole_path() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        edges.entry(a.into()).or_default().insert(b.into());
    }
    assert_eq!(find_cycle(&edges).unwrap(), ["a", "b", "c", "a"]);
    edges.get_mut("c").unwrap().remove("a");
    assert_eq!(find_cycle(&edges), None);
}

/// What would print from library code: the printing macros (ours and
/// std's), the process's own streams, a terminal, a child let through to
/// them.
const PRINTS: [&str; 14] = [
    "print!(",
    "println!(",
    "eprint!(",
    "eprintln!(",
    "dbg!(",
    "out!(",
    "outln!(",
    "eoutln!(",
    "io::stdout",
    "io::stderr",
    "stdout()",
    "stderr()",
    "Stdio::inherit",
    "/dev/tty",
];

/// `file:line: code` for every line of `files` (outside comments and test
/// code) that prints.
fn printing_lines(src: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let code = code(&text);
        for line in code.lines() {
            if PRINTS.iter().any(|p| line.contains(p)) {
                let rel = file.strip_prefix(src).unwrap().display();
                found.push(format!("src/{rel}: {}", line.trim()));
            }
        }
    }
    found
}

/// The library prints nothing: it returns outcomes and reports events
/// through callbacks, logs through `tracing`; only the binary
/// (`src/main.rs`, `src/cli/`) writes to stdout and stderr.
#[test]
fn the_library_prints_nothing() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let (binary, library): (Vec<PathBuf>, Vec<PathBuf>) = files
        .into_iter()
        .partition(|f| f.starts_with(src.join("cli")) || f == &src.join("main.rs"));
    // The check must see the printing that does exist, or it proves nothing.
    assert!(
        printing_lines(&src, &binary).len() > 10,
        "{:?}",
        printing_lines(&src, &binary)
    );
    let found = printing_lines(&src, &library);
    assert!(
        found.is_empty(),
        "library code prints (return it, or report it through a callback, and \
         let src/cli/ print it):\n{}",
        found.join("\n")
    );
}
