//! How far a bench run is, sampled about five times a second while it
//! loads: phase, time, rates so far. The caller shows it (the binary draws
//! a progress line on a terminal); the library prints nothing.

use super::load::Shared;
use super::plan::LoadPlan;
use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The least time between two samples.
const EVERY: Duration = Duration::from_millis(200);

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    WarmUp,
    Measuring,
    Draining,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::WarmUp => "warm-up",
            Phase::Measuring => "measuring",
            Phase::Draining => "draining",
        })
    }
}

/// One sample of a run's progress.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub phase: Phase,
    /// Since the warm-up began, and the warm-up plus the window.
    pub elapsed: Duration,
    pub total: Duration,
    /// Since the previous sample.
    pub sent_per_s: f64,
    pub received_per_s: f64,
}

/// Turns the generator's counters into [`Progress`] samples.
pub(crate) struct Sampler {
    /// Last sample, and the counters then (for the rates).
    last: Cell<(Instant, u64, u64)>,
}

impl Sampler {
    pub(crate) fn new() -> Sampler {
        Sampler {
            last: Cell::new((Instant::now(), 0, 0)),
        }
    }

    /// A new sample, unless the last one is younger than [`EVERY`].
    pub(crate) fn sample(&self, shared: &Shared, plan: &LoadPlan) -> Option<Progress> {
        let (at, sent, received) = self.last.get();
        let elapsed = at.elapsed().as_secs_f64();
        if elapsed < EVERY.as_secs_f64() {
            return None;
        }
        let now_sent = shared.sent.load(Ordering::Relaxed);
        let now_received = shared.received.load(Ordering::Relaxed);
        let now = shared.now_ns();
        let start = shared.window.0.load(Ordering::Relaxed);
        let end = shared.window.1.load(Ordering::Relaxed);
        let phase = if now < start {
            Phase::WarmUp
        } else if now < end {
            Phase::Measuring
        } else {
            Phase::Draining
        };
        let began = start.saturating_sub(plan.warmup.as_nanos() as u64);
        self.last.set((Instant::now(), now_sent, now_received));
        Some(Progress {
            phase,
            elapsed: Duration::from_nanos(now.saturating_sub(began)),
            total: plan.warmup + plan.duration,
            sent_per_s: (now_sent - sent) as f64 / elapsed,
            received_per_s: (now_received - received) as f64 / elapsed,
        })
    }
}
