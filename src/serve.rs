//! The accept loop of every HTTP server topo runs (chat nodes, the admin
//! server): HTTP/1.1 through hyper with a header-read timeout (an idle or
//! trickling connection is closed), a cap on connections that have not
//! become WebSockets yet (more are closed at once), accept errors such as
//! EMFILE backed off and logged once per episode, and a connection that
//! ends with unread input drained before it is closed (see [`Conn`]).
//! It knows nothing of routes: the router it is given does the rest.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A request's headers must have arrived this long after the connection
/// opened (or after the previous answer on it).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per server that are not (yet) WebSockets: page loads,
/// `/healthz`, handshakes. Each costs a task and buffers; beyond this a
/// new connection is closed at once.
pub const MAX_PENDING: usize = 256;
/// After our close frame, what a peer still sends is read and dropped, at
/// most this much and this long: closing with unread input would make the
/// kernel send a reset, which destroys the close frame before the peer
/// reads it.
pub const DRAIN_BYTES: u64 = 64 << 20;
pub const DRAIN_TIME: Duration = Duration::from_secs(3);
/// Accept errors (descriptors exhausted) wait this long at first, doubling.
const BACKOFF_START: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Accept errors closer together than this are one episode, warned about
/// once: a single accept that slips through while descriptors are still
/// short must not start a second warning.
const EPISODE_QUIET: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct Options {
    pub header_timeout: Duration,
    pub max_pending: usize,
    /// TCP_NODELAY on accepted sockets.
    pub nodelay: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            header_timeout: HEADER_TIMEOUT,
            max_pending: MAX_PENDING,
            nodelay: false,
        }
    }
}

/// One accepted connection as handlers see it (a request extension).
#[derive(Clone)]
pub struct ConnState(Arc<ConnInner>);

struct ConnInner {
    /// Drain the socket when the connection is dropped.
    drain: AtomicBool,
    /// Held while the connection is not a WebSocket.
    pending: std::sync::Mutex<Option<OwnedSemaphorePermit>>,
}

impl ConnState {
    /// The connection became a WebSocket: it no longer counts as pending.
    pub fn upgraded(&self) {
        self.0
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// We are closing while the peer may still be sending: drain first.
    pub fn drain_on_close(&self) {
        self.0.drain.store(true, Ordering::Release);
    }
}

/// Serves `app` on `listener` until `cancel`; connection tasks (and drains)
/// run on `tracker`, so whoever waits for it waits for them.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: Options,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let pending = Arc::new(Semaphore::new(options.max_pending));
    let mut refused: u64 = 0;
    let mut errors: u64 = 0;
    let mut last_error: Option<Instant> = None;
    let mut backoff = BACKOFF_START;
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if per_connection(&e) => continue,
            Err(e) => {
                // EMFILE and friends: waiting is the only cure; say it once.
                if last_error.is_none_or(|at| at.elapsed() > EPISODE_QUIET) {
                    tracing::warn!(error = %e, "accept failing, backing off (file descriptors exhausted?)");
                }
                errors += 1;
                last_error = Some(Instant::now());
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if errors > 0 {
            tracing::info!(errors, "accepting again after accept errors");
            errors = 0;
            backoff = BACKOFF_START;
        }
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            if refused == 0 {
                tracing::warn!(
                    limit = options.max_pending,
                    "too many connections that are not WebSockets: closing new ones"
                );
            }
            refused += 1;
            drop(stream);
            continue;
        };
        if refused > 0 && pending.available_permits() > options.max_pending / 2 {
            tracing::info!(refused, "connections accepted again");
            refused = 0;
        }
        if options.nodelay
            && let Err(e) = stream.set_nodelay(true)
        {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let state = ConnState(Arc::new(ConnInner {
            drain: AtomicBool::new(false),
            pending: std::sync::Mutex::new(Some(permit)),
        }));
        let conn = Conn {
            stream: Some(stream),
            state: state.clone(),
            tracker: tracker.clone(),
            cancel: cancel.clone(),
        };
        tracker.spawn(connection(
            conn,
            app.clone(),
            state,
            options.header_timeout,
            cancel.clone(),
        ));
    }
}

/// Errors of one connection that went away before we took it.
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

async fn connection(
    conn: Conn,
    app: Router,
    state: ConnState,
    header_timeout: Duration,
    cancel: CancellationToken,
) {
    let tower = TowerToHyperService::new(app);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        request.extensions_mut().insert(state.clone());
        hyper::service::Service::call(&tower, request)
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let served = http
        .serve_connection(TokioIo::new(conn), service)
        .with_upgrades();
    tokio::pin!(served);
    let result = tokio::select! {
        result = served.as_mut() => result,
        _ = cancel.cancelled() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "http connection ended");
    }
}

/// The connection under a request that became a WebSocket, and the bytes
/// the HTTP server had read past the request; `Err` (the upgrade as it
/// was) when the connection is not one of [`serve`]'s.
pub fn upgraded(
    upgraded: hyper::upgrade::Upgraded,
) -> Result<(Conn, bytes::Bytes), hyper::upgrade::Upgraded> {
    let parts = upgraded.downcast::<TokioIo<Conn>>()?;
    Ok((parts.io.into_inner(), parts.read_buf))
}

/// A TCP connection that, when dropped after [`ConnState::drain_on_close`],
/// first shuts its sending side (our close frame, then FIN) and reads and
/// drops what the peer still sends, bounded by [`DRAIN_BYTES`] and
/// [`DRAIN_TIME`], so the peer reads our close frame instead of a reset.
pub struct Conn {
    stream: Option<TcpStream>,
    state: ConnState,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Conn {
    /// The socket; only `drop` takes it, so this is never `Err` in use.
    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.state.0.drain.load(Ordering::Acquire) {
            return;
        }
        let Some(stream) = self.stream.take() else {
            return;
        };
        let cancel = self.cancel.clone();
        // Outside a runtime (never in topo) the socket just closes.
        if tokio::runtime::Handle::try_current().is_ok() {
            self.tracker.spawn(drain(stream, cancel));
        }
    }
}

async fn drain(mut stream: TcpStream, cancel: CancellationToken) {
    use tokio::io::AsyncWriteExt;
    let _ = stream.shutdown().await;
    let mut buf = vec![0u8; 16 * 1024];
    let mut left = DRAIN_BYTES;
    let read_all = async {
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n as u64),
            }
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(DRAIN_TIME, read_all) => {}
        _ = cancel.cancelled() => {}
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(stream) => Pin::new(stream).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.stream() {
            Ok(stream) => Pin::new(stream).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(stream) => Pin::new(stream).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(stream) => Pin::new(stream).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.stream() {
            Ok(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }
}
