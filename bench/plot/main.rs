//! `bench-plot`: project tooling, not part of topo. Turns the JSON lines of
//! `bench/compare.sh` (each a `topo bench --format json --label SCENARIO/IMPL`
//! run) into the comparison plot (SVG) and prints the summary table
//! (Markdown). Run it through cargo:
//!
//!     cargo run --example bench-plot -- RESULTS.jsonl --svg OUT.svg > summary.md

mod plot;
mod summary;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut input = None;
    let mut svg = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--svg" {
            svg = args.next().map(PathBuf::from);
        } else if input.is_none() {
            input = Some(PathBuf::from(arg));
        } else {
            input = None;
            break;
        }
    }
    let (Some(input), Some(svg)) = (input, svg) else {
        eprintln!("usage: bench-plot RESULTS.jsonl --svg OUT.svg");
        return ExitCode::from(2);
    };
    match plot::plot_file(&input, &svg) {
        Ok(table) => {
            print!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
