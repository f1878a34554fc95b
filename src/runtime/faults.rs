//! Fault switches for a demo (the live page's buttons): stop and start a
//! node, cut and restore one link (a ZeroMQ SUB, a Redis subscription, a
//! NATS filter), hold a node's broker links down and let them back. Each
//! switch is a change to what runs, never to the file: a cut link is the
//! node rewired without it, a stopped node is stopped with its wiring kept,
//! a broker held down is its links' own switch (`RedisControl::sever`,
//! `NatsControl::sever`, `AmqpControl::sever`). So the next applied
//! save undoes them all: it diffs what runs against the file.
//! A cut (and its undoing) goes through the one classification a reload
//! uses: `Change::between(what the node runs, its faulted wiring)`, whose
//! delta the node applies like a save's. No fault has its own rewiring code.
//! With `--process` only Stop and Start: a node is a child process started
//! from the file, so a link of it cannot be cut from here.

use super::Running;
use super::process::Supervisor;
use crate::diff::{Change, Diff};
pub use crate::fault::{Fault, FaultCommand, FaultError, FaultRequest};
use crate::health::PATTERN_PREFIX;
use crate::model::{Topology, Wiring};

/// The switches that are on, and how to turn them off.
#[derive(Debug, Default)]
pub struct Faults {
    active: Vec<Fault>,
}

impl Faults {
    pub fn active(&self) -> &[Fault] {
        &self.active
    }

    /// Applies `command` to `running` (which runs `topology`, as applied at
    /// `generation`); on an error nothing changed.
    pub async fn apply(
        &mut self,
        running: &mut Running,
        topology: &Topology,
        generation: u64,
        command: FaultCommand,
    ) -> Result<Vec<Fault>, FaultError> {
        match command {
            FaultCommand::Set { fault, on } => {
                self.set(running, topology, generation, fault, on).await?;
            }
            FaultCommand::RestoreAll => {
                // Stopped nodes first: they come back with their cuts, which go next.
                let mut all = self.active.clone();
                all.sort_by_key(|f| !matches!(f, Fault::NodeStopped { .. }));
                for fault in all {
                    self.set(running, topology, generation, fault, false)
                        .await?;
                }
            }
        }
        Ok(self.active.clone())
    }

    async fn set(
        &mut self,
        running: &mut Running,
        topology: &Topology,
        generation: u64,
        fault: Fault,
        on: bool,
    ) -> Result<(), FaultError> {
        let name = fault.node().to_owned();
        let what = fault.to_string();
        let base = base_wiring(topology, &name)?;
        let is_on = self.active.contains(&fault);
        match (on, is_on) {
            (true, true) => return Err(FaultError::AlreadyOn(fault)),
            (false, false) => return Err(FaultError::NotOn(fault)),
            _ => {}
        }
        let stopped = self
            .active
            .contains(&Fault::NodeStopped { node: name.clone() });
        match &fault {
            Fault::NodeStopped { .. } if on => {
                if !running.stop_node(&name).await {
                    return Err(FaultError::NoNode(name));
                }
                self.active.push(fault.clone());
            }
            Fault::NodeStopped { .. } => {
                let others: Vec<Fault> = self
                    .active
                    .iter()
                    .filter(|f| **f != fault)
                    .cloned()
                    .collect();
                running
                    .start_wiring(&effective(&base, &others), generation)
                    .await?;
                self.active = others;
                if self
                    .active
                    .contains(&Fault::BrokerDown { node: name.clone() })
                    && let Some(node) = running.node(&name)
                {
                    node.sever_brokers(true).await;
                }
            }
            _ if stopped => return Err(FaultError::Stopped(name)),
            Fault::SubCut { endpoint, .. } => {
                if !base.subscribe.iter().any(|e| e.to_string() == *endpoint) {
                    return Err(FaultError::NoLink {
                        node: name,
                        what: format!("zmq sub {endpoint}"),
                    });
                }
                self.rewire(running, &base, generation, fault, on).await?;
            }
            Fault::RedisSubCut { entry, .. } => {
                let listed =
                    base.redis
                        .as_ref()
                        .is_some_and(|r| match entry.strip_prefix(PATTERN_PREFIX) {
                            Some(p) => r.patterns.iter().any(|x| x == p),
                            None => r.subscribe.iter().any(|x| x == entry),
                        });
                if !listed {
                    return Err(FaultError::NoLink {
                        node: name,
                        what: format!("redis subscription {entry}"),
                    });
                }
                self.rewire(running, &base, generation, fault, on).await?;
            }
            Fault::NatsSubCut { filter, .. } => {
                let listed = base
                    .nats
                    .as_ref()
                    .is_some_and(|n| n.subscribe.contains(filter));
                if !listed {
                    return Err(FaultError::NoLink {
                        node: name,
                        what: format!("nats subscription {filter}"),
                    });
                }
                self.rewire(running, &base, generation, fault, on).await?;
            }
            Fault::BrokerDown { .. } => {
                let node = running
                    .node(&name)
                    .ok_or_else(|| FaultError::NoNode(name.clone()))?;
                if node.sever_brokers(on).await.is_none() {
                    return Err(FaultError::NoLink {
                        node: name,
                        what: "broker link".into(),
                    });
                }
                self.toggle(fault, on);
            }
        }
        if on {
            tracing::warn!(
                "fault switch on: {what} (undone by its button, Restore all, or a save of the file)"
            );
        } else {
            tracing::info!("fault switch off: {what}, restored");
        }
        Ok(())
    }

