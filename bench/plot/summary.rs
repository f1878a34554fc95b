//! The comparison's table (Markdown) from the JSON lines of `bench/compare.sh`:
//! per scenario and implementation, the highest delivered rate whose p99 stays
//! within 50 ms, the closed-loop peak, the cost at the Node server's
//! sustainable load, memory per idle connection and start-up times.

use std::collections::BTreeMap;
use std::fmt::Write;
use topo::bench::plan::Load;
use topo::bench::report::{Line, Report, count};

/// Labels of runs that are not rate ladders (listed in the last table).
pub const NOT_LADDERS: [&str; 4] = ["idle", "route", "startup", "validate"];

/// p99 bound of the "sustainable" rate.
const P99_LIMIT_MS: f64 = 50.0;

fn server_cpu(run: &Report) -> Option<f64> {
    let cpus: Vec<f64> = run.processes.iter().filter_map(|p| p.cpu).collect();
    (!cpus.is_empty()).then(|| cpus.iter().sum())
}

fn pct(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |c| format!("{:.0}%", c * 100.0))
}

/// The offered rate as the JSON line has it (`null` for a closed loop).
fn rate(run: &Report) -> serde_json::Value {
    match run.load {
        Load::Rate(r) => r.into(),
        _ => serde_json::Value::Null,
    }
}

pub fn table(jsonl: &str) -> String {
    let lines: Vec<Line> = jsonl
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    // scenario -> impl -> runs
    let mut by: BTreeMap<String, BTreeMap<String, Vec<&Report>>> = BTreeMap::new();
    for line in &lines {
        let Line::Run(run) = line else { continue };
        if let Some((scenario, imp)) = run.label.as_deref().and_then(|l| l.split_once('/')) {
            by.entry(scenario.into())
                .or_default()
                .entry(imp.into())
                .or_default()
                .push(run);
        }
    }
    let mut out = String::new();
    out.push_str(&format!(
        "| scenario | server | max deliveries/s at p99 ≤ {P99_LIMIT_MS} ms (open loop) | p50 / p99 there | server CPU there | peak, closed loop (p99) | lost / duplicated below saturation |\n"
    ));
    out.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
    for (scenario, imps) in &by {
        if NOT_LADDERS.contains(&scenario.as_str()) {
            continue;
        }
        let mut best_rate = BTreeMap::new();
        for (imp, runs) in imps {
            let ok: Vec<&Report> = runs
                .iter()
                .copied()
                .filter(|r| matches!(r.load, Load::Rate(_)))
                .filter(|r| r.latency.p99_ms <= P99_LIMIT_MS && r.lost == 0)
                .collect();
            let best = ok
                .iter()
                .max_by(|a, b| a.delivered_per_s.total_cmp(&b.delivered_per_s));
            let peak = runs.iter().find(|r| matches!(r.load, Load::Window(_)));
            let faults: f64 = ok.iter().map(|r| (r.lost + r.duplicates) as f64).sum();
            let (rate, lat, cpu) = match best {
                Some(b) => {
                    best_rate.insert(imp.clone(), b.delivered_per_s);
                    (
                        count(b.delivered_per_s),
                        format!("{:.1} / {:.1} ms", b.latency.p50_ms, b.latency.p99_ms),
                        pct(server_cpu(b)),
                    )
                }
                None => ("none".into(), "-".into(), "-".into()),
            };
            let peak = peak.map_or("-".into(), |p| {
                format!(
                    "{}/s (p99 {:.1} ms)",
                    count(p.delivered_per_s),
                    p.latency.p99_ms
                )
            });
            let _ = writeln!(
                out,
                "| {scenario} | {imp} | {rate}/s | {lat} | {cpu} | {peak} | {faults:.0} |"
            );
        }
        if let (Some(n), Some(t)) = (best_rate.get("node"), best_rate.get("topo")) {
            let _ = writeln!(
                out,
                "| {scenario} | **topo / node** | **{:.1}×** | | | | |",
                t / n
            );
        }
    }
    at_node_load(&by, &mut out);
    idle_and_startup(&lines, &validations(jsonl), &mut out);
    out
}

/// The `validate/…` lines of `bench/compare.sh` (`wall_s`, `peak_rss_kib`,
/// `bytes`), as table rows.
fn validations(jsonl: &str) -> Vec<String> {
    jsonl
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let what = v["label"].as_str()?.strip_prefix("validate/")?.to_owned();
            let mb = v["bytes"].as_f64().unwrap_or(0.0) / 1e6;
            Some(format!(
                "| `topo validate`, {what} ({mb:.1} MB) | {:.2} s, peak RSS {:.0} MiB |",
                v["wall_s"].as_f64()?,
                v["peak_rss_kib"].as_f64()? / 1024.0
            ))
        })
        .collect()
}

/// The Node single server's sustainable load: 900 sends/s to 100 clients.
fn at_node_load(by: &BTreeMap<String, BTreeMap<String, Vec<&Report>>>, out: &mut String) {
    let Some(single) = by.get("single") else {
        return;
    };
    out.push_str(
        "\n| at 900 msg/s × 100 clients (90,000 deliveries/s) | p50 | p99 | server CPU (one core = 100%) | lost |\n| --- | --- | --- | --- | --- |\n",
    );
    for (imp, runs) in single {
        if let Some(r) = runs.iter().find(|r| r.load == Load::Rate(900.0)) {
            let _ = writeln!(
                out,
                "| {imp} | {:.2} ms | {:.2} ms | {} | {} |",
                r.latency.p50_ms,
                r.latency.p99_ms,
                pct(server_cpu(r)),
                r.lost
            );
        }
    }
}

