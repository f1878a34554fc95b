//! One WebSocket client, in one task: reads its frames into the router,
//! writes what the hub delivers in batches, pings every `ping_interval`,
//! and closes with a code saying why. Both directions are polled by the
//! same future (no split halves, no writer task, no channel between them):
//! an idle client costs one task. A write the socket does not take never
//! stops the reading, and a backlog reaching `send_queue` disconnects the
//! client (1008) without the hub ever waiting for it.

use super::close::CloseCode;
use super::router::NodeRouter;
use crate::model::Limits;
use crate::transport::Text;
use axum::BoxError;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::task::{ArcWake, AtomicWaker, waker_ref};
use futures_util::{SinkExt, StreamExt};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// Messages written per flush at most, so one busy client flushes regularly.
const MAX_BATCH: usize = 64;
/// A close frame to a client that stopped reading is abandoned after this.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a write blocked on a full socket looks at the backlog.
const STALL_CHECK: Duration = Duration::from_millis(20);

/// A goodbye: the close frame, and whether to read the client's frames
/// until its close reply (when what it sent made us close, it may still be
/// sending: closing the socket on unread data would reset the connection
/// before it reads our frame).
type Goodbye = (CloseFrame, bool);

/// Serves the client on `ws` until either side closes or `node` is cancelled.
pub(super) async fn run(
    ws: &mut WebSocket,
    router: &NodeRouter,
    node: &CancellationToken,
    limits: &Limits,
) {
    if node.is_cancelled() {
        return;
    }
    let (mut rx, _guard) = router.hub.join();
    tracing::debug!(clients = router.hub.clients(), "client connected");
    let mut out = Outgoing::default();
    let read = Arc::new(ReadWake {
        woken: AtomicBool::new(true),
        task: AtomicWaker::new(),
    });
    let goodbye = serve(ws, &mut rx, &mut out, &read, router, node, limits).await;
    if let Some((frame, drain)) = goodbye {
        tracing::debug!(code = frame.code, reason = %frame.reason, "closing client");
        close(ws, frame, drain).await;
    }
    tracing::debug!("client disconnected");
}

/// What is being written: a ping, then the batch (kept in reverse order, so
/// the next message is popped off the end), then a flush.
#[derive(Default)]
struct Outgoing {
    writing: bool,
    ping: bool,
    batch: Vec<Text>,
}

enum Event {
    Delivered(Result<Text, RecvError>),
    Read(Option<Result<Message, axum::Error>>),
    Written(Result<(), axum::Error>),
    Timer,
}

/// The session's loop; `None` when the connection ends without a goodbye
/// (the client closed, or the socket failed).
async fn serve(
    ws: &mut WebSocket,
    rx: &mut Receiver<Text>,
    out: &mut Outgoing,
    read: &Arc<ReadWake>,
    router: &NodeRouter,
    node: &CancellationToken,
    limits: &Limits,
) -> Option<Goodbye> {
    let mut clock = Clock::new(limits);
    let sleep = tokio::time::sleep_until(clock.deadline());
    // Made once: a new one per turn would enter and leave the token's
    // list of waiters each time.
    let cancelled = node.cancelled();
    tokio::pin!(sleep, cancelled);
    loop {
        let writing = out.writing;
        // Biased: deliveries are taken before the client's frames, so a
        // client that sends a lot still reads what it is sent.
        let event = tokio::select! {
            biased;
            _ = &mut cancelled => return Some((close_frame(CloseCode::GoingAway, "node shutting down"), false)),
            msg = rx.recv(), if !writing => Event::Delivered(msg),
            io = poll_fn(|cx| poll_io(ws, out, read, cx)) => io,
            _ = clock.wait(sleep.as_mut(), writing) => Event::Timer,
        };
        match event {
            Event::Delivered(msg) => {
                if let Err(goodbye) = start_batch(msg, rx, out, limits).await {
                    return Some(goodbye);
                }
                // Written at once if the socket takes it (it mostly does),
                // without a turn of the loop.
                let written = poll_fn(|cx| Poll::Ready(poll_write(ws, out, cx))).await;
                if let Poll::Ready(written) = written {
                    out.writing = false;
                    if let Some(end) = wrote(written, rx, out, &mut clock, limits) {
                        return end;
                    }
                }
            }
            Event::Read(frame) => {
                clock.last_seen = Instant::now();
                if let Some(end) = on_frame(frame, router) {
                    return end;
                }
            }
            Event::Written(written) => {
                if let Some(end) = wrote(written, rx, out, &mut clock, limits) {
                    return end;
                }
            }
            Event::Timer => {
                if let Some(goodbye) = clock.fired(rx, out, limits) {
                    return Some(goodbye);
                }
                sleep.as_mut().reset(clock.deadline());
            }
        }
    }
}

