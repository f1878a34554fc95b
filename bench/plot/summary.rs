//! The comparison's table (Markdown) from the JSON lines of `bench/compare.sh`:
//! per scenario and implementation, the highest delivered rate whose p99 stays
//! within 50 ms, the closed-loop peak, the cost at the Node server's
//! sustainable load, memory per idle connection and start-up times.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;
use topo::bench::report::count;

/// Labels of runs that are not rate ladders (listed in the last table).
pub const NOT_LADDERS: [&str; 3] = ["idle", "route", "startup"];

/// p99 bound of the "sustainable" rate.
const P99_LIMIT_MS: f64 = 50.0;

fn server_cpu(run: &Value) -> Option<f64> {
    let cpus: Vec<f64> = run["processes"]
        .as_array()?
        .iter()
        .filter_map(|p| p["cpu"].as_f64())
        .collect();
    (!cpus.is_empty()).then(|| cpus.iter().sum())
}

fn f(run: &Value, path: &[&str]) -> f64 {
    let mut v = run;
    for key in path {
        v = &v[*key];
    }
    v.as_f64().unwrap_or(f64::NAN)
}

fn pct(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |c| format!("{:.0}%", c * 100.0))
}

pub fn table(jsonl: &str) -> String {
    let runs: Vec<Value> = jsonl
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    // scenario -> impl -> runs
    let mut by: BTreeMap<String, BTreeMap<String, Vec<&Value>>> = BTreeMap::new();
    for run in &runs {
        if let Some((scenario, imp)) = run["label"].as_str().and_then(|l| l.split_once('/')) {
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
            let open: Vec<&&Value> = runs
                .iter()
                .filter(|r| r["load"]["mode"] == "open")
                .collect();
            let ok: Vec<&&Value> = open
                .iter()
                .copied()
                .filter(|r| f(r, &["latency", "p99_ms"]) <= P99_LIMIT_MS && r["lost"] == 0)
                .collect();
            let best = ok
                .iter()
                .max_by(|a, b| f(a, &["delivered_per_s"]).total_cmp(&f(b, &["delivered_per_s"])));
            let peak = runs.iter().find(|r| r["load"]["mode"] == "closed");
            let faults: f64 = ok
                .iter()
                .map(|r| f(r, &["lost"]) + f(r, &["duplicates"]))
                .sum();
            let (rate, lat, cpu) = match best {
                Some(b) => {
                    best_rate.insert(imp.clone(), f(b, &["delivered_per_s"]));
                    (
                        count(f(b, &["delivered_per_s"])),
                        format!(
                            "{:.1} / {:.1} ms",
                            f(b, &["latency", "p50_ms"]),
                            f(b, &["latency", "p99_ms"])
                        ),
                        pct(server_cpu(b)),
                    )
                }
                None => ("none".into(), "-".into(), "-".into()),
            };
            let peak = peak.map_or("-".into(), |p| {
                format!(
                    "{}/s (p99 {:.1} ms)",
                    count(f(p, &["delivered_per_s"])),
                    f(p, &["latency", "p99_ms"])
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
    idle_and_startup(&runs, &mut out);
    out
}

/// The Node single server's sustainable load: 900 sends/s to 100 clients.
fn at_node_load(by: &BTreeMap<String, BTreeMap<String, Vec<&Value>>>, out: &mut String) {
    let Some(single) = by.get("single") else {
        return;
    };
    out.push_str(
        "\n| at 900 msg/s × 100 clients (90,000 deliveries/s) | p50 | p99 | server CPU (one core = 100%) | lost |\n| --- | --- | --- | --- | --- |\n",
    );
    for (imp, runs) in single {
        if let Some(r) = runs
            .iter()
            .find(|r| r["load"]["mode"] == "open" && f(r, &["load", "rate"]) == 900.0)
        {
            let _ = writeln!(
                out,
                "| {imp} | {:.2} ms | {:.2} ms | {} | {} |",
                f(r, &["latency", "p50_ms"]),
                f(r, &["latency", "p99_ms"]),
                pct(server_cpu(r)),
                r["lost"]
            );
        }
    }
}

fn idle_and_startup(runs: &[Value], out: &mut String) {
    let mut rows = Vec::new();
    for run in runs {
        let label = run["label"].as_str().unwrap_or("");
        if let Some(imp) = label.strip_prefix("idle/") {
            let kib = run["processes"][0]["rss_per_client_kib"].as_f64();
            rows.push(format!(
                "| {} idle connections, {imp} | {} KiB resident per connection |",
                run["clients"],
                kib.map_or("n/a".into(), |k| format!("{k:.1}"))
            ));
        } else if let Some(imp) = label.strip_prefix("route/") {
            for r in run["routes"].as_array().into_iter().flatten() {
                rows.push(format!(
                    "| one message, client of {} → client of {}, {imp} ({} msg/s) | p50 {:.2} ms, p99 {:.2} ms |",
                    r["from"].as_str().unwrap_or("?"),
                    r["to"].as_str().unwrap_or("?"),
                    run["load"]["rate"],
                    f(r, &["latency", "p50_ms"]),
                    f(r, &["latency", "p99_ms"]),
                ));
            }
        } else if let Some(what) = label.strip_prefix("startup/") {
            let rss = run["rss_kib"].as_f64().map_or(String::new(), |k| {
                format!(", idle RSS {:.1} MiB", k / 1024.0)
            });
            rows.push(format!(
                "| start-up to ready, {what} | {:.1} ms (median of {}){rss} |",
                f(run, &["median_ms"]),
                run["runs_ms"].as_array().map_or(0, Vec::len)
            ));
        }
    }
    if !rows.is_empty() {
        out.push_str("\n| measure | result |\n| --- | --- |\n");
        for row in rows {
            out.push_str(&row);
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_fastest_run_within_the_p99_bound() {
        let lines = [
            r#"{"label":"single/node","load":{"mode":"open","rate":900},"delivered_per_s":90000,"lost":0,"duplicates":0,"latency":{"p50_ms":4,"p99_ms":40},"processes":[{"cpu":0.7}]}"#,
            r#"{"label":"single/node","load":{"mode":"open","rate":1500},"delivered_per_s":120000,"lost":0,"duplicates":0,"latency":{"p50_ms":40,"p99_ms":400},"processes":[{"cpu":1.0}]}"#,
            r#"{"label":"single/topo","load":{"mode":"open","rate":900},"delivered_per_s":90000,"lost":0,"duplicates":0,"latency":{"p50_ms":1,"p99_ms":3},"processes":[{"cpu":0.1}]}"#,
            r#"{"label":"single/topo","load":{"mode":"open","rate":9000},"delivered_per_s":900000,"lost":0,"duplicates":0,"latency":{"p50_ms":2,"p99_ms":9},"processes":[{"cpu":0.8}]}"#,
            r#"{"label":"idle/topo","clients":10000,"processes":[{"rss_per_client_kib":4.8}]}"#,
            r#"{"label":"startup/topo zmq-3node","median_ms":12.7,"runs_ms":[12.7],"rss_kib":20480}"#,
        ];
        let t = table(&lines.join("\n"));
        assert!(t.contains("| single | node | 90.0 k/s |"), "{t}");
        assert!(t.contains("| single | topo | 900.0 k/s |"), "{t}");
        assert!(t.contains("**10.0×**"), "{t}");
        assert!(t.contains("| topo | 1.00 ms | 3.00 ms | 10% | 0 |"), "{t}");
        assert!(t.contains("4.8 KiB"), "{t}");
        assert!(t.contains("12.7 ms"), "{t}");
    }
}
