//! Tells the reload loop that the topology file has new content. It only
//! sends a signal (with the bytes it read); it never parses or applies.
//!
//! Directories are watched, not the file: an atomic save
//! renames a new file over the old one, vim may move the old one away, and a
//! symlink swap (a Kubernetes ConfigMap's `..data`, or any `data -> v1`
//! renamed to `data -> v2`) changes the file without an event naming it. So
//! the path is resolved link by link (`chain`), and every directory holding a
//! link or the file is watched for events naming that link or file; after
//! each burst the chain is resolved again and the watches follow it.
//! `Access` events (our own reads) are ignored, bursts debounced, and a save
//! whose content hash did not change is skipped. SIGHUP forces a reload.
//! Nothing is logged per event: a log file in a watched directory would feed
//! itself.

use crate::config::read::{ReadError, read_topology};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Quiet time after the last event before the file is read.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// How often `--poll` looks at the directory.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Links followed before giving up, as the kernel's own limit (ELOOP).
const MAX_LINKS: usize = 40;

/// New content of the file, and whether SIGHUP asked for it.
#[derive(Debug)]
pub struct Saved {
    pub bytes: Vec<u8>,
    pub forced: bool,
}

/// `(directory, name)`: an event in `directory` about `name` may change
/// what the path reads.
type Watched = HashSet<(PathBuf, OsString)>;

/// The watcher and what it watches, shared by the event handler (notify's
/// thread) and the debounce task that moves the watches.
struct Shared {
    watcher: Mutex<Option<Box<dyn notify::Watcher + Send>>>,
    /// Also held by the event handler, which must not own the watcher.
    names: Arc<Mutex<Watched>>,
    dirs: Mutex<HashMap<PathBuf, (u64, u64)>>,
}

impl Shared {
    /// Resolves the chain again and moves the watches to it. A directory is
    /// known by its inode: one replaced under the same name is watched
    /// again. One that cannot be watched (deleted mid-swap) is skipped: a
    /// later event on a directory still watched brings the next attempt.
    fn follow(&self, path: &Path) {
        let names = chain(path);
        let wanted: HashSet<PathBuf> = names.iter().map(|(d, _)| d.clone()).collect();
        let mut watcher = self.watcher.lock().unwrap_or_else(PoisonError::into_inner);
        let mut dirs = self.dirs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(watcher) = watcher.as_mut() {
            let mut now = HashMap::new();
            for dir in &wanted {
                let Some(id) = inode(dir) else { continue };
                if dirs.get(dir) == Some(&id) {
                    now.insert(dir.clone(), id);
                    continue;
                }
                let _ = watcher.unwatch(dir);
                if watcher
                    .watch(dir, notify::RecursiveMode::NonRecursive)
                    .is_ok()
                {
                    now.insert(dir.clone(), id);
                }
            }
            for gone in dirs.keys().filter(|d| !now.contains_key(*d)) {
                let _ = watcher.unwatch(gone);
            }
            *dirs = now;
        }
        *self.names.lock().unwrap_or_else(PoisonError::into_inner) = names;
    }
}

/// Device and inode of a directory (symlinks followed).
#[cfg(unix)]
fn inode(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).ok()?;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn inode(dir: &Path) -> Option<(u64, u64)> {
    dir.is_dir().then_some((0, 0))
}

fn relevant(names: &Mutex<Watched>, event: &notify::Event) -> bool {
    let names = names.lock().unwrap_or_else(PoisonError::into_inner);
    event
        .paths
        .iter()
        .any(|p| match (p.parent(), p.file_name()) {
            (Some(dir), Some(name)) => names.contains(&(dir.to_path_buf(), name.to_os_string())),
            _ => false,
        })
}

/// The watcher; dropping it stops watching.
pub struct FileWatch {
    _shared: Arc<Shared>,
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
    let path = absolute(path);
    let shared = Arc::new(Shared {
        watcher: Mutex::new(None),
        names: Arc::new(Mutex::new(HashSet::new())),
        dirs: Mutex::new(HashMap::new()),
    });
    // One pending wake-up is enough: when full, a read is already due.
    let (raw_tx, raw_rx) = mpsc::channel::<()>(1);
    // The file may have changed between its first read and now.
    let _ = raw_tx.try_send(());
    let names = shared.names.clone();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        if relevant(&names, &event) {
            let _ = raw_tx.try_send(());
        }
    };
    let watcher: Box<dyn notify::Watcher + Send> = if poll {
        let config = notify::Config::default()
            .with_poll_interval(POLL_INTERVAL)
            .with_compare_contents(true);
        Box::new(notify::PollWatcher::new(handler, config)?)
    } else {
        Box::new(notify::recommended_watcher(handler)?)
    };
    *shared
        .watcher
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(watcher);
    shared.follow(&path);
    if shared
        .dirs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .is_empty()
    {
        // Not even the file's own directory: report it like notify would.
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        return Err(notify::Error::path_not_found().add_path(dir));
    }
    let task = debounce(path, hash(initial), raw_rx, tx, shared.clone(), cancel);
    Ok((FileWatch { _shared: shared }, task))
}

