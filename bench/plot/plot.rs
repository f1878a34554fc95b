//! The comparison plot: p99 latency against delivered messages/s, one panel
//! per scenario, one line per implementation, from the JSON lines that
//! `topo bench --format json --label SCENARIO/IMPL` printed (open-loop runs
//! only: a rate ladder). SVG only; text is left to the viewer's fonts.
//! The table beside it is `summary.rs`.

use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use topo::bench::plan::Load;
use topo::bench::report::Line;

/// One measured point of a series.
#[derive(Clone, Copy, Debug)]
struct Point {
    /// Offered: the line follows the ladder, so a saturated point bends back.
    offered: f64,
    delivered_per_s: f64,
    p99_ms: f64,
}

type Panels = BTreeMap<String, BTreeMap<String, Vec<Point>>>;

/// Draws the SVG and returns the summary table (Markdown).
pub fn plot_file(input: &Path, svg: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let panels = panels(&text);
    if panels.is_empty() {
        return Err(format!(
            "{}: no open-loop runs labelled SCENARIO/IMPL",
            input.display()
        ));
    }
    draw(&panels, svg).map_err(|e| format!("{}: {e}", svg.display()))?;
    Ok(crate::summary::table(&text))
}

fn panels(text: &str) -> Panels {
    let mut panels = Panels::new();
    for line in text.lines() {
        let Ok(Line::Run(run)) = serde_json::from_str::<Line>(line) else {
            continue;
        };
        let (Some(label), Load::Rate(offered)) = (run.label.as_deref(), run.load) else {
            continue;
        };
        let Some((scenario, series)) = label.split_once('/') else {
            continue;
        };
        if crate::summary::NOT_LADDERS.contains(&scenario) {
            continue;
        }
        let (rate, p99) = (run.delivered_per_s, run.latency.p99_ms);
        if rate > 0.0 && p99 > 0.0 {
            panels
                .entry(scenario.to_owned())
                .or_default()
                .entry(series.to_owned())
                .or_default()
                .push(Point {
                    offered,
                    delivered_per_s: rate,
                    p99_ms: p99,
                });
        }
    }
    for series in panels.values_mut().flat_map(|p| p.values_mut()) {
        series.sort_by(|a, b| a.offered.total_cmp(&b.offered));
    }
    panels
}

const COLORS: [RGBColor; 4] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

fn draw(panels: &Panels, svg: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let width = 520 * panels.len() as u32;
    let root = SVGBackend::new(svg, (width, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((1, panels.len()));
    let all: Vec<Point> = panels
        .values()
        .flat_map(|p| p.values().flatten().copied())
        .collect();
    // Same axes in every panel, so the panels compare at a glance.
    let x_max = all.iter().map(|p| p.delivered_per_s).fold(1e4, f64::max) * 1.5;
    let x_min = all.iter().map(|p| p.delivered_per_s).fold(x_max, f64::min) / 1.5;
    let y_max = all.iter().map(|p| p.p99_ms).fold(1.0, f64::max) * 1.5;
    let y_min = all.iter().map(|p| p.p99_ms).fold(y_max, f64::min).max(0.01) / 1.5;
    let series_names: Vec<&String> = {
        let mut names: Vec<&String> = panels.values().flat_map(|p| p.keys()).collect();
        names.sort();
        names.dedup();
        names
    };
    for (area, (scenario, series)) in areas.iter().zip(panels) {
        let mut chart = ChartBuilder::on(area)
            .caption(scenario, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d((x_min..x_max).log_scale(), (y_min..y_max).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("delivered messages/s")
            .y_desc("p99 latency (ms)")
            .x_label_formatter(&|x| topo::bench::report::count(*x))
            .y_label_formatter(&|y| format!("{y}"))
            .draw()?;
        for (name, points) in series {
            let i = series_names.iter().position(|n| *n == name).unwrap_or(0);
            let color = COLORS[i % COLORS.len()];
            let xy: Vec<(f64, f64)> = points
                .iter()
                .map(|p| (p.delivered_per_s, p.p99_ms))
                .collect();
            chart
                .draw_series(LineSeries::new(xy.clone(), color.stroke_width(2)))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            chart.draw_series(xy.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_panel_per_scenario() {
        use crate::summary::tests::run;
        let lines = [
            run("single/node", Load::Rate(900.0), 90000.0, (4.0, 40.0), 0.5),
            run("single/topo", Load::Rate(900.0), 90000.0, (1.0, 1.5), 0.5),
            run("single/topo", Load::Rate(9000.0), 900000.0, (1.0, 3.0), 0.5),
            run("zmq/topo", Load::Window(8), 900000.0, (1.0, 3.0), 0.5),
            "not json".into(),
        ];
        let panels = panels(&lines.join("\n"));
        assert_eq!(panels.len(), 1, "closed-loop runs are not plotted");
        assert_eq!(panels["single"]["topo"].len(), 2);
        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("plot.svg");
        draw(&panels, &svg).unwrap();
        let svg = std::fs::read_to_string(svg).unwrap();
        assert!(svg.contains("<svg") && svg.contains("single"));
    }
}
