//! The result of a bench run, as a table for people and as one JSON object
//! per run for programs (`bench/compare.sh` collects them, `plot` draws them).
//! The serde types are that JSON's one definition: the plot reads them back.

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
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// Resident memory each connection added, in KiB.
    pub rss_per_client_kib: Option<f64>,
}

/// Resident memory each of `clients` connections added, in KiB.
pub fn per_client_kib(before: Option<u64>, after: Option<u64>, clients: usize) -> Option<f64> {
    Some((after? as f64 - before? as f64) / clients.max(1) as f64)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub targets: Vec<String>,
    pub clients: usize,
    pub senders: usize,
    #[serde(with = "load_json")]
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
    /// `--label`: which scenario and implementation the run measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// `load` on the wire: `{"mode": "open", "rate": R}`, `{"mode": "closed",
/// "window": W}` or `{"mode": "idle"}`.
mod load_json {
    use super::Load;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(tag = "mode", rename_all = "lowercase")]
    enum Wire {
        Open { rate: f64 },
        Closed { window: u32 },
        Idle,
    }

    pub fn serialize<S: Serializer>(load: &Load, s: S) -> Result<S::Ok, S::Error> {
        match *load {
            Load::Rate(rate) => Wire::Open { rate },
            Load::Window(window) => Wire::Closed { window },
            Load::Idle => Wire::Idle,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Load, D::Error> {
        Ok(match Wire::deserialize(d)? {
            Wire::Open { rate } => Load::Rate(rate),
            Wire::Closed { window } => Load::Window(window),
            Wire::Idle => Load::Idle,
        })
    }
}

/// One of the JSON lines `bench/compare.sh` collects: a run's report or a
/// start-up measurement (its label added by the script).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Line {
    Run(Box<Report>),
    Startup(super::startup::Startup),
}

impl Report {
    /// Nothing lost, duplicated or dropped, and the server kept every client.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.dropped_clients == 0
    }

    pub fn to_json(&self, label: Option<&str>) -> serde_json::Value {
        let mut line = self.clone();
        line.label = label.map(Into::into);
        serde_json::to_value(&line).expect("a report serialises")
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
            let rss = match (p.rss_kib, p.rss_per_client_kib) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `bench/compare.sh` (jq) and the plot read these names.
    #[test]
    fn the_wire_format_is_stable() {
        let report = Report {
            targets: vec!["ws://h:1/ws".into()],
            clients: 2,
            senders: 1,
            load: Load::Rate(900.0),
            payload: 64,
            warmup_s: 1.0,
            duration_s: 5.0,
            connect_s: 0.5,
            sent: 10,
            sent_per_s: 2.0,
            delivered: 20,
            expected: 20,
            delivered_per_s: 4.0,
            received_in_window_per_s: 4.0,
            lost: 0,
            duplicates: 1,
            foreign: 2,
            dropped_clients: 3,
            latency: Latency {
                samples: 20,
                p50_ms: 1.0,
                p90_ms: 2.0,
                p99_ms: 3.0,
                p999_ms: 4.0,
                max_ms: 5.0,
                mean_ms: 1.5,
            },
            routes: vec![Route {
                from: "a".into(),
                to: "b".into(),
                latency: Latency::default(),
            }],
            generator_cpu: Some(0.25),
            generator_threads: 1,
            processes: vec![Process {
                pid: 7,
                cpu: None,
                rss_before_kib: Some(1000),
                rss_kib: Some(1010),
                rss_per_client_kib: per_client_kib(Some(1000), Some(1010), 2),
            }],
            idle: false,
            load_average: None,
            label: None,
        };
        let zero = r#"{"samples":0,"p50_ms":0.0,"p90_ms":0.0,"p99_ms":0.0,"p999_ms":0.0,"max_ms":0.0,"mean_ms":0.0}"#;
        let wire = [
            r#"{"targets":["ws://h:1/ws"],"clients":2,"senders":1,"load":{"mode":"open","rate":900.0},"#,
            r#""payload":64,"warmup_s":1.0,"duration_s":5.0,"connect_s":0.5,"sent":10,"sent_per_s":2.0,"#,
            r#""delivered":20,"expected":20,"delivered_per_s":4.0,"received_in_window_per_s":4.0,"#,
            r#""lost":0,"duplicates":1,"foreign":2,"dropped_clients":3,"#,
            r#""latency":{"samples":20,"p50_ms":1.0,"p90_ms":2.0,"p99_ms":3.0,"p999_ms":4.0,"max_ms":5.0,"mean_ms":1.5},"#,
            &format!(r#""routes":[{{"from":"a","to":"b","latency":{zero}}}],"#),
            r#""generator_cpu":0.25,"generator_threads":1,"#,
            r#""processes":[{"pid":7,"cpu":null,"rss_before_kib":1000,"rss_kib":1010,"rss_per_client_kib":5.0}],"#,
            r#""idle":false,"load_average":null,"label":"single/topo"}"#,
        ]
        .concat();
        assert_eq!(report.to_json(Some("single/topo")).to_string(), wire);
        let Line::Run(back) = serde_json::from_str(&wire).unwrap() else {
            panic!("a report reads back as a run");
        };
        assert_eq!(back.to_json(back.label.as_deref()).to_string(), wire);
        for (load, json) in [
            (Load::Window(8), r#"{"mode":"closed","window":8}"#),
            (Load::Idle, r#"{"mode":"idle"}"#),
        ] {
            let mut r = report.clone();
            r.load = load;
            assert_eq!(r.to_json(None)["load"].to_string(), json);
        }
        assert!(!report.to_json(None).to_string().contains("label"));
    }
}
