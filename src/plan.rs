//! `topo plan FILE` (against the running `topo up`, through its admin
//! server) and `topo diff OLD NEW`: what a reload would do, before it is
//! saved. Reads and prints only; it never changes a running topology.

use crate::check::{Valid, check_bytes};
use crate::command::{EXIT_INVALID, EXIT_OK, EXIT_USAGE, Exit, Format, load_valid, runtime};
use crate::diff::{Diff, plan_json, plan_text, reach_changes};
use std::net::SocketAddr;
use std::path::Path;

pub fn plan(file: &Path, admin: SocketAddr, format: Format) -> Exit {
    let applied = match runtime().block_on(crate::admin::fetch(admin)) {
        Ok(applied) => applied,
        Err(e) => {
            crate::eoutln!("topo plan: {e}");
            return EXIT_USAGE;
        }
    };
    let stem = Path::new(&applied.file)
        .file_stem()
        .map_or("topology".into(), |s| s.to_string_lossy().into_owned());
    let env = |name: &str| std::env::var(name).ok();
    let running = check_bytes(&applied.file, &stem, applied.source.as_bytes(), &env);
    let Some(mut old) = running.valid else {
        // The running file used variables this shell does not have.
        crate::eout!("{}", running.render());
        crate::eoutln!("topo plan: the running topology does not validate here");
        return EXIT_USAGE;
    };
    let Ok(new) = load_valid(file) else {
        crate::eoutln!("topo plan: saving {} would be rejected", file.display());
        return EXIT_INVALID;
    };
    unredact(&mut old, &new);
    if format == Format::Text {
        crate::outln!(
            "running: {} (generation {}); planned: {}",
            applied.file,
            applied.generation,
            file.display()
        );
    }
    print_plan(&old, &new, format);
    EXIT_OK
}

pub fn diff(old: &Path, new: &Path, format: Format) -> Exit {
    let old = match load_valid(old) {
        Ok(v) => v,
        Err(code) => return code,
    };
    match load_valid(new) {
        Ok(new) => {
            print_plan(&old, &new, format);
            EXIT_OK
        }
        Err(code) => code,
    }
}

/// The admin server serves its file with passwords as `***`: a broker the
/// new file names with the same server and user keeps the new password, so
/// only a changed server shows as a change (a changed password alone does not).
fn unredact(old: &mut Valid, new: &Valid) {
    for broker in &mut old.topology.brokers {
        if broker.url.password.as_deref() != Some("***") {
            continue;
        }
        let same = new.topology.brokers.iter().find(|b| {
            b.url.server() == broker.url.server() && b.url.username == broker.url.username
        });
        if let Some(same) = same {
            broker.url.password.clone_from(&same.url.password);
        }
    }
}

fn print_plan(old: &Valid, new: &Valid, format: Format) {
    let diff = Diff::between(&old.topology, &new.topology);
    let reach = reach_changes(old, new);
    match format {
        Format::Text => crate::out!("{}", plan_text(&diff, &reach)),
        Format::Json => crate::outln!("{}", plan_json(&diff, &reach)),
    }
}