fn idle_and_startup(lines: &[Line], validations: &[String], out: &mut String) {
    let mut rows = Vec::new();
    for line in lines {
        match line {
            Line::Run(run) => {
                let label = run.label.as_deref().unwrap_or("");
                if let Some(imp) = label.strip_prefix("idle/") {
                    let kib = run.processes.first().and_then(|p| p.rss_per_client_kib);
                    rows.push(format!(
                        "| {} idle connections, {imp} | {} KiB resident per connection |",
                        run.clients,
                        kib.map_or("n/a".into(), |k| format!("{k:.1}"))
                    ));
                } else if let Some(imp) = label.strip_prefix("route/") {
                    for r in &run.routes {
                        rows.push(format!(
                            "| one message, client of {} → client of {}, {imp} ({} msg/s) | p50 {:.2} ms, p99 {:.2} ms |",
                            r.from,
                            r.to,
                            rate(run),
                            r.latency.p50_ms,
                            r.latency.p99_ms,
                        ));
                    }
                }
            }
            Line::Startup(s) => {
                let label = s.label.as_deref().unwrap_or("");
                if let Some(what) = label.strip_prefix("startup/") {
                    let rss = s.rss_kib.map_or(String::new(), |k| {
                        format!(", idle RSS {:.1} MiB", k as f64 / 1024.0)
                    });
                    let fds = s.fds.map_or(String::new(), |n| format!(", {n} fds"));
                    rows.push(format!(
                        "| start-up to ready, {what} | {:.1} ms (median of {}){rss}{fds} |",
                        s.median_ms,
                        s.runs_ms.len()
                    ));
                }
            }
        }
    }
    rows.extend(validations.iter().cloned());
    if !rows.is_empty() {
        out.push_str("\n| measure | result |\n| --- | --- |\n");
        for row in rows {
            out.push_str(&row);
            out.push('\n');
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use topo::bench::report::{Latency, Process};
    use topo::bench::startup::Startup;

    /// A run as `topo bench --format json --label LABEL` prints it.
    pub fn run(label: &str, load: Load, delivered_per_s: f64, p: (f64, f64), cpu: f64) -> String {
        let report = Report {
            targets: vec!["ws://127.0.0.1:1/ws".into()],
            clients: 100,
            senders: 10,
            load,
            payload: 64,
            warmup_s: 1.0,
            duration_s: 5.0,
            connect_s: 0.1,
            sent: 1,
            sent_per_s: 1.0,
            delivered: 1,
            expected: 1,
            delivered_per_s,
            received_in_window_per_s: delivered_per_s,
            lost: 0,
            duplicates: 0,
            foreign: 0,
            dropped_clients: 0,
            latency: Latency {
                p50_ms: p.0,
                p99_ms: p.1,
                ..Latency::default()
            },
            routes: vec![],
            generator_cpu: None,
            generator_threads: 1,
            processes: vec![Process {
                pid: 1,
                cpu: Some(cpu),
                rss_before_kib: Some(1000),
                rss_kib: Some(1480),
                rss_per_client_kib: Some(4.8),
            }],
            idle: load == Load::Idle,
            load_average: None,
            label: None,
        };
        report.to_json(Some(label)).to_string()
    }

    #[test]
    fn picks_the_fastest_run_within_the_p99_bound() {
        let startup = Startup {
            command: "topo up zmq.yaml".into(),
            runs_ms: vec![12.7],
            median_ms: 12.7,
            rss_kib: Some(20480),
            threads: Some(4),
            fds: Some(9),
            label: None,
        };
        let mut startup = serde_json::to_value(&startup).unwrap();
        // As bench/compare.sh adds it (jq).
        startup["label"] = "startup/topo zmq-3node".into();
        let lines = [
            run("single/node", Load::Rate(900.0), 90000.0, (4.0, 40.0), 0.7),
            run(
                "single/node",
                Load::Rate(1500.0),
                120000.0,
                (40.0, 400.0),
                1.0,
            ),
            run("single/topo", Load::Rate(900.0), 90000.0, (1.0, 3.0), 0.1),
            run("single/topo", Load::Rate(9000.0), 900000.0, (2.0, 9.0), 0.8),
            run("idle/topo", Load::Idle, 0.0, (0.0, 0.0), 0.0),
            startup.to_string(),
            r#"{"label":"validate/mesh","wall_s":0.61,"peak_rss_kib":133120,"bytes":5939018}"#
                .to_owned(),
        ];
        let t = table(&lines.join("\n"));
        assert!(t.contains("| single | node | 90.0 k/s |"), "{t}");
        assert!(t.contains("| single | topo | 900.0 k/s |"), "{t}");
        assert!(t.contains("**10.0×**"), "{t}");
        assert!(t.contains("| topo | 1.00 ms | 3.00 ms | 10% | 0 |"), "{t}");
        assert!(t.contains("100 idle connections, topo | 4.8 KiB"), "{t}");
        assert!(
            t.contains("12.7 ms (median of 1), idle RSS 20.0 MiB, 9 fds"),
            "{t}"
        );
        assert!(
            t.contains("| `topo validate`, mesh (5.9 MB) | 0.61 s, peak RSS 130 MiB |"),
            "{t}"
        );
    }
}
