//! The load itself: client sockets on a few generator threads (one
//! current-thread runtime each, so the generator costs at most `threads`
//! cores), senders in open loop (a rate) or closed loop (a window), and
//! readers that tally every received message into per-thread counters.
//! It knows nothing of topology files or output formats; `run` does.

use super::payload::{self, Stamp};
use super::plan::{Load, LoadPlan};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use hdrhistogram::Histogram;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::{self, Message, protocol::WebSocketConfig};
use tokio_util::sync::CancellationToken;

/// Per client socket: small buffers, so thousands of idle clients stay
/// cheap, yet one read still takes a few hundred 64-byte frames.
const READ_BUFFER: usize = 16 * 1024;
const WRITE_BUFFER: usize = 16 * 1024;
/// Connections opened at once per generator thread.
const CONNECT_PARALLEL: usize = 64;
/// How often a generator thread publishes its counters for the progress
/// line and the drain check.
const PUBLISH_EVERY: Duration = Duration::from_millis(10);
/// Open loop: senders wake this often and send everything due since.
const SEND_TICK: Duration = Duration::from_millis(1);
/// Latency is also kept per route (sender's node → receiver's node) up to
/// this many targets.
const MAX_ROUTE_TARGETS: usize = 8;
/// How late (ns) a tick may wake before the lateness counts as latency.
const TIMER_SLACK: f64 = 2e6;

/// What all generator threads and the coordinator share.
pub struct Shared {
    pub base: Instant,
    pub run: u16,
    /// Start and end of the measured window, ns since `base` (intended send
    /// times): set before `go`.
    pub window: (AtomicU64, AtomicU64),
    pub go: CancellationToken,
    pub stop_sending: CancellationToken,
    pub stop_reading: CancellationToken,
    pub connected: AtomicUsize,
    pub failed: AtomicUsize,
    pub first_error: std::sync::Mutex<Option<String>>,
    /// Every message received (progress).
    pub received: AtomicU64,
    /// Received messages sent inside the window (drain check).
    pub received_measured: AtomicU64,
    pub sent: AtomicU64,
    pub senders_done: AtomicUsize,
    /// Per sender: the next sequence number (a received seq must be below it).
    pub next_seq: Vec<AtomicU64>,
    /// Per sender: first and end (exclusive) seq sent inside the window.
    pub measured: Vec<(AtomicU64, AtomicU64)>,
}

