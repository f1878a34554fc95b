//! One bench run from start to report: spawns the generator threads, waits
//! for every client to connect, opens the window (after the warm-up), stops
//! the senders, drains, and turns the threads' tallies into a [`Report`].
//! It prints nothing: its progress goes to the caller's [`BenchEvent`]s.

use super::BenchEvent;
use super::load::{Shared, Tally, thread_main};
use super::plan::{Load, LoadPlan};
use super::procstat;
use super::progress::Sampler;
use super::report::{Latency, Process, Report, Route, per_client_kib};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often the coordinator looks at the counters.
const POLL: Duration = Duration::from_millis(5);

/// Why a run measured nothing.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `first` is the first client's error, as the client saw it.
    #[error("{failed} of {clients} clients could not connect: {first}")]
    Connect {
        failed: usize,
        clients: usize,
        first: String,
    },
}

pub fn run(
    plan: LoadPlan,
    pids: &[u32],
    events: &mut dyn FnMut(BenchEvent<'_>),
) -> Result<Report, RunError> {
    procstat::raise_fd_limit();
    let plan = Arc::new(plan);
    let run_tag = (std::process::id() as u64 ^ now_nanos()) as u16 % 10_000;
    let shared = Arc::new(Shared::new(plan.senders, run_tag));
    let rss_before: Vec<Option<u64>> = pids.iter().map(|&p| procstat::rss_kib(Some(p))).collect();

    let threads = plan.threads.clamp(1, plan.clients.max(1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mine: Vec<usize> = (t..plan.clients).step_by(threads).collect();
            let (shared, plan) = (shared.clone(), plan.clone());
            std::thread::Builder::new()
                .name(format!("bench-{t}"))
                .spawn(move || thread_main(shared, plan, mine))
                .expect("a generator thread")
        })
        .collect();
    let collect = |shared: &Shared| -> Vec<Tally> {
        shared.stop_sending.cancel();
        shared.stop_reading.cancel();
        handles
            .into_iter()
            .map(|h| h.join().expect("a generator thread"))
            .collect()
    };

    // Connect every client first: the window measures traffic, not handshakes.
    let connect_start = Instant::now();
    let connect_limit = plan.connect_timeout * (1 + plan.clients as u32 / 1000);
    loop {
        let done = shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed);
        if shared.failed.load(Ordering::Relaxed) > 0 || done >= plan.clients {
            break;
        }
        if connect_start.elapsed() > connect_limit {
            shared.fail(format!("clients not connected after {connect_limit:?}"));
            break;
        }
        std::thread::sleep(POLL);
    }
    let connect_time = connect_start.elapsed();
    if shared.failed.load(Ordering::Relaxed) > 0 {
        let error = shared.first_error.lock().expect("not poisoned").clone();
        collect(&shared);
        return Err(RunError::Connect {
            failed: plan.clients - shared.connected.load(Ordering::Relaxed),
            clients: plan.clients,
            first: error.unwrap_or_default(),
        });
    }

    let sampler = Sampler::new();
    let mut tick = |s: &Shared| {
        if let Some(progress) = sampler.sample(s, &plan) {
            events(BenchEvent::Progress(progress));
        }
    };
    let start = shared.now_ns() + plan.warmup.as_nanos() as u64;
    let end = start + plan.duration.as_nanos() as u64;
    shared.window.0.store(start, Ordering::Relaxed);
    shared.window.1.store(end, Ordering::Relaxed);
    shared.go.cancel();

    wait_until(&shared, start, &mut tick);
    let cpu_start = cpu_snapshot(pids);
    let received_start = shared.received.load(Ordering::Relaxed);
    wait_until(&shared, end, &mut tick);
    let cpu_end = cpu_snapshot(pids);
    let load_average = procstat::load_average();
    let received_window = shared.received.load(Ordering::Relaxed) - received_start;
    let rss_loaded: Vec<Option<u64>> = pids.iter().map(|&p| procstat::rss_kib(Some(p))).collect();
    shared.stop_sending.cancel();
    while shared.senders_done.load(Ordering::Relaxed) < shared.connected_senders(&plan) {
        std::thread::sleep(POLL);
    }

    // Drain: wait for every predicted copy of the window's messages.
    let tallies_expected = expected_in_window(&shared, &plan);
    let drain_start = Instant::now();
    while shared.received_measured.load(Ordering::Relaxed) < tallies_expected
        && drain_start.elapsed() < plan.drain
    {
        tick(&shared);
        std::thread::sleep(POLL);
    }
    // Extras (duplicates) may still be on their way: one more short look.
    std::thread::sleep(Duration::from_millis(50).min(plan.drain));
    events(BenchEvent::Loaded);
    let tallies = collect(&shared);
    Ok(report(
        &shared,
        &plan,
        &tallies,
        Window {
            connect_time,
            received_window,
            cpu: (cpu_start, cpu_end),
            pids,
            rss: (rss_before, rss_loaded),
            load_average,
        },
    ))
}

