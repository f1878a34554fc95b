//! `topo bench`: the progress line while it loads (stderr, only on a
//! terminal and never with `--format json`), then its report on stdout.

use super::exit::{EXIT_INVALID, EXIT_OK, EXIT_USAGE, Exit};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use topo::bench::Progress;
use topo::bench::report::count;
use topo::command::Format;

/// `topo bench`: its report on stdout, exit 1 when anything was lost.
pub(super) fn bench(args: &topo::bench::BenchArgs) -> Exit {
    use topo::bench::{BenchError, BenchEvent, Outcome};
    let mut bar = (args.format == Format::Text && std::io::stderr().is_terminal()).then(Bar::new);
    let events = |event: BenchEvent<'_>| match event {
        BenchEvent::Diagnostics(text) => eout!("{text}"),
        BenchEvent::Progress(progress) => {
            if let Some(bar) = &mut bar {
                bar.show(&progress);
            }
        }
        BenchEvent::Loaded => {
            if let Some(bar) = &bar {
                bar.finish();
            }
        }
    };
    match topo::bench::bench(args, events) {
        Ok(Outcome::Load(report)) => {
            match args.format {
                Format::Json => outln!("{}", report.to_json(args.label.as_deref())),
                Format::Text => out!("{}", report.to_text()),
            }
            if report.clean() {
                EXIT_OK
            } else {
                EXIT_INVALID
            }
        }
        Ok(Outcome::Startup(startup)) => {
            match args.format {
                Format::Json => outln!("{}", startup.to_json()),
                Format::Text => out!("{}", startup.to_text()),
            }
            EXIT_OK
        }
        // Its diagnostics are all there is to say.
        Err(BenchError::Invalid { .. }) => EXIT_INVALID,
        Err(error) => {
            eprintln!("{error}");
            if error.is_usage() {
                EXIT_USAGE
            } else {
                EXIT_INVALID
            }
        }
    }
}

/// The progress line: phase, time, rates since the last sample.
struct Bar(ProgressBar);

impl Bar {
    fn new() -> Bar {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        Bar(bar)
    }

    fn show(&mut self, progress: &Progress) {
        self.0.set_length(progress.total.as_millis() as u64);
        self.0.set_position(progress.elapsed.as_millis() as u64);
        self.0.set_message(format!(
            "{}: {} sent/s, {} received/s",
            progress.phase,
            count(progress.sent_per_s),
            count(progress.received_per_s),
        ));
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
