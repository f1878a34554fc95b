//! Tells the reload loop that the topology file has new content. It only
//! sends a signal (with the bytes it read); it never parses or applies.
//!
//! The parent directory is watched, not the file (CRATES.md §4): an atomic
//! save renames a new file over the old one, vim may move the old one away,
//! and a Kubernetes ConfigMap swaps a `..data` symlink without any event
//! naming the file. Events are filtered by name (the file or `..data`),
//! `Access` events (our own reads) ignored, bursts debounced, and a save whose
//! content hash did not change is skipped. SIGHUP forces a reload.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Quiet time after the last event before the file is read.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// How often `--poll` looks at the directory.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// New content of the file, and whether SIGHUP asked for it.
#[derive(Debug)]
pub struct Saved {
    pub bytes: Vec<u8>,
    pub forced: bool,
}

/// The watcher; dropping it stops watching.
pub struct FileWatch {
    _watcher: Box<dyn notify::Watcher + Send>,
}

/// Starts watching `path`. `initial` is the content already applied (its
/// hash is the baseline). Signals go to `tx`; the task ends on `cancel`.
pub fn watch(
    path: &Path,
    initial: &[u8],
    poll: bool,
    tx: mpsc::Sender<Saved>,
    cancel: CancellationToken,
) -> notify::Result<(FileWatch, impl Future<Output = ()> + Send + 'static)> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    // One pending wake-up is enough: when full, a read is already due.
    let (raw_tx, raw_rx) = mpsc::channel::<()>(1);
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        let relevant = event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| n == name.as_os_str() || n == "..data")
        });
        if relevant {
            let _ = raw_tx.try_send(());
        }
    };
    let mut watcher: Box<dyn notify::Watcher + Send> = if poll {
        let config = notify::Config::default()
            .with_poll_interval(POLL_INTERVAL)
            .with_compare_contents(true);
        Box::new(notify::PollWatcher::new(handler, config)?)
    } else {
        Box::new(notify::recommended_watcher(handler)?)
    };
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    let task = debounce(path.to_path_buf(), hash(initial), raw_rx, tx, cancel);
    Ok((FileWatch { _watcher: watcher }, task))
}

async fn debounce(
    path: PathBuf,
    mut last: u64,
    mut raw: mpsc::Receiver<()>,
    tx: mpsc::Sender<Saved>,
    cancel: CancellationToken,
) {
    let mut hup = hangup();
    loop {
        let forced = tokio::select! {
            _ = cancel.cancelled() => return,
            r = raw.recv() => match r {
                Some(()) => false,
                None => return,
            },
            _ = hup.recv() => true,
        };
        // Wait for the burst to end (an editor's save is several events).
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = raw.recv() => if r.is_none() { return },
                _ = tokio::time::sleep(DEBOUNCE) => break,
            }
        }
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) => {
                // Deleted and not yet recreated: the next event brings it back.
                tracing::debug!(file = %path.display(), error = %e, "topology file not readable yet");
                continue;
            }
        };
        // A truncate-then-write save shows an empty file for a moment.
        if bytes.is_empty() && !forced {
            continue;
        }
        let h = hash(&bytes);
        if h == last && !forced {
            tracing::debug!(file = %path.display(), "saved without changes");
            continue;
        }
        last = h;
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = tx.send(Saved { bytes, forced }) => if r.is_err() { return },
        }
    }
}

/// A content hash to skip saves that changed nothing (not a security check).
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// SIGHUP as a stream of wake-ups (never fires where there is no SIGHUP).
struct Hangup(#[cfg(unix)] Option<tokio::signal::unix::Signal>);

impl Hangup {
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.0
            && s.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await
    }
}

fn hangup() -> Hangup {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        Hangup(signal(SignalKind::hangup()).ok())
    }
    #[cfg(not(unix))]
    Hangup()
}