impl Shared {
    fn connected_senders(&self, plan: &LoadPlan) -> usize {
        // Every client connected (a failure aborts the run), so every sender runs.
        plan.senders.min(self.connected.load(Ordering::Relaxed))
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn wait_until(shared: &Shared, until_ns: u64, mut tick: impl FnMut(&Shared)) {
    loop {
        let now = shared.now_ns();
        if now >= until_ns {
            return;
        }
        tick(shared);
        std::thread::sleep(POLL.min(Duration::from_nanos(until_ns - now)));
    }
}

/// CPU time of this process and of each pid, taken together.
struct CpuSnapshot {
    at: Instant,
    own: Option<Duration>,
    pids: Vec<Option<Duration>>,
}

fn cpu_snapshot(pids: &[u32]) -> CpuSnapshot {
    CpuSnapshot {
        at: Instant::now(),
        own: procstat::cpu_time(None),
        pids: pids.iter().map(|&p| procstat::cpu_time(Some(p))).collect(),
    }
}

fn expected_in_window(shared: &Shared, plan: &LoadPlan) -> u64 {
    (0..plan.senders)
        .map(|s| {
            let (first, end) = measured_range(shared, s);
            let per_message: u64 = (0..plan.clients)
                .map(|c| u64::from(plan.copies(s, c)))
                .sum();
            (end - first) * per_message
        })
        .sum()
}

fn measured_range(shared: &Shared, sender: usize) -> (u64, u64) {
    let (first, end) = &shared.measured[sender];
    let (first, end) = (first.load(Ordering::Relaxed), end.load(Ordering::Relaxed));
    if first == u64::MAX || end <= first {
        (0, 0)
    } else {
        (first, end)
    }
}

/// What the coordinator measured around the window.
struct Window<'a> {
    connect_time: Duration,
    received_window: u64,
    cpu: (CpuSnapshot, CpuSnapshot),
    pids: &'a [u32],
    rss: (Vec<Option<u64>>, Vec<Option<u64>>),
    load_average: Option<f64>,
}

fn report(shared: &Shared, plan: &LoadPlan, tallies: &[Tally], window: Window<'_>) -> Report {
    let mut latency = tallies[0].latency.clone();
    let mut routes = tallies[0].routes.clone();
    for t in &tallies[1..] {
        let _ = latency.add(&t.latency);
        for (sum, h) in routes.iter_mut().zip(&t.routes) {
            let _ = sum.add(h);
        }
    }
    let n = plan.targets.len();
    let routes = routes
        .iter()
        .enumerate()
        .filter(|(i, h)| !h.is_empty() && plan.expected[i / n][i % n] > 0)
        .map(|(i, h)| Route {
            from: plan.targets[i / n].name.clone(),
            to: plan.targets[i % n].name.clone(),
            latency: Latency::from_histogram(h),
        })
        .collect();
    let (mut delivered, mut expected, mut lost, mut duplicates) = (0u64, 0u64, 0u64, 0u64);
    let ranges: Vec<(u64, u64)> = (0..plan.senders)
        .map(|s| measured_range(shared, s))
        .collect();
    for tally in tallies {
        for (local, &client) in tally.clients.iter().enumerate() {
            for (sender, &(first, end)) in ranges.iter().enumerate() {
                let want = plan.copies(sender, client);
                let counts = &tally.counts[local][sender];
                for seq in first..end {
                    let got = u32::from(counts.get(seq as usize).copied().unwrap_or(0));
                    delivered += u64::from(got);
                    expected += u64::from(want);
                    lost += u64::from(want.saturating_sub(got));
                    duplicates += u64::from(got.saturating_sub(want));
                }
            }
        }
    }
    let sent: u64 = ranges.iter().map(|(f, e)| e - f).sum();
    let seconds = plan.duration.as_secs_f64().max(1e-9);
    let (cpu_start, cpu_end) = &window.cpu;
    let wall = cpu_end
        .at
        .duration_since(cpu_start.at)
        .as_secs_f64()
        .max(1e-9);
    let share = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => Some((b.saturating_sub(a)).as_secs_f64() / wall),
        _ => None,
    };
    let processes = window
        .pids
        .iter()
        .enumerate()
        .map(|(i, &pid)| Process {
            pid,
            cpu: share(cpu_start.pids[i], cpu_end.pids[i]),
            rss_before_kib: window.rss.0[i],
            rss_kib: window.rss.1[i],
            rss_per_client_kib: per_client_kib(window.rss.0[i], window.rss.1[i], plan.clients),
        })
        .collect();
    Report {
        targets: plan.targets.iter().map(|t| t.url.clone()).collect(),
        clients: plan.clients,
        senders: plan.senders,
        load: plan.load,
        payload: plan.payload,
        warmup_s: plan.warmup.as_secs_f64(),
        duration_s: plan.duration.as_secs_f64(),
        connect_s: window.connect_time.as_secs_f64(),
        sent,
        sent_per_s: sent as f64 / seconds,
        delivered,
        expected,
        delivered_per_s: delivered as f64 / seconds,
        received_in_window_per_s: window.received_window as f64 / wall,
        lost,
        duplicates,
        foreign: tallies.iter().map(|t| t.foreign).sum(),
        dropped_clients: tallies.iter().map(|t| t.dropped).sum(),
        latency: Latency::from_histogram(&latency),
        routes,
        generator_cpu: share(cpu_start.own, cpu_end.own),
        generator_threads: plan.threads,
        processes,
        idle: matches!(plan.load, Load::Idle),
        load_average: window.load_average,
        label: None,
    }
}
