//! `topo plan FILE` (against the running `topo up`, through its admin
//! server) and `topo diff OLD NEW`: what a reload would do, before it is
//! saved, as a [`Plan`]. Reads only; it never changes a running topology,
//! and prints nothing (the binary renders the plan).

use crate::admin::Applied;
use crate::check::{Checked, Valid, check_bytes};
use crate::diff::{Diff, ReachChange, plan_json, plan_text, reach_changes};
use std::path::Path;

/// What a reload from one valid topology to another would do: the nodes
/// and links it changes and how deliveries change.
pub struct Plan {
    pub diff: Diff,
    pub reach: Vec<ReachChange>,
}

impl Plan {
    pub fn between(old: &Valid, new: &Valid) -> Plan {
        Plan {
            diff: Diff::between(&old.topology, &new.topology),
            reach: reach_changes(old, new),
        }
    }

    /// SPEC's text of `plan` and `diff`.
    pub fn text(&self) -> String {
        plan_text(&self.diff, &self.reach)
    }

    /// SPEC's `--format json` object of `plan` and `diff`.
    pub fn json(&self) -> serde_json::Value {
        plan_json(&self.diff, &self.reach)
    }
}

/// The file a running `topo up` serves, checked here as a file of its own
/// name (it fails when it uses variables this shell does not have).
pub fn check_applied(applied: &Applied) -> Checked {
    let stem = Path::new(&applied.file)
        .file_stem()
        .map_or("topology".into(), |s| s.to_string_lossy().into_owned());
    let env = |name: &str| std::env::var(name).ok();
    check_bytes(&applied.file, &stem, applied.source.as_bytes(), &env)
}

/// The admin server serves its file with passwords as `***`: a broker the
/// new file names with the same server and user keeps the new password, so
/// only a changed server shows as a change (a changed password alone does not).
pub fn unredact(old: &mut Valid, new: &Valid) {
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