/// After a write; `Some` ends the session.
fn wrote(
    written: Result<(), axum::Error>,
    rx: &Receiver<Text>,
    out: &mut Outgoing,
    clock: &mut Clock,
    limits: &Limits,
) -> Option<Option<Goodbye>> {
    if let Err(e) = written {
        tracing::debug!(error = %e, "client write error");
        return Some(None);
    }
    clock.stall = None;
    // Freed: an idle client holds no batch.
    out.batch = Vec::new();
    (rx.len() >= limits.send_queue).then(|| Some(too_slow(rx.len() as u64, limits)))
}

/// Takes `msg` and what else is queued (up to [`MAX_BATCH`]) for one write.
async fn start_batch(
    msg: Result<Text, RecvError>,
    rx: &mut Receiver<Text>,
    out: &mut Outgoing,
    limits: &Limits,
) -> Result<(), Goodbye> {
    let text = match msg {
        Ok(text) => text,
        Err(RecvError::Lagged(missed)) => return Err(too_slow(missed, limits)),
        Err(RecvError::Closed) => {
            return Err((
                close_frame(CloseCode::GoingAway, "node shutting down"),
                false,
            ));
        }
    };
    // Let the sessions woken together with this one queue their messages
    // first: one flush then carries several (a yield costs far less than a
    // write syscall).
    tokio::task::yield_now().await;
    // Allocated per batch, once, sized by what is queued then (64 slots
    // kept per client would cost 2 KiB each).
    out.batch.reserve_exact((rx.len() + 1).min(MAX_BATCH));
    out.batch.push(text);
    while out.batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(text) => out.batch.push(text),
            Err(TryRecvError::Lagged(missed)) => return Err(too_slow(missed, limits)),
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    out.batch.reverse();
    out.writing = true;
    Ok(())
}

/// Handles a frame from the client; `Some` ends the session.
fn on_frame(
    frame: Option<Result<Message, axum::Error>>,
    router: &NodeRouter,
) -> Option<Option<Goodbye>> {
    match frame {
        Some(Ok(Message::Text(text))) => router.from_client(text),
        Some(Ok(Message::Binary(_))) => {
            let frame = close_frame(CloseCode::Unsupported, "binary frames are not supported");
            return Some(Some((frame, true)));
        }
        Some(Ok(Message::Close(_))) | None => return Some(None),
        Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
        Some(Err(e)) => {
            return match refusal(e) {
                Ok(frame) => Some(Some((frame, true))),
                Err(e) => {
                    tracing::debug!(error = %e, "client read error");
                    Some(None)
                }
            };
        }
    }
    None
}

/// The write in progress first (so reading never starves it), then a read.
fn poll_io(
    ws: &mut WebSocket,
    out: &mut Outgoing,
    read: &Arc<ReadWake>,
    cx: &mut Context<'_>,
) -> Poll<Event> {
    if out.writing
        && let Poll::Ready(written) = poll_write(ws, out, cx)
    {
        out.writing = false;
        return Poll::Ready(Event::Written(written));
    }
    if !read.woken.swap(false, Ordering::AcqRel) {
        return Poll::Pending;
    }
    read.task.register(cx.waker());
    let waker = waker_ref(read);
    let frame = ready!(ws.poll_next_unpin(&mut Context::from_waker(&waker)));
    // More may be buffered: read again next time.
    read.woken.store(true, Ordering::Release);
    Poll::Ready(Event::Read(frame))
}

/// The waker the read side is polled with: it notes that the socket (not a
/// delivery or a timer) woke the task, so the session polls the read side
/// (about 800 instructions through tungstenite even with nothing to read)
/// only then.
struct ReadWake {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl ArcWake for ReadWake {
    fn wake_by_ref(this: &Arc<Self>) {
        this.woken.store(true, Ordering::Release);
        this.task.wake();
    }
}

/// Feeds the ping and the batch to tungstenite, then flushes: several
/// messages per write syscall.
fn poll_write(
    ws: &mut WebSocket,
    out: &mut Outgoing,
    cx: &mut Context<'_>,
) -> Poll<Result<(), axum::Error>> {
    loop {
        if out.ping {
            ready!(ws.poll_ready_unpin(cx))?;
            out.ping = false;
            ws.start_send_unpin(Message::Ping(Default::default()))?;
        } else if !out.batch.is_empty() {
            ready!(ws.poll_ready_unpin(cx))?;
            if let Some(text) = out.batch.pop() {
                ws.start_send_unpin(Message::Text(text))?;
            }
        } else {
            return ws.poll_flush_unpin(cx);
        }
    }
}

/// The session's one timer: the next ping, the idle deadline (any frame,
/// a pong too, proves the client alive) and, while a write waits for the
/// socket, the next look at the backlog. It is reset when it fires, not per
/// message.
struct Clock {
    ping_interval: Duration,
    idle_timeout: Duration,
    next_ping: Instant,
    last_seen: Instant,
    stall: Option<Instant>,
}

impl Clock {
    fn new(limits: &Limits) -> Clock {
        let now = Instant::now();
        Clock {
            ping_interval: limits.ping_interval,
            idle_timeout: limits.idle_timeout,
            next_ping: now + limits.ping_interval,
            last_seen: now,
            stall: None,
        }
    }

