//! One WebSocket client, in one task: reads its frames into the router,
//! writes what the hub delivers in batches, pings every `ping_interval`,
//! and closes with a code saying why. Both directions are polled by the
//! same future (no split halves, no writer task, no channel between them):
//! an idle client costs one task. A write the socket does not take never
//! stops the reading, and a backlog reaching `send_queue` disconnects the
//! client (1008) without the hub ever waiting for it.
//!
//! The framing is `frame`'s: between frames a session holds no buffer.
//! Bytes are read into a buffer on the stack and decoded at once; only a
//! frame cut by the read is kept (on the heap, sized by its header). What
//! the hub delivers is already a whole server frame shared by every
//! client, so a batch is written as it is, with one vectored write.

use super::close::CloseCode;
use super::frame::{self, Decoder, Event, TextFrame};
use super::router::NodeRouter;
use crate::model::Limits;
use crate::transport::Text;
use bytes::Bytes;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// Messages written per batch at most, so one busy client writes regularly.
const MAX_BATCH: usize = 64;
/// Buffers handed to one vectored write (the kernel takes up to 1,024).
const MAX_SLICES: usize = 64;
/// Bytes read per read call, into a buffer on the stack: several chat
/// lines per call, a 64 KiB message in eight.
const READ_CHUNK: usize = 8192;
/// A close frame to a client that stopped reading is abandoned after this.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a write blocked on a full socket looks at the backlog.
const STALL_CHECK: Duration = Duration::from_millis(20);

/// A close frame to send, and whether to read the client's frames until
/// its close reply (when what it sent made us close, it may still be
/// sending: closing the socket on unread data would reset the connection
/// before it reads our frame). A few bytes: the session's future holds one.
#[derive(Debug, Clone, Copy)]
struct Goodbye {
    why: Why,
    drain: bool,
}

/// Why the node closes, which makes the close frame's code and reason.
#[derive(Debug, Clone, Copy)]
enum Why {
    ShuttingDown,
    Binary,
    /// What the client sent broke a rule of the framing or a limit.
    Refused(CloseCode),
    IdleTimeout,
    TooSlow,
    /// The answer to the client's close frame: its code, if it had one.
    Echo(Option<u16>),
}

impl Goodbye {
    fn new(why: Why, drain: bool) -> Goodbye {
        Goodbye { why, drain }
    }

    fn code(self) -> Option<u16> {
        let code = match self.why {
            Why::ShuttingDown => CloseCode::GoingAway,
            Why::Binary => CloseCode::Unsupported,
            Why::Refused(code) => code,
            Why::IdleTimeout | Why::TooSlow => CloseCode::Policy,
            Why::Echo(code) => return code,
        };
        Some(code.into())
    }

    fn reason(self) -> &'static str {
        match self.why {
            Why::ShuttingDown => "node shutting down",
            Why::Binary => "binary frames are not supported",
            Why::Refused(CloseCode::TooBig) => "message too big",
            Why::Refused(CloseCode::InvalidData) => "invalid UTF-8",
            Why::Refused(_) => "protocol error",
            Why::IdleTimeout => "idle timeout: no pong",
            Why::TooSlow => "too slow: send queue full",
            Why::Echo(_) => "",
        }
    }
}

/// How the session ends: with a close frame to send, or without (the
/// connection was lost).
type End = Option<Goodbye>;

/// Serves the client on `io` until either side closes or `node` is
/// cancelled. `early` is what the client sent right after its handshake
/// (read by the HTTP server with the request).
///
/// Not an `async fn`: its future would keep the arguments besides the
/// session made of them, and `early` for the connection's life. Here the
/// session is made and `early` read and dropped before the future exists.
pub(super) fn run<'a, S>(
    io: &'a mut S,
    early: Bytes,
    router: &'a NodeRouter,
    node: &'a CancellationToken,
    limits: &'a Limits,
) -> impl Future<Output = ()> + 'a
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut joined = (!node.is_cancelled()).then(|| {
        let (rx, guard) = router.hub.join();
        tracing::debug!(clients = router.hub.clients(), "client connected");
        let mut session = Session {
            io,
            router,
            node,
            limits,
            rx,
            link: Link {
                decoder: Decoder::new(limits.max_message_bytes),
                out: Outgoing::default(),
            },
        };
        let (_, early_end) = session.link.received(&early, router);
        (session, guard, early_end)
    });
    drop(early);
    async move {
        // Borrowed where it was captured, not moved into new locals.
        let Some((session, _guard, early_end)) = &mut joined else {
            return;
        };
        let end = match *early_end {
            Some(end) => end,
            None => serve(session).await,
        };
        if let Some(goodbye) = end {
            close(session, goodbye).await;
        }
        tracing::debug!("client disconnected");
    }
}

