//! The publishing connection that the Redis links of one process share per
//! broker URL (server or cluster seeds, credentials, database, TLS and `ca:`
//! alike): made by the first link that needs it, closed when the last link
//! holding it goes.
//! A thousand nodes on one server thus hold one publishing connection, not a
//! thousand (8 KiB read and 8 KiB write buffer each, a task, a socket).
//!
//! Each link keeps its own outbox, backoff and state: PUBLISH replies come
//! back per request on the multiplexed connection, so a failure is seen by
//! the link that sent it, and the link's state comes from its own
//! subscribing connection. Echo recognition (`echo`) is unaffected: it needs
//! only that Redis keeps one connection's publications in order, and a
//! shared connection still does.

use super::LinkError;
use super::conn::Conn;
use crate::model::RedisUrl;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::OnceCell;

/// One broker URL's publishing connection, made once (by whichever link
/// gets there first; if that fails, the next link tries again). Per tokio
/// runtime too: the connection's tasks live on the runtime that made it and
/// end with it (tests run one runtime each, in one process).
struct Entry {
    runtime: tokio::runtime::Id,
    url: RedisUrl,
    conn: OnceCell<Conn>,
}

/// The entries in use; dead ones are swept at each look-up. A process talks
/// to a handful of brokers, so a list is enough.
static ENTRIES: Mutex<Vec<Weak<Entry>>> = Mutex::new(Vec::new());

/// A link's handle on its broker's shared publishing connection: the
/// connection closes when the last handle is dropped.
#[derive(Clone)]
pub struct SharedPublisher {
    conn: Conn,
    _entry: Arc<Entry>,
}

impl SharedPublisher {
    /// The connection, to send on (`&mut` only because the crate asks for it).
    pub(super) fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

fn entry(url: &RedisUrl) -> Arc<Entry> {
    let runtime = tokio::runtime::Handle::current().id();
    let mut entries = ENTRIES.lock().unwrap_or_else(|e| e.into_inner());
    entries.retain(|e| e.strong_count() > 0);
    if let Some(found) = entries
        .iter()
        .filter_map(Weak::upgrade)
        .find(|e| e.runtime == runtime && e.url == *url)
    {
        return found;
    }
    let made = Arc::new(Entry {
        runtime,
        url: url.clone(),
        conn: OnceCell::new(),
    });
    entries.push(Arc::downgrade(&made));
    made
}

/// The publishing connection for `url`, connecting it if no link of this
/// process holds one yet.
pub(super) async fn publisher(url: &RedisUrl) -> Result<SharedPublisher, LinkError> {
    let entry = entry(url);
    let conn = entry
        .conn
        .get_or_try_init(|| super::publishing(url))
        .await?
        .clone();
    Ok(SharedPublisher {
        conn,
        _entry: entry,
    })
}
