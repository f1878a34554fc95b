//! One connection to a broker, whichever kind it is: a single server's
//! reconnecting `ConnectionManager`, or the `redis` crate's async cluster
//! connection, which routes each command to the master owning its slot,
//! follows MOVED and slot-map changes and resubscribes after a node's
//! reconnection. The (un)subscribe helpers pick classic or sharded commands.

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Which subscription commands a link uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// SUBSCRIBE/PSUBSCRIBE, PUBLISH.
    Classic,
    /// SSUBSCRIBE, SPUBLISH (a cluster broker with `sharded: true`).
    Sharded,
}

impl Mode {
    pub(super) fn of(sharded: bool) -> Mode {
        if sharded {
            Mode::Sharded
        } else {
            Mode::Classic
        }
    }

    pub(super) fn publish_command(self) -> &'static str {
        match self {
            Mode::Classic => "PUBLISH",
            Mode::Sharded => "SPUBLISH",
        }
    }
}

impl Conn {
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    pub(super) async fn subscribe(
        &mut self,
        mode: Mode,
        channels: &[String],
    ) -> redis::RedisResult<()> {
        match (self, mode) {
            (Conn::Single(c), Mode::Classic) => c.subscribe(channels).await,
            (Conn::Cluster(c), Mode::Classic) => c.subscribe(channels).await,
            // Validation admits `sharded` only with a cluster broker.
            (Conn::Single(_), Mode::Sharded) => Err(not_a_cluster()),
            // One command per channel: the cluster routes a command by its
            // first channel, and sharded channels may live on different shards.
            (Conn::Cluster(c), Mode::Sharded) => {
                for channel in channels {
                    c.ssubscribe(channel).await?;
                }
                Ok(())
            }
        }
    }

    pub(super) async fn unsubscribe(
        &mut self,
        mode: Mode,
        channels: &[String],
    ) -> redis::RedisResult<()> {
        match (self, mode) {
            (Conn::Single(c), Mode::Classic) => c.unsubscribe(channels).await,
            (Conn::Cluster(c), Mode::Classic) => c.unsubscribe(channels).await,
            (Conn::Single(_), Mode::Sharded) => Err(not_a_cluster()),
            (Conn::Cluster(c), Mode::Sharded) => {
                for channel in channels {
                    c.sunsubscribe(channel).await?;
                }
                Ok(())
            }
        }
    }

    pub(super) async fn psubscribe(&mut self, patterns: &[String]) -> redis::RedisResult<()> {
        match self {
            Conn::Single(c) => c.psubscribe(patterns).await,
            Conn::Cluster(c) => c.psubscribe(patterns).await,
        }
    }

    pub(super) async fn punsubscribe(&mut self, patterns: &[String]) -> redis::RedisResult<()> {
        match self {
            Conn::Single(c) => c.punsubscribe(patterns).await,
            Conn::Cluster(c) => c.punsubscribe(patterns).await,
        }
    }
}

fn not_a_cluster() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::InvalidClientConfig,
        "sharded pub/sub needs a cluster broker",
    ))
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