impl Shared {
    pub fn new(senders: usize, run: u16) -> Shared {
        Shared {
            base: Instant::now(),
            run,
            window: (AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)),
            go: CancellationToken::new(),
            stop_sending: CancellationToken::new(),
            stop_reading: CancellationToken::new(),
            connected: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            first_error: std::sync::Mutex::new(None),
            received: AtomicU64::new(0),
            received_measured: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            senders_done: AtomicUsize::new(0),
            next_seq: (0..senders).map(|_| AtomicU64::new(0)).collect(),
            measured: (0..senders)
                .map(|_| (AtomicU64::new(u64::MAX), AtomicU64::new(0)))
                .collect(),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn in_window(&self, sent_ns: u64) -> bool {
        sent_ns >= self.window.0.load(Ordering::Relaxed)
            && sent_ns < self.window.1.load(Ordering::Relaxed)
    }

    pub fn fail(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().expect("not poisoned");
        first.get_or_insert(error);
    }
}

/// What one generator thread observed.
pub struct Tally {
    /// The global client index of each local client.
    pub clients: Vec<usize>,
    /// `counts[local client][sender][seq]`: copies received.
    pub counts: Vec<Vec<Vec<u8>>>,
    /// End-to-end latency (ns from intended send to receipt), window only.
    pub latency: Histogram<u64>,
    /// The same per route, `routes[from target * targets + to target]`
    /// (only for a few targets: each costs a histogram per thread).
    pub routes: Vec<Histogram<u64>>,
    /// Messages that were not this run's (or named no sender of it).
    pub foreign: u64,
    /// Clients whose connection ended before the run did.
    pub dropped: u64,
    received: u64,
    received_measured: u64,
}

impl Tally {
    fn new(clients: Vec<usize>, senders: usize, targets: usize) -> Tally {
        let routes = if targets <= MAX_ROUTE_TARGETS {
            (0..targets * targets)
                .map(|_| {
                    Histogram::new_with_bounds(1_000, 1_000_000_000_000, 2)
                        .expect("valid histogram bounds")
                })
                .collect()
        } else {
            Vec::new()
        };
        Tally {
            routes,
            counts: clients.iter().map(|_| vec![Vec::new(); senders]).collect(),
            clients,
            latency: Histogram::new_with_bounds(1_000, 1_000_000_000_000, 3)
                .expect("valid histogram bounds"),
            foreign: 0,
            dropped: 0,
            received: 0,
            received_measured: 0,
        }
    }
}

/// Runs the clients `mine` (global indices) on this thread until
/// `stop_reading`; returns what they saw.
pub fn thread_main(shared: Arc<Shared>, plan: Arc<LoadPlan>, mine: Vec<usize>) -> Tally {
    let runtime = crate::command::thread_runtime();
    let local = tokio::task::LocalSet::new();
    let tally = Rc::new(RefCell::new(Tally::new(
        mine.clone(),
        plan.senders,
        plan.targets.len(),
    )));
    local.block_on(&runtime, run_clients(&shared, &plan, &mine, &tally));
    drop(local);
    Rc::try_unwrap(tally)
        .map(RefCell::into_inner)
        .unwrap_or_else(|_| panic!("every client task has ended"))
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Result<Socket, tungstenite::Error> {
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER);
    let (socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    Ok(socket)
}

async fn run_clients(
    shared: &Arc<Shared>,
    plan: &Arc<LoadPlan>,
    mine: &[usize],
    tally: &Rc<RefCell<Tally>>,
) {
    let connects = futures_util::stream::iter(mine.iter().enumerate())
        .map(|(local, &global)| async move {
            let url = &plan.targets[plan.target_of(global)].url;
            let result = tokio::time::timeout(plan.connect_timeout, connect(url)).await;
            (local, global, result)
        })
        .buffer_unordered(CONNECT_PARALLEL);
    tokio::pin!(connects);
    let mut tasks = Vec::new();
    while let Some((local, global, result)) = connects.next().await {
        let socket = match result {
            Ok(Ok(socket)) => socket,
            Ok(Err(e)) => {
                shared.fail(format!("{}: {e}", plan.targets[plan.target_of(global)].url));
                continue;
            }
            Err(_) => {
                shared.fail(format!(
                    "{}: no answer in {:?}",
                    plan.targets[plan.target_of(global)].url,
                    plan.connect_timeout
                ));
                continue;
            }
        };
        shared.connected.fetch_add(1, Ordering::Relaxed);
        let reader = Reader {
            shared: shared.clone(),
            tally: tally.clone(),
            local,
            target: plan.target_of(global),
            targets: plan.targets.len(),
            own: None,
        };
        if global < plan.senders {
            let ack = Rc::new(Ack::default());
            let (sink, stream) = socket.split();
            let reader = Reader {
                own: Some((global as u32, ack.clone())),
                ..reader
            };
            tasks.push(tokio::task::spawn_local(reader.run(stream)));
            let sender = send(sink, global, shared.clone(), plan.clone(), ack);
            tasks.push(tokio::task::spawn_local(sender));
        } else {
            tasks.push(tokio::task::spawn_local(reader.run(socket)));
        }
    }
    let publisher = tokio::task::spawn_local(publish_counts(shared.clone(), tally.clone()));
    for task in tasks {
        let _ = task.await;
    }
    let _ = publisher.await;
}

/// Copies this thread's counters into the shared ones every few ms, so the
/// hot path touches no atomic shared with other threads.
async fn publish_counts(shared: Arc<Shared>, tally: Rc<RefCell<Tally>>) {
    let (mut received, mut measured) = (0, 0);
    loop {
        let stop = tokio::select! {
            _ = shared.stop_reading.cancelled() => true,
            _ = tokio::time::sleep(PUBLISH_EVERY) => false,
        };
        let t = tally.borrow();
        shared
            .received
            .fetch_add(t.received - received, Ordering::Relaxed);
        shared
            .received_measured
            .fetch_add(t.received_measured - measured, Ordering::Relaxed);
        (received, measured) = (t.received, t.received_measured);
        if stop {
            return;
        }
    }
}

/// A sender's own messages coming back: what the closed loop waits for.
#[derive(Default)]
struct Ack {
    /// One past the highest own seq received.
    seen: Cell<u64>,
    notify: Notify,
}

struct Reader {
    shared: Arc<Shared>,
    tally: Rc<RefCell<Tally>>,
    local: usize,
    /// This client's target, and how many there are (a sender's target is
    /// its index modulo that, as `LoadPlan::target_of` says).
    target: usize,
    targets: usize,
    own: Option<(u32, Rc<Ack>)>,
}

impl Reader {
    async fn run(
        self,
        mut stream: impl Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
    ) {
        loop {
            let message = tokio::select! {
                biased;
                _ = self.shared.stop_reading.cancelled() => return,
                m = stream.next() => m,
            };
            match message {
                Some(Ok(Message::Text(text))) => self.count(text.as_bytes()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    self.tally.borrow_mut().dropped += 1;
                    // Stay until the end, so the tally can be collected.
                    self.shared.stop_reading.cancelled().await;
                    return;
                }
                Some(Ok(_)) => {}
            }
        }
    }

    fn count(&self, text: &[u8]) {
        let now = self.shared.now_ns();
        let mut tally = self.tally.borrow_mut();
        tally.received += 1;
        let Some(Stamp {
            sender,
            seq,
            sent_ns,
        }) = payload::decode(self.shared.run, text)
        else {
            tally.foreign += 1;
            return;
        };
        // Only seqs already handed out: a stray message cannot grow the table.
        let sent = self.shared.next_seq.get(sender as usize);
        if sent.is_none_or(|next| seq >= next.load(Ordering::Relaxed)) {
            tally.foreign += 1;
            return;
        }
        let counts = &mut tally.counts[self.local][sender as usize];
        let i = seq as usize;
        if counts.len() <= i {
            counts.resize(i + 1, 0);
        }
        counts[i] = counts[i].saturating_add(1);
        if self.shared.in_window(sent_ns) {
            tally.received_measured += 1;
            let latency = now.saturating_sub(sent_ns);
            tally.latency.saturating_record(latency);
            let route = (sender as usize % self.targets) * self.targets + self.target;
            if let Some(h) = tally.routes.get_mut(route) {
                h.saturating_record(latency);
            }
        }
        if let Some((me, ack)) = &self.own
            && *me == sender
            && seq + 1 > ack.seen.get()
        {
            ack.seen.set(seq + 1);
            ack.notify.notify_one();
        }
    }
}

/// One sender: waits for `go`, sends until the window ends, then reports done.
async fn send(
    mut sink: impl Sink<Message, Error = tungstenite::Error> + Unpin,
    index: usize,
    shared: Arc<Shared>,
    plan: Arc<LoadPlan>,
    ack: Rc<Ack>,
) {
    tokio::select! {
        _ = shared.go.cancelled() => {}
        _ = shared.stop_sending.cancelled() => {}
    }
    let mut out = MessageMaker {
        index,
        seq: 0,
        text: String::with_capacity(plan.payload),
        shared: &shared,
        plan: &plan,
    };
    let result = match plan.load {
        Load::Rate(total) => open_loop(&mut sink, &mut out, total / plan.senders as f64).await,
        Load::Window(window) => closed_loop(&mut sink, &mut out, &ack, u64::from(window)).await,
        Load::Idle => Ok(()),
    };
    if let Err(e) = result {
        shared.fail(format!("sender {index}: {e}"));
    }
    shared.senders_done.fetch_add(1, Ordering::Relaxed);
}

/// Builds and queues one sender's messages.
struct MessageMaker<'a> {
    index: usize,
    seq: u64,
    text: String,
    shared: &'a Shared,
    plan: &'a LoadPlan,
}

impl MessageMaker<'_> {
    /// Queues the next message stamped `sent_ns`; `false` (nothing queued)
    /// once the window is over.
    async fn feed(
        &mut self,
        sink: &mut (impl Sink<Message, Error = tungstenite::Error> + Unpin),
        sent_ns: u64,
    ) -> Result<bool, tungstenite::Error> {
        let end = self.shared.window.1.load(Ordering::Relaxed);
        if sent_ns >= end || self.shared.stop_sending.is_cancelled() {
            return Ok(false);
        }
        let stamp = Stamp {
            sender: self.index as u32,
            seq: self.seq,
            sent_ns,
        };
        payload::encode(self.shared.run, stamp, self.plan.payload, &mut self.text);
        // Published before sending, so a reader never sees a seq beyond it.
        self.shared.next_seq[self.index].store(self.seq + 1, Ordering::Relaxed);
        if self.shared.in_window(sent_ns) {
            let (first, last) = &self.shared.measured[self.index];
            first.fetch_min(self.seq, Ordering::Relaxed);
            last.store(self.seq + 1, Ordering::Relaxed);
        }
        self.seq += 1;
        self.shared.sent.fetch_add(1, Ordering::Relaxed);
        sink.feed(Message::text(self.text.clone())).await?;
        Ok(true)
    }
}

