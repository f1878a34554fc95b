//! `topo import`: reads the command lines (bounded), prints the topology
//! file they describe and its diagnostics.

use super::exit::{EXIT_INVALID, EXIT_OK, EXIT_USAGE, Exit};

/// Input of `import` larger than this is refused before it is read whole:
/// command lines for a few hundred servers fit many times over.
const MAX_IMPORT_BYTES: u64 = 1 << 20;

pub(super) fn import(
    file: &std::path::Path,
    bare: Option<topo::import::Bare>,
    name: Option<String>,
    schema: String,
) -> Exit {
    use std::io::Read;
    let stdin = file.as_os_str() == "-";
    let source = if stdin {
        "stdin".to_owned()
    } else {
        file.display().to_string()
    };
    let mut bytes = Vec::new();
    let read = if stdin {
        std::io::stdin()
            .take(MAX_IMPORT_BYTES + 1)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(MAX_IMPORT_BYTES + 1).read_to_end(&mut bytes))
    };
    if let Err(e) = read {
        eprintln!("{source}: cannot read: {e}");
        return EXIT_USAGE;
    }
    if bytes.len() as u64 > MAX_IMPORT_BYTES {
        eprintln!("{source}: larger than {MAX_IMPORT_BYTES} bytes, not imported");
        return EXIT_USAGE;
    }
    let Ok(text) = String::from_utf8(bytes) else {
        eprintln!("{source}: not UTF-8 text");
        return EXIT_USAGE;
    };
    let stem = match (&name, stdin) {
        (Some(name), _) => name.clone(),
        (None, true) => "imported".to_owned(),
        (None, false) => file
            .file_stem()
            .map_or(String::new(), |s| s.to_string_lossy().into_owned()),
    };
    let options = topo::import::Options {
        name: topo::import::name_from_stem(&stem),
        source: source.clone(),
        bare,
        schema,
    };
    let yaml = match topo::import::import(&text, &options) {
        Ok(yaml) => yaml,
        Err(errors) => {
            for e in &errors {
                let span = topo::config::yaml::Span::new(e.line as u32, e.column as u32);
                let diagnostic = topo::config::diagnostic::Diagnostic::error(span, &e.message);
                eprint!(
                    "{}",
                    topo::config::diagnostic::render(
                        &source,
                        &topo::config::diagnostic::Lines::new(&text),
                        &diagnostic
                    )
                );
            }
            eprintln!("{source}: {} error(s), nothing written", errors.len());
            return EXIT_INVALID;
        }
    };
    // The file must stand up to `validate` as written; its warnings (a
    // --sub no line binds) are worth showing.
    let env = |var: &str| std::env::var(var).ok();
    let checked = topo::check::check_str("<import>", &options.name, yaml.clone(), &env);
    eprint!("{}", checked.render());
    if checked.valid.is_none() {
        eprintln!("{source}: the imported topology is invalid, nothing written");
        return EXIT_INVALID;
    }
    out!("{yaml}");
    EXIT_OK
}
