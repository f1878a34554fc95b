//! The progress line while a bench runs (stderr, only on a terminal and
//! never with `--format json`): phase, elapsed time, rates so far.

use super::load::Shared;
use super::plan::LoadPlan;
use super::report::count;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::time::Instant;

pub struct Bar {
    bar: ProgressBar,
    /// Last redraw, and the counters then (for the rates shown).
    last: Cell<(Instant, u64, u64)>,
}

impl Bar {
    pub fn new(show: bool, plan: &LoadPlan) -> Bar {
        let total = (plan.warmup + plan.duration).as_millis() as u64;
        let bar = if show {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        Bar {
            bar,
            last: Cell::new((Instant::now(), 0, 0)),
        }
    }

    pub fn update(&self, shared: &Shared, plan: &LoadPlan) {
        let (at, sent, received) = self.last.get();
        let elapsed = at.elapsed().as_secs_f64();
        if elapsed < 0.2 || self.bar.is_hidden() {
            return;
        }
        let now_sent = shared.sent.load(Ordering::Relaxed);
        let now_received = shared.received.load(Ordering::Relaxed);
        let now = shared.now_ns();
        let start = shared.window.0.load(Ordering::Relaxed);
        let end = shared.window.1.load(Ordering::Relaxed);
        let phase = if now < start {
            "warm-up"
        } else if now < end {
            "measuring"
        } else {
            "draining"
        };
        let began = start.saturating_sub(plan.warmup.as_nanos() as u64);
        self.bar.set_position(now.saturating_sub(began) / 1_000_000);
        self.bar.set_message(format!(
            "{phase}: {} sent/s, {} received/s",
            count((now_sent - sent) as f64 / elapsed),
            count((now_received - received) as f64 / elapsed),
        ));
        self.last.set((Instant::now(), now_sent, now_received));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
