//! `topo test`: prints the library's reports (text, JSON, JUnit) or what
//! `--bless` wrote, and picks the exit code.

use super::exit::{EXIT_INVALID, EXIT_OK, EXIT_USAGE, Exit};
use std::path::PathBuf;
use topo::command::Format;
use topo::testing::bless::{Blessed, bless};
use topo::testing::{FileReport, TestArgs, Verdict, report};

pub(super) fn test(args: &TestArgs) -> Exit {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let files = match topo::testing::discover::discover(&paths) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    if args.bless {
        return bless_all(&files);
    }
    super::logging::init_quiet();
    let tested = topo::testing::test(&files, args, || {
        eoutln!("interrupted: stopping the nodes and brokers started");
    });
    let reports = &tested.reports;
    match args.format {
        Format::Text => out!("{}", report::text(reports)),
        Format::Json => outln!("{}", report::json(reports)),
    }
    if let Some(path) = &args.junit
        && let Err(e) = std::fs::write(path, report::junit(reports))
    {
        eprintln!("error: {}: cannot write: {e}", path.display());
        return EXIT_USAGE;
    }
    if tested.interrupted {
        return EXIT_USAGE;
    }
    exit_code(reports)
}

/// 2 if a file could not be tested, else 1 if one failed, else 0.
fn exit_code(reports: &[FileReport]) -> Exit {
    if reports.iter().any(|r| r.verdict == Verdict::Error) {
        EXIT_USAGE
    } else if reports.iter().any(|r| r.verdict == Verdict::Fail) {
        EXIT_INVALID
    } else {
        EXIT_OK
    }
}

/// `topo test --bless FILE...`: prints what it wrote.
fn bless_all(files: &[PathBuf]) -> Exit {
    let mut code = EXIT_OK;
    let (mut wrote, mut unchanged, mut failed) = (0, 0, 0);
    for file in files {
        match bless(file) {
            Ok(Blessed::Wrote(path)) => {
                wrote += 1;
                outln!("blessed {}", path.display());
            }
            Ok(Blessed::Unchanged(path)) => {
                unchanged += 1;
                outln!("unchanged {}", path.display());
            }
            Err(e) => {
                failed += 1;
                eprintln!("{e}");
                code = code.max(if e.is_usage() {
                    EXIT_USAGE
                } else {
                    EXIT_INVALID
                });
            }
        }
    }
    outln!("{wrote} blessed, {unchanged} unchanged, {failed} failed");
    code
}
