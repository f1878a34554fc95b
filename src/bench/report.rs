//! The result of a bench run, as a table for people and as one JSON object
//! per run for programs (`bench/compare.sh` collects them, `plot` draws them).

use super::plan::Load;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    pub samples: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        let ms = |ns: u64| ns as f64 / 1e6;
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            samples: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1e6,
        }
    }
}

/// Latency from the clients of one node to the clients of another.
#[derive(Clone, Debug, Serialize)]
pub struct Route {
    pub from: String,
    pub to: String,
    pub latency: Latency,
}

/// A process given with `--pid`: its share of one core during the window,
/// and its resident memory before the clients connected and at the window's end.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub cpu: Option<f64>,
    pub rss_before_kib: Option<u64>,
    pub rss_kib: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub targets: Vec<String>,
    pub clients: usize,
    pub senders: usize,
    #[serde(serialize_with = "load_json")]
    pub load: Load,
    pub payload: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub connect_s: f64,
    /// Messages sent inside the window.
    pub sent: u64,
    pub sent_per_s: f64,
    /// Copies of the window's messages received, and how many were predicted.
    pub delivered: u64,
    pub expected: u64,
    pub delivered_per_s: f64,
    /// Every message received during the window (whenever sent), per second.
    pub received_in_window_per_s: f64,
    pub lost: u64,
    pub duplicates: u64,
    /// Messages that were not this run's.
    pub foreign: u64,
    /// Clients whose connection the server ended during the run.
    pub dropped_clients: u64,
    pub latency: Latency,
    /// Per route (up to 8 nodes); empty otherwise.
    pub routes: Vec<Route>,
    /// Share of one core this generator used during the window.
    pub generator_cpu: Option<f64>,
    pub generator_threads: usize,
    pub processes: Vec<Process>,
    pub idle: bool,
    /// The machine's 1-minute load average at the end of the window.
    pub load_average: Option<f64>,
}

fn load_json<S: serde::Serializer>(load: &Load, s: S) -> Result<S::Ok, S::Error> {
    let value = match load {
        Load::Rate(r) => serde_json::json!({"mode": "open", "rate": r}),
        Load::Window(w) => serde_json::json!({"mode": "closed", "window": w}),
        Load::Idle => serde_json::json!({"mode": "idle"}),
    };
    value.serialize(s)
}

impl Report {
    /// Nothing lost, duplicated or dropped, and the server kept every client.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.dropped_clients == 0
    }

    /// Resident memory each connection added to the pid, in KiB.
    pub fn rss_per_client_kib(&self, p: &Process) -> Option<f64> {
        let (before, after) = (p.rss_before_kib?, p.rss_kib?);
        Some((after as f64 - before as f64) / self.clients.max(1) as f64)
    }

    pub fn to_json(&self, label: Option<&str>) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("a report serialises");
        if let Some(label) = label {
            value["label"] = label.into();
        }
        let per_client: Vec<_> = self
            .processes
            .iter()
            .map(|p| self.rss_per_client_kib(p))
            .collect();
        for (i, kib) in per_client.into_iter().enumerate() {
            value["processes"][i]["rss_per_client_kib"] = serde_json::json!(kib);
        }
        value
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let load = match self.load {
            Load::Rate(r) => format!("open loop, {} msg/s", count(r)),
            Load::Window(w) => format!("closed loop, window {w} per sender"),
            Load::Idle => "idle connections".to_owned(),
        };
        let _ = writeln!(
            out,
            "bench: {} clients ({} sending) on {} URL{}, {load}, {} B payload, {:.1} s (+{:.1} s warm-up)",
            self.clients,
            self.senders,
            self.targets.len(),
            if self.targets.len() == 1 { "" } else { "s" },
            self.payload,
            self.duration_s,
            self.warmup_s,
        );
        let row = |out: &mut String, k: &str, v: String| {
            let _ = writeln!(out, "  {k:<14} {v}");
        };
        row(
            &mut out,
            "connected in",
            format!("{:.0} ms", self.connect_s * 1e3),
        );
        if !self.idle {
            row(
                &mut out,
                "sent",
                format!("{} ({}/s)", self.sent, count(self.sent_per_s)),
            );
            row(
                &mut out,
                "delivered",
                format!(
                    "{} of {} predicted ({}/s)",
                    self.delivered,
                    self.expected,
                    count(self.delivered_per_s)
                ),
            );
            let l = &self.latency;
            row(
                &mut out,
                "latency ms",
                format!(
                    "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                    l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
                ),
            );
            if self.routes.len() > 1 {
                let routes: Vec<String> = self
                    .routes
                    .iter()
                    .map(|r| {
                        format!(
                            "{}→{} {:.2}/{:.2}",
                            r.from, r.to, r.latency.p50_ms, r.latency.p99_ms
                        )
                    })
                    .collect();
                row(&mut out, "p50/p99 route", routes.join("  "));
            }
            row(
                &mut out,
                "lost",
                format!("{}  duplicates {}", self.lost, self.duplicates),
            );
        }
        if self.foreign > 0 || self.dropped_clients > 0 {
            row(
                &mut out,
                "other",
                format!(
                    "{} foreign messages, {} clients dropped by the server",
                    self.foreign, self.dropped_clients
                ),
            );
        }
        row(
            &mut out,
            "generator cpu",
            format!(
                "{} of one core ({} thread{})",
                percent(self.generator_cpu),
                self.generator_threads,
                if self.generator_threads == 1 { "" } else { "s" }
            ),
        );
        if let Some(load) = self.load_average {
            row(
                &mut out,
                "machine load",
                format!("{load:.2} (1-minute average)"),
            );
        }
        for p in &self.processes {
            let rss = match (p.rss_kib, self.rss_per_client_kib(p)) {
                (Some(rss), Some(per)) => {
                    format!(
                        ", rss {:.1} MiB ({per:+.2} KiB per client)",
                        rss as f64 / 1024.0
                    )
                }
                _ => String::new(),
            };
            row(
                &mut out,
                &format!("pid {}", p.pid),
                format!("cpu {} of one core{rss}", percent(p.cpu)),
            );
        }
        out
    }
}

fn percent(share: Option<f64>) -> String {
    share.map_or("n/a".to_owned(), |s| format!("{:.1}%", s * 100.0))
}

/// 1234567 → "1.23 M", 12345 → "12.3 k".
pub fn count(n: f64) -> String {
    if n >= 999_500.0 {
        format!("{:.2} M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.1} k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}