/// What a session works with: the client's socket and receiver, the node's
/// router, token and limits, and the protocol state. One struct, so the
/// futures of the session's steps borrow it once (a reference each)
/// instead of each holding every reference.
struct Session<'a, S> {
    io: &'a mut S,
    router: &'a NodeRouter,
    node: &'a CancellationToken,
    limits: &'a Limits,
    rx: Receiver<TextFrame>,
    link: Link,
}

/// The session's protocol state: the decoder of what the client sends,
/// and what is being written to it.
struct Link {
    decoder: Decoder,
    out: Outgoing,
}

impl Link {
    /// Decodes `input` and acts on each frame; whether a frame ended (the
    /// client is alive), and `Some` when the session must end.
    fn received(&mut self, mut input: &[u8], router: &NodeRouter) -> (bool, Option<End>) {
        let mut alive = false;
        while !input.is_empty() {
            let event = match self.decoder.feed(&mut input) {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "client broke the protocol");
                    let goodbye = Goodbye::new(Why::Refused(e.close_code()), true);
                    return (alive, Some(Some(self.refuse(goodbye, input))));
                }
            };
            alive = true;
            match event {
                Event::Text(text) => router.from_client(Text::from(text)),
                Event::Fragment | Event::Pong => {}
                // Only the latest ping is answered (RFC 6455 §5.5.3): a
                // client that pings and never reads queues one pong at most.
                Event::Ping(payload) => self.out.pong = Some(frame::pong(&payload)),
                Event::Binary => {
                    let goodbye = Goodbye::new(Why::Binary, true);
                    return (alive, Some(Some(self.refuse(goodbye, input))));
                }
                Event::Close(code) => {
                    // Its code echoed; it sends nothing more.
                    let goodbye = Goodbye::new(Why::Echo(code), false);
                    return (alive, Some(Some(goodbye)));
                }
            }
        }
        (alive, None)
    }

    /// The node refuses what the client sent: the rest of `input` is
    /// skipped frame by frame (the decoder stays in step for the drain
    /// after our close frame); no drain if the client's close is in it.
    fn refuse(&mut self, mut goodbye: Goodbye, mut input: &[u8]) -> Goodbye {
        self.decoder.discard();
        while let Ok(Some(event)) = self.decoder.feed(&mut input) {
            if matches!(event, Event::Close(_)) {
                goodbye.drain = false;
            }
        }
        goodbye
    }
}

/// What is being written: whole frames, in order, and how far; the ping
/// and pong that are due go out with the next write.
#[derive(Default)]
struct Outgoing {
    frames: Vec<Bytes>,
    /// Frames written whole.
    sent: usize,
    /// Bytes of `frames[sent]` written (a frame is never interrupted).
    offset: usize,
    ping: bool,
    pong: Option<Bytes>,
}

impl Outgoing {
    fn writing(&self) -> bool {
        !self.frames.is_empty()
    }

    /// The due ping and pong, ahead of what is added next.
    fn push_controls(&mut self) {
        if std::mem::take(&mut self.ping) {
            self.frames.push(Bytes::from_static(frame::PING));
        }
        if let Some(pong) = self.pong.take() {
            self.frames.push(pong);
        }
    }

    /// Starts writing the due ping and pong if nothing is being written
    /// (else they follow the frames in progress).
    fn start_controls(&mut self) {
        if !self.writing() {
            self.push_controls();
        }
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let left = self.frames[self.sent].len() - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.sent += 1;
            self.offset = 0;
        }
    }
}

enum Step {
    Delivered(Result<TextFrame, RecvError>),
    Read { alive: bool, end: Option<End> },
    Written(io::Result<()>),
    Timer,
}