    /// Rewires the node to the file's wiring minus every cut that is on
    /// once `fault` is switched: the delta from what it runs to that.
    async fn rewire(
        &mut self,
        running: &Running,
        base: &Wiring,
        generation: u64,
        fault: Fault,
        on: bool,
    ) -> Result<(), FaultError> {
        let mut next = self.active.clone();
        if on {
            next.push(fault.clone());
        } else {
            next.retain(|f| *f != fault);
        }
        let node = running
            .node(&base.name)
            .ok_or_else(|| FaultError::NoNode(base.name.clone()))?;
        let change = Change::between(&node.wiring().await, &effective(base, &next));
        node.rewire(&change, generation).await?;
        self.active = next;
        Ok(())
    }

    fn toggle(&mut self, fault: Fault, on: bool) {
        self.active.retain(|f| *f != fault);
        if on {
            self.active.push(fault);
        }
    }

    /// [`Faults::apply`] for `up --process`: stopping and starting a
    /// node's child process; every other switch is [`FaultError::ProcessMode`].
    pub async fn apply_process(
        &mut self,
        supervisor: &mut Supervisor,
        topology: &Topology,
        generation: u64,
        command: FaultCommand,
    ) -> Result<Vec<Fault>, FaultError> {
        let switches = match command {
            FaultCommand::Set {
                fault: fault @ Fault::NodeStopped { .. },
                on,
            } => vec![(fault, on)],
            FaultCommand::Set { .. } => return Err(FaultError::ProcessMode),
            FaultCommand::RestoreAll => self.active.iter().map(|f| (f.clone(), false)).collect(),
        };
        for (fault, on) in switches {
            let name = fault.node().to_owned();
            let base = base_wiring(topology, &name)?;
            let is_on = self.active.contains(&fault);
            let diff = match (on, is_on) {
                (true, true) => return Err(FaultError::AlreadyOn(fault)),
                (false, false) => return Err(FaultError::NotOn(fault)),
                (true, false) => {
                    if !supervisor.wirings().iter().any(|w| w.name == name) {
                        return Err(FaultError::NoNode(name));
                    }
                    Diff {
                        add: Vec::new(),
                        change: Vec::new(),
                        remove: vec![base],
                    }
                }
                (false, true) => Diff {
                    add: vec![base],
                    change: Vec::new(),
                    remove: Vec::new(),
                },
            };
            // A child that cannot start again is restarted with backoff and
            // shows as down on the page; nothing to report here.
            supervisor.apply(&diff, generation).await;
            self.toggle(fault.clone(), on);
            if on {
                tracing::warn!(
                    "fault switch on: {fault} (its child process stopped; undone by Start, Restore all, or a save of the file)"
                );
            } else {
                tracing::info!("fault switch off: {fault}, child process started again");
            }
        }
        Ok(self.active.clone())
    }

