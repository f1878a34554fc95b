//! `topo up`: prints what the library's `reload::up` reports (diagnostics,
//! the ready table, the children's lines with their node's name in front).

use super::logging::colour;
use super::output::print_lossy;
use std::io::IsTerminal;
use std::sync::Arc;
use topo::runtime::process::{ChildLine, ChildStream};
use topo::runtime::reload::{UpEvent, UpEvents};

/// Prints `topo up`'s events: the ready table and the children's stdout on
/// stdout, everything else on stderr.
pub(super) fn printer() -> UpEvents {
    // The children's logs reach the terminal through our stderr.
    let colour_err = colour(std::io::stderr().is_terminal());
    let colour_out = colour_err && std::io::stdout().is_terminal();
    Arc::new(move |event| match event {
        UpEvent::Diagnostics(text) => eout!("{text}"),
        UpEvent::AdminExposed(addr) => {
            eoutln!("warning: admin server on {addr}, not loopback: reachable from other machines")
        }
        UpEvent::Ready(table) => print_lossy(&format!("{table}\n")),
        UpEvent::Child(line) => print_child(line, colour_out, colour_err),
    })
}

/// Whether `up --process` children colour their logs (as ours would be).
pub(super) fn children_colour() -> bool {
    colour(std::io::stderr().is_terminal())
}

fn print_child(line: ChildLine<'_>, colour_out: bool, colour_err: bool) {
    match line.stream {
        ChildStream::Stdout => {
            let prefix = prefix(line.node, line.name_width, colour_out);
            print_lossy(&format!("{prefix}{}\n", line.text));
        }
        ChildStream::Stderr => {
            let prefix = prefix(line.node, line.name_width, colour_err);
            eoutln!("{prefix}{}", line.text);
        }
    }
}

/// `name | ` padded, in a colour chosen from the name (stable across runs).
fn prefix(name: &str, width: usize, colour: bool) -> String {
    const PALETTE: [u8; 6] = [36, 33, 32, 35, 34, 31];
    if !colour {
        return format!("{name:width$} | ");
    }
    let h = name
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    let c = PALETTE[h as usize % PALETTE.len()];
    format!("\x1b[{c}m{name:width$} |\x1b[0m ")
}