/// Sends at `rate` messages/s, each stamped with the time it was due, so a
/// server that makes us wait shows up as latency (no coordinated omission).
async fn open_loop(
    sink: &mut (impl Sink<Message, Error = tungstenite::Error> + Unpin),
    out: &mut MessageMaker<'_>,
    rate: f64,
) -> Result<(), tungstenite::Error> {
    let period = 1e9 / rate.max(1e-3);
    // Every sender runs on the same clock from the window's start, so the
    // messages due in one tick leave together, as many users of a busy
    // server would: each is still stamped with its own due time.
    let start =
        out.shared.window.0.load(Ordering::Relaxed) as f64 - out.plan.warmup.as_nanos() as f64;
    let mut tick = tokio::time::interval(SEND_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = out.shared.stop_sending.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let now = out.shared.now_ns() as f64;
        let mut any = false;
        loop {
            let due = start + period * out.seq as f64;
            if due > now {
                break;
            }
            // The 1 ms clock itself wakes us up to ~1 ms late: that much is
            // the generator's, not the server's; any later is charged.
            let stamp = now.min(due + TIMER_SLACK);
            if !out.feed(sink, stamp as u64).await? {
                sink.flush().await?;
                return Ok(());
            }
            any = true;
        }
        if any {
            sink.flush().await?;
        }
    }
}

/// Keeps `window` of this sender's messages unanswered: each one it gets
/// back (its own client receives it: rule 1 of docs/topology-format.md) lets the next one go.
async fn closed_loop(
    sink: &mut (impl Sink<Message, Error = tungstenite::Error> + Unpin),
    out: &mut MessageMaker<'_>,
    ack: &Ack,
    window: u64,
) -> Result<(), tungstenite::Error> {
    loop {
        let mut any = false;
        while out.seq < ack.seen.get() + window {
            if !out.feed(sink, out.shared.now_ns()).await? {
                sink.flush().await?;
                return Ok(());
            }
            any = true;
        }
        if any {
            sink.flush().await?;
        }
        tokio::select! {
            _ = out.shared.stop_sending.cancelled() => return Ok(()),
            _ = ack.notify.notified() => {}
            // A lost message would stall the window for good: send on anyway.
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                ack.seen.set(out.seq);
            }
        }
    }
}