    fn deadline(&self) -> Instant {
        let due = self.next_ping.min(self.last_seen + self.idle_timeout);
        self.stall.map_or(due, |stall| stall.min(due))
    }

    /// Polled only when the write (if any) is pending: then arms the
    /// backlog check, so a socket that takes everything costs no timer.
    async fn wait(&mut self, mut sleep: Pin<&mut Sleep>, writing: bool) {
        if writing && self.stall.is_none() {
            let at = Instant::now() + STALL_CHECK;
            self.stall = Some(at);
            if at < sleep.deadline() {
                sleep.as_mut().reset(at);
            }
        }
        sleep.await
    }

    /// Does what is due; `Some` ends the session.
    fn fired(
        &mut self,
        rx: &Receiver<Text>,
        out: &mut Outgoing,
        limits: &Limits,
    ) -> Option<Goodbye> {
        let now = Instant::now();
        if self.stall.is_some_and(|at| at <= now) {
            self.stall = None;
            if out.writing && rx.len() >= limits.send_queue {
                return Some(too_slow(rx.len() as u64, limits));
            }
        }
        if now >= self.last_seen + self.idle_timeout {
            tracing::info!(idle_timeout = ?self.idle_timeout, "client silent, dropping it");
            return Some((
                close_frame(CloseCode::Policy, "idle timeout: no pong"),
                true,
            ));
        }
        if now >= self.next_ping {
            // Delayed rather than bunched when the write takes a while.
            self.next_ping = now + self.ping_interval;
            out.ping = true;
            out.writing = true;
        }
        None
    }
}

/// Sends `frame` (what was queued before it goes first) and, with `drain`,
/// reads off the client's frames until its close reply; bounded by
/// [`CLOSE_TIMEOUT`] for a client that stopped reading or never replies.
async fn close(ws: &mut WebSocket, frame: CloseFrame, drain: bool) {
    let mut close = Some(Message::Close(Some(frame)));
    let mut sent = false;
    let mut drained = !drain;
    let finish = poll_fn(|cx| {
        if !sent {
            sent = poll_send(ws, &mut close, cx).is_ready();
        }
        while !drained {
            match ws.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(Message::Close(_))) | None) => drained = true,
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(e))) => drained = refusal(e).is_err(),
                Poll::Pending => break,
            }
        }
        if sent && drained {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    });
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, finish).await;
}

fn poll_send(
    ws: &mut WebSocket,
    msg: &mut Option<Message>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), axum::Error>> {
    if msg.is_some() {
        ready!(ws.poll_ready_unpin(cx))?;
        if let Some(msg) = msg.take() {
            ws.start_send_unpin(msg)?;
        }
    }
    ws.poll_flush_unpin(cx)
}

/// The close frame for a read error caused by what the client sent (a
/// message too big: 1009, invalid UTF-8: 1007); `Err` for a lost connection.
fn refusal(e: axum::Error) -> Result<CloseFrame, BoxError> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match e.into_inner().downcast::<WsError>() {
        Ok(e) => match *e {
            WsError::Capacity(_) => Ok(close_frame(CloseCode::TooBig, "message too big")),
            WsError::Utf8(_) => Ok(close_frame(CloseCode::InvalidData, "invalid UTF-8")),
            other => Err(other.into()),
        },
        Err(other) => Err(other),
    }
}

fn too_slow(behind: u64, limits: &Limits) -> Goodbye {
    tracing::warn!(
        behind,
        send_queue = limits.send_queue,
        "client not reading, disconnecting it"
    );
    (
        close_frame(CloseCode::Policy, "too slow: send queue full"),
        false,
    )
}

fn close_frame(code: CloseCode, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }
}