/// The session's loop.
async fn serve<S>(s: &mut Session<'_, S>) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut clock = Clock::new(s.limits);
    let sleep = tokio::time::sleep_until(clock.deadline(s.limits));
    // Made once: a new one per turn would enter and leave the token's
    // list of waiters each time.
    let cancelled = s.node.cancelled();
    tokio::pin!(sleep, cancelled);
    loop {
        let writing = s.link.out.writing();
        // Biased: deliveries are taken before the client's frames, so a
        // client that sends a lot still reads what it is sent.
        let step = tokio::select! {
            biased;
            _ = &mut cancelled => {
                return Some(Goodbye::new(Why::ShuttingDown, false));
            }
            msg = s.rx.recv(), if !writing => Step::Delivered(msg),
            step = poll_fn(|cx| poll_io(s.io, &mut s.link, s.router, cx)) => step,
            _ = clock.wait(sleep.as_mut(), writing) => Step::Timer,
        };
        match step {
            Step::Delivered(msg) => {
                if let Err(goodbye) = start_batch(msg, &mut s.rx, &mut s.link.out, s.limits).await {
                    return Some(goodbye);
                }
                // Written at once if the socket takes it (it mostly does),
                // without a turn of the loop.
                let out = &mut s.link.out;
                let written = poll_fn(|cx| Poll::Ready(poll_write(s.io, out, cx))).await;
                if let Poll::Ready(written) = written
                    && let Some(end) = wrote(written, &s.rx, &mut s.link.out, &mut clock, s.limits)
                {
                    return end;
                }
            }
            Step::Read { alive, end } => {
                if alive {
                    clock.last_seen = Instant::now();
                }
                if let Some(end) = end {
                    return end;
                }
                s.link.out.start_controls();
            }
            Step::Written(written) => {
                if let Some(end) = wrote(written, &s.rx, &mut s.link.out, &mut clock, s.limits) {
                    return end;
                }
            }
            Step::Timer => {
                if let Some(goodbye) = clock.fired(&s.rx, &mut s.link.out, s.limits) {
                    return Some(goodbye);
                }
                s.link.out.start_controls();
                sleep.as_mut().reset(clock.deadline(s.limits));
            }
        }
    }
}

/// After a write ended; `Some` ends the session.
fn wrote(
    written: io::Result<()>,
    rx: &Receiver<TextFrame>,
    out: &mut Outgoing,
    clock: &mut Clock,
    limits: &Limits,
) -> Option<End> {
    if let Err(e) = written {
        tracing::debug!(error = %e, "client write error");
        return Some(None);
    }
    clock.stall = None;
    if rx.len() >= limits.send_queue {
        return Some(Some(too_slow(rx.len() as u64, limits)));
    }
    out.start_controls();
    None
}

/// Takes `msg` and what else is queued (up to [`MAX_BATCH`]) for one write.
async fn start_batch(
    msg: Result<TextFrame, RecvError>,
    rx: &mut Receiver<TextFrame>,
    out: &mut Outgoing,
    limits: &Limits,
) -> Result<(), Goodbye> {
    let first = match msg {
        Ok(frame) => frame,
        Err(RecvError::Lagged(missed)) => return Err(too_slow(missed, limits)),
        Err(RecvError::Closed) => {
            return Err(Goodbye::new(Why::ShuttingDown, false));
        }
    };
    // Let the sessions woken together with this one queue their messages
    // first: one write then carries several (a yield costs far less than a
    // write syscall).
    tokio::task::yield_now().await;
    // Allocated per batch, once, sized by what is queued then (64 slots
    // kept per client would cost 2 KiB each), and freed once written.
    out.frames
        .reserve_exact((rx.len() + 1).min(MAX_BATCH) + usize::from(out.ping) + 1);
    out.push_controls();
    let start = out.frames.len();
    out.frames.push(first.wire());
    while out.frames.len() - start < MAX_BATCH {
        match rx.try_recv() {
            Ok(frame) => out.frames.push(frame.wire()),
            Err(TryRecvError::Lagged(missed)) => return Err(too_slow(missed, limits)),
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    Ok(())
}

/// The write in progress first (so reading never starves it), then a read.
fn poll_io<S>(io: &mut S, link: &mut Link, router: &NodeRouter, cx: &mut Context<'_>) -> Poll<Step>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if link.out.writing()
        && let Poll::Ready(written) = poll_write(io, &mut link.out, cx)
    {
        return Poll::Ready(Step::Written(written));
    }
    let mut buf = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
    let mut buf = ReadBuf::uninit(&mut buf);
    let read = ready!(Pin::new(&mut *io).poll_read(cx, &mut buf));
    let (alive, end) = match read {
        Ok(()) if buf.filled().is_empty() => (false, Some(None)),
        Ok(()) => link.received(buf.filled(), router),
        Err(e) => {
            tracing::debug!(error = %e, "client read error");
            (false, Some(None))
        }
    };
    Poll::Ready(Step::Read { alive, end })
}

/// Writes the frames in progress, several per (vectored) write call, each
/// as it is: no copy. Once all are written the batch is freed, so an idle
/// client holds none.
fn poll_write<S>(io: &mut S, out: &mut Outgoing, cx: &mut Context<'_>) -> Poll<io::Result<()>>
where
    S: AsyncWrite + Unpin,
{
    while out.sent < out.frames.len() {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let pending = &out.frames[out.sent..];
        let n = pending.len().min(MAX_SLICES);
        for (i, (slice, frame)) in slices.iter_mut().zip(pending).enumerate() {
            let from = if i == 0 { out.offset } else { 0 };
            *slice = IoSlice::new(&frame[from..]);
        }
        let written = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]))?;
        if written == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        out.advance(written);
    }
    out.frames = Vec::new();
    out.sent = 0;
    out.offset = 0;
    Pin::new(io).poll_flush(cx)
}

