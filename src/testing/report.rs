//! How `topo test` results are printed: a line per file and a summary for
//! people, one JSON document for programs, JUnit XML for CI systems.

use super::{FileReport, Verdict};
use serde::Serialize;
use std::fmt::Write;

#[derive(Serialize)]
struct Summary<'a> {
    passed: usize,
    failed: usize,
    /// How many of the failed could not be tested at all.
    errors: usize,
    files: &'a [FileReport],
}

fn counts(reports: &[FileReport]) -> (usize, usize, usize) {
    let passed = reports
        .iter()
        .filter(|r| r.verdict == Verdict::Pass)
        .count();
    let errors = reports
        .iter()
        .filter(|r| r.verdict == Verdict::Error)
        .count();
    (passed, reports.len() - passed, errors)
}

fn label(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Error => "ERROR",
    }
}

/// `a -> d: expected 0, predicted 1, observed 1`.
pub fn cell_line(cell: &super::Cell) -> String {
    let mut line = format!(
        "{} -> {}: expected {}, predicted {}",
        cell.from, cell.to, cell.expected, cell.predicted
    );
    if let Some(observed) = cell.observed {
        let _ = write!(line, ", observed {observed}");
    }
    line
}

pub fn text(reports: &[FileReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let how = if r.ran {
            "predicted and observed"
        } else {
            "predicted"
        };
        let _ = write!(out, "{} {}", label(r.verdict), r.file);
        if r.verdict == Verdict::Pass {
            let cells = r.cells.len();
            let s = if cells == 1 { "" } else { "s" };
            let _ = write!(out, " ({cells} cell{s} {how}, {:.1} s)", r.seconds);
        }
        out.push('\n');
        for cell in r.differences() {
            let _ = writeln!(out, "  {}", cell_line(cell));
        }
        for problem in &r.problems {
            for line in problem.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    let (passed, failed, errors) = counts(reports);
    let _ = write!(out, "{passed} passed, {failed} failed");
    if errors > 0 {
        let _ = write!(out, " ({errors} could not be tested)");
    }
    out.push('\n');
    out
}

pub fn json(reports: &[FileReport]) -> serde_json::Value {
    let (passed, failed, errors) = counts(reports);
    serde_json::to_value(Summary {
        passed,
        failed,
        errors,
        files: reports,
    })
    .unwrap_or_default()
}

/// JUnit XML: one test case per file, a `<failure>` for a differing cell or
/// an invalid file, an `<error>` for a file that could not be tested.
pub fn junit(reports: &[FileReport]) -> String {
    let (_, _, errors) = counts(reports);
    let failures = reports
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .count();
    let seconds: f64 = reports.iter().map(|r| r.seconds).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"topo test\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{seconds:.3}\">",
        reports.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"topo test\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{seconds:.3}\">",
        reports.len()
    );
    for r in reports {
        let _ = write!(
            out,
            "    <testcase classname=\"topo.test\" name=\"{}\" time=\"{:.3}\"",
            escape(&r.file),
            r.seconds
        );
        if r.verdict == Verdict::Pass {
            out.push_str("/>\n");
            continue;
        }
        out.push_str(">\n");
        let mut body: Vec<String> = r.differences().map(cell_line).collect();
        body.extend(r.problems.iter().cloned());
        let differing = r.differences().count();
        let message = match (r.verdict, differing) {
            (Verdict::Error, _) => "could not be tested".to_owned(),
            (_, 0) => "failed".to_owned(),
            (_, 1) => "1 cell differs".to_owned(),
            (_, n) => format!("{n} cells differ"),
        };
        let tag = if r.verdict == Verdict::Error {
            "error"
        } else {
            "failure"
        };
        let _ = writeln!(
            out,
            "      <{tag} message=\"{}\">{}</{tag}>",
            escape(&message),
            escape(&body.join("\n"))
        );
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// XML text and attribute escaping; characters XML 1.0 cannot hold become `?`.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Cell, ExpectSource};
    use super::*;

    fn report(file: &str, verdict: Verdict, observed: Option<u64>) -> FileReport {
        FileReport {
            file: file.into(),
            verdict,
            expect: Some(ExpectSource::Inline),
            ran: observed.is_some(),
            cells: vec![Cell {
                from: "a".into(),
                to: "d".into(),
                expected: 0,
                predicted: u64::from(verdict != Verdict::Pass),
                maybe: 0,
                observed,
            }],
            problems: Vec::new(),
            seconds: 0.5,
        }
    }

    #[test]
    fn text_names_the_differing_cells_and_sums_up() {
        let out = text(&[
            report("ok.yaml", Verdict::Pass, None),
            report("bad<1>.yaml", Verdict::Fail, Some(1)),
        ]);
        assert!(
            out.starts_with("PASS ok.yaml (1 cell predicted, 0.5 s)\n"),
            "{out}"
        );
        assert!(out.contains("FAIL bad<1>.yaml\n  a -> d: expected 0, predicted 1, observed 1\n"));
        assert!(out.ends_with("1 passed, 1 failed\n"), "{out}");
    }

    #[test]
    fn junit_escapes_and_counts() {
        let xml = junit(&[
            report("ok.yaml", Verdict::Pass, None),
            report("bad<1>.yaml", Verdict::Fail, Some(1)),
            report("gone.yaml", Verdict::Error, None),
        ]);
        assert!(
            xml.contains("tests=\"3\" failures=\"1\" errors=\"1\""),
            "{xml}"
        );
        assert!(xml.contains("name=\"bad&lt;1&gt;.yaml\""), "{xml}");
        assert!(xml.contains("<failure message=\"1 cell differs\">a -&gt; d: expected 0"));
        assert!(xml.contains("<error message=\"could not be tested\">"));
        assert!(!xml.contains("bad<1>"));
    }

    #[test]
    fn json_has_one_entry_per_file() {
        let value = json(&[report("bad.yaml", Verdict::Fail, Some(1))]);
        assert_eq!(value["failed"], 1);
        assert_eq!(value["files"][0]["verdict"], "fail");
        assert_eq!(value["files"][0]["cells"][0]["observed"], 1);
        assert_eq!(value["files"][0]["expect"]["kind"], "inline");
    }
}