async fn debounce(
    path: PathBuf,
    mut last: u64,
    mut raw: mpsc::Receiver<()>,
    tx: mpsc::Sender<Saved>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let mut hup = hangup();
    // The last read error reported, so that a broken file is said once.
    let mut reported: Option<String> = None;
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
        let (read_path, follower) = (path.clone(), shared.clone());
        let read = tokio::task::spawn_blocking(move || {
            follower.follow(&read_path);
            read_topology(&read_path)
        });
        let bytes = match read.await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(ReadError::Io { source, .. }))
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                // Deleted and not yet recreated: the next event brings it back.
                continue;
            }
            Ok(Err(e)) => {
                let message = e.to_string();
                if reported.as_ref() != Some(&message) {
                    tracing::warn!("reload rejected: {message}; nothing changed");
                    reported = Some(message);
                }
                continue;
            }
            Err(_) => continue,
        };
        reported = None;
        // A truncate-then-write save shows an empty file for a moment.
        if bytes.is_empty() && !forced {
            continue;
        }
        let h = hash(&bytes);
        if h == last && !forced {
            continue;
        }
        last = h;
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = tx.send(Saved { bytes, forced }) => if r.is_err() { return },
        }
    }
}

/// `path` made absolute against the working directory, lexically (no link
/// is followed here: `chain` does that one link at a time).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Every `(directory, name)` whose change can change what `path` reads: the
/// path's own last component, each symlink met while resolving it (in any
/// component), every name resolved after the first link, and the file it
/// ends at. The directories above the path as given are not watched.
fn chain(path: &Path) -> Watched {
    let mut watched = Watched::new();
    let mut push = |dir: &Path, name: &std::ffi::OsStr| {
        watched.insert((dir.to_path_buf(), name.to_os_string()));
    };
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        push(dir, name);
    }
    let mut resolved = PathBuf::from("/");
    // A stack: the next name to resolve is on top.
    let mut rest = components(path, &mut resolved);
    rest.reverse();
    let mut links = 0;
    while let Some(name) = rest.pop() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let here = resolved.join(&name);
        let Ok(meta) = std::fs::symlink_metadata(&here) else {
            // Missing (mid-swap): what exists so far is watched.
            push(&resolved, &name);
            break;
        };
        if !meta.file_type().is_symlink() {
            // Past the first link, a directory renamed over another (`mv
            // data.new data`) changes the file as much as a link swap.
            if rest.is_empty() || links > 0 {
                push(&resolved, &name);
            }
            resolved = here;
            continue;
        }
        push(&resolved, &name);
        links += 1;
        let Ok(target) = std::fs::read_link(&here) else {
            break;
        };
        if links > MAX_LINKS {
            break;
        }
        let mut more = components(&target, &mut resolved);
        more.reverse();
        rest.append(&mut more);
    }
    watched
}

/// The names of `path` in order; an absolute path resets `resolved` to `/`.
fn components(path: &Path, resolved: &mut PathBuf) -> Vec<OsString> {
    let mut names = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir => {
                *resolved = PathBuf::from("/");
                names.clear();
            }
            Component::Normal(n) => names.push(n.to_os_string()),
            Component::ParentDir => names.push("..".into()),
            Component::CurDir | Component::Prefix(_) => {}
        }
    }
    names
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn the_chain_names_every_link_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(d.join("v1")).unwrap();
        std::fs::write(d.join("v1/topo.yaml"), "").unwrap();
        symlink("v1", d.join("data")).unwrap();
        symlink("data/topo.yaml", d.join("topo.yaml")).unwrap();
        let watched = chain(&d.join("topo.yaml"));
        let expect: Watched = [
            (d.clone(), "topo.yaml".into()),
            (d.clone(), "data".into()),
            (d.clone(), "v1".into()),
            (d.join("v1"), "topo.yaml".into()),
        ]
        .into_iter()
        .collect();
        assert_eq!(watched, expect);
    }

    #[test]
    fn a_link_loop_ends() {
        let dir = tempfile::tempdir().unwrap();
        let d = std::fs::canonicalize(dir.path()).unwrap();
        symlink("b", d.join("a")).unwrap();
        symlink("a", d.join("b")).unwrap();
        let watched = chain(&d.join("a"));
        assert!(watched.contains(&(d.clone(), "b".into())), "{watched:?}");
    }
}