/// The session's one timer: the next ping, the idle deadline (any whole
/// frame, a pong too, proves the client alive; a frame never finished
/// does not) and, while a write waits for the socket, the next look at the
/// backlog. It is reset when it fires, not per message.
/// The intervals are the limits' (not copied: an idle session's future
/// holds the clock).
struct Clock {
    next_ping: Instant,
    last_seen: Instant,
    stall: Option<Instant>,
}

impl Clock {
    fn new(limits: &Limits) -> Clock {
        let now = Instant::now();
        Clock {
            next_ping: now + limits.ping_interval,
            last_seen: now,
            stall: None,
        }
    }

    fn deadline(&self, limits: &Limits) -> Instant {
        let due = self.next_ping.min(self.last_seen + limits.idle_timeout);
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
        rx: &Receiver<TextFrame>,
        out: &mut Outgoing,
        limits: &Limits,
    ) -> Option<Goodbye> {
        let now = Instant::now();
        if self.stall.is_some_and(|at| at <= now) {
            self.stall = None;
            if out.writing() && rx.len() >= limits.send_queue {
                return Some(too_slow(rx.len() as u64, limits));
            }
        }
        if now >= self.last_seen + limits.idle_timeout {
            tracing::info!(idle_timeout = ?limits.idle_timeout, "client silent, dropping it");
            return Some(Goodbye::new(Why::IdleTimeout, true));
        }
        if now >= self.next_ping {
            // Delayed rather than bunched when the write takes a while.
            self.next_ping = now + limits.ping_interval;
            out.ping = true;
        }
        None
    }
}

/// Sends the close frame (after the frames being written: one is never
/// cut) and, with `drain`, reads off the client's frames until its close
/// reply, skipping their payloads; bounded by [`CLOSE_TIMEOUT`] for a
/// client that stopped reading or never replies.
async fn close<S>(s: &mut Session<'_, S>, goodbye: Goodbye)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tracing::debug!(code = ?goodbye.code(), reason = goodbye.reason(), "closing client");
    let io = &mut *s.io;
    let Link { decoder, out } = &mut s.link;
    out.ping = false;
    out.pong = None;
    out.frames
        .push(frame::close(goodbye.code(), goodbye.reason()));
    // Also when the client closed or the node stops: nothing it sends now matters.
    decoder.discard();
    let mut sent = false;
    let mut drained = !goodbye.drain;
    let finish = poll_fn(|cx| {
        if !sent {
            match poll_write(io, out, cx) {
                Poll::Ready(Ok(())) => sent = true,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => {}
            }
        }
        while !drained {
            let mut buf = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut buf);
            match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    let mut input = buf.filled();
                    while let Ok(Some(event)) = decoder.feed(&mut input) {
                        if matches!(event, Event::Close(_)) {
                            drained = true;
                            break;
                        }
                    }
                }
                Poll::Ready(_) => drained = true,
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

fn too_slow(behind: u64, limits: &Limits) -> Goodbye {
    tracing::warn!(
        behind,
        send_queue = limits.send_queue,
        "client not reading, disconnecting it"
    );
    Goodbye::new(Why::TooSlow, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The session's future is most of what an idle client costs: it
    /// holds the decoder, the (empty) batch, the timer and the select
    /// state, never a read buffer.
    #[test]
    fn an_idle_session_is_small() {
        let router = NodeRouter::new("n".into(), 0, false, Default::default(), Vec::new());
        let limits = Limits::default();
        let cancel = CancellationToken::new();
        let (mut io, _peer) = tokio::io::duplex(64);
        let session = run(&mut io, Bytes::new(), &router, &cancel, &limits);
        let size = std::mem::size_of_val(&session);
        // 744 bytes in a debug build when written; a read buffer of even
        // 256 bytes held in it would show.
        assert!(size <= 800, "{size} bytes");
    }
}
