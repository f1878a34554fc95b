//! `topo plan` and `topo diff`: loads the two topologies, prints the
//! library's [`Plan`] between them.

use super::exit::{EXIT_INVALID, EXIT_OK, EXIT_USAGE, Exit};
use super::load_valid;
use std::net::SocketAddr;
use std::path::Path;
use topo::command::{Format, runtime};
use topo::plan::{Plan, check_applied, unredact};

pub(super) fn plan(file: &Path, admin: SocketAddr, format: Format) -> Exit {
    let applied = match runtime().block_on(topo::admin::fetch(admin)) {
        Ok(applied) => applied,
        Err(e) => {
            eoutln!("topo plan: {e}");
            return EXIT_USAGE;
        }
    };
    let running = check_applied(&applied);
    let Some(mut old) = running.valid else {
        // The running file used variables this shell does not have.
        eout!("{}", running.render());
        eoutln!("topo plan: the running topology does not validate here");
        return EXIT_USAGE;
    };
    let Ok(new) = load_valid(file) else {
        eoutln!("topo plan: saving {} would be rejected", file.display());
        return EXIT_INVALID;
    };
    unredact(&mut old, &new);
    if format == Format::Text {
        outln!(
            "running: {} (generation {}); planned: {}",
            applied.file,
            applied.generation,
            file.display()
        );
    }
    print(&Plan::between(&old, &new), format);
    EXIT_OK
}

pub(super) fn diff(old: &Path, new: &Path, format: Format) -> Exit {
    let old = match load_valid(old) {
        Ok(v) => v,
        Err(code) => return code,
    };
    match load_valid(new) {
        Ok(new) => {
            print(&Plan::between(&old, &new), format);
            EXIT_OK
        }
        Err(code) => code,
    }
}

fn print(plan: &Plan, format: Format) {
    match format {
        Format::Text => out!("{}", plan.text()),
        Format::Json => outln!("{}", plan.json()),
    }
}