    /// A save was applied in `--process` mode: it started stopped children.
    pub fn clear(&mut self) {
        self.active.clear();
    }

    /// A save was applied: it rewired cut links back and started stopped
    /// nodes (what runs is diffed against the file); the broker switches
    /// are not wiring, so they are let go here.
    pub async fn forget(&mut self, running: &Running) {
        for fault in self.active.drain(..) {
            if let Fault::BrokerDown { node } = &fault
                && let Some(n) = running.node(node)
            {
                n.sever_brokers(false).await;
            }
        }
    }
}

fn base_wiring(topology: &Topology, name: &str) -> Result<Wiring, FaultError> {
    let id = topology
        .node_id(name)
        .ok_or_else(|| FaultError::NoNode(name.to_owned()))?;
    Ok(Wiring::of(topology, id))
}

/// `base` without the links that `faults` cut on its node.
fn effective(base: &Wiring, faults: &[Fault]) -> Wiring {
    let mut w = base.clone();
    for f in faults.iter().filter(|f| f.node() == base.name) {
        match f {
            Fault::SubCut { endpoint, .. } => w.subscribe.retain(|e| e.to_string() != *endpoint),
            Fault::RedisSubCut { entry, .. } => {
                if let Some(r) = &mut w.redis {
                    match entry.strip_prefix(PATTERN_PREFIX) {
                        Some(p) => r.patterns.retain(|x| x != p),
                        None => r.subscribe.retain(|x| x != entry),
                    }
                }
            }
            Fault::NatsSubCut { filter, .. } => {
                if let Some(n) = &mut w.nats {
                    n.subscribe.retain(|x| x != filter);
                }
            }
            Fault::NodeStopped { .. } | Fault::BrokerDown { .. } => {}
        }
    }
    if w.subscribe.is_empty() {
        // No SUB socket left: the wiring of a node without one (see Wiring::of).
        w.filter.clear();
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::check_bytes;

    #[test]
    fn a_cut_removes_exactly_its_link_from_the_wiring() {
        let yaml = "nodes:
  a: { http: 8080, zmq: { pub: 5000, sub: [b, c] }, redis: { broker: 'redis://127.0.0.1:6399', subscribe: [news], patterns: ['chat*'] } }
  b: { http: 8081, zmq: { pub: 5001 } }
  c: { http: 8082, zmq: { pub: 5002 } }
";
        let none = |_: &str| None;
        let valid = check_bytes("t.yaml", "t", yaml.as_bytes(), &none)
            .valid
            .expect("valid");
        let base = base_wiring(&valid.topology, "a").unwrap();
        let faults = [
            Fault::SubCut {
                node: "a".into(),
                endpoint: "tcp://127.0.0.1:5001".into(),
            },
            Fault::RedisSubCut {
                node: "a".into(),
                entry: "psubscribe chat*".into(),
            },
            // Another node's cut does not touch a.
            Fault::SubCut {
                node: "b".into(),
                endpoint: "tcp://127.0.0.1:5002".into(),
            },
        ];
        let w = effective(&base, &faults);
        let subs: Vec<String> = w.subscribe.iter().map(|e| e.to_string()).collect();
        assert_eq!(subs, ["tcp://127.0.0.1:5002"]);
        let r = w.redis.unwrap();
        assert_eq!(r.subscribe, base.redis.as_ref().unwrap().subscribe);
        assert!(r.patterns.is_empty());
        assert_eq!(w.filter, base.filter);
        let all = effective(
            &base,
            &[
                faults[0].clone(),
                Fault::SubCut {
                    node: "a".into(),
                    endpoint: "tcp://127.0.0.1:5002".into(),
                },
            ],
        );
        assert!(all.subscribe.is_empty() && all.filter.is_empty());
        assert!(matches!(
            base_wiring(&valid.topology, "x"),
            Err(FaultError::NoNode(n)) if n == "x"
        ));
    }
}
