//! File descriptors: how many a topology needs when all its nodes run in
//! one process, and the process limit (`RLIMIT_NOFILE`), whose soft value
//! topo raises to the hard one at start. `topo up` refuses a topology
//! that cannot fit rather than failing accepts and connects later.

use crate::model::Topology;

/// The process itself: stdio, the runtime's epoll and wakers, the file
/// watcher, the admin server and its connections, log files.
pub const BASE: u64 = 64;
/// Kept free per node with an HTTP server for its clients and page loads.
pub const PER_HTTP_NODE: u64 = 16;
/// A Redis link: the start-up check, the publishing and the subscribing
/// connection.
pub const PER_REDIS_LINK: u64 = 3;
/// A NATS link: one client connection (and one while a reload replaces it).
pub const PER_NATS_LINK: u64 = 2;

/// Descriptors `topology` needs in one process: per node its listeners
/// (HTTP, PUB), each ZeroMQ subscription (the SUB's socket, and the PUB's
/// accepted end when the PUB is a node of the same file), its Redis and
/// NATS connections, and a margin for clients.
pub fn needed(topology: &Topology) -> u64 {
    let mut total = BASE;
    for node in &topology.nodes {
        if node.http.is_some() {
            total += 1 + PER_HTTP_NODE;
        }
        if let Some(zmq) = &node.zmq {
            total += u64::from(zmq.publish.is_some());
            for sub in &zmq.subscribe {
                total += 1 + u64::from(sub.from.is_some());
            }
        }
        if node.redis.is_some() {
            total += PER_REDIS_LINK;
        }
        // One connection (a socket) per AMQP link.
        total += u64::from(node.amqp.is_some());
        if node.nats.is_some() {
            total += PER_NATS_LINK;
        }
    }
    total
}

/// The soft `RLIMIT_NOFILE` after raising it to the hard limit (as far as
/// the system lets us); `None` when it cannot be read.
pub fn raise_limit() -> Option<u64> {
    // SAFETY: getrlimit/setrlimit write only into the struct we own.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        Some(limit.rlim_cur as u64)
    }
}

/// The topology does not fit in this process's descriptor limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "this topology needs about {needed} file descriptors in one process, but the limit is {limit} \
     (raise it with `ulimit -n {needed}`, or run the nodes as separate processes with --process)"
)]
pub struct TooFew {
    pub needed: u64,
    pub limit: u64,
}

/// `Err` when `topology` needs more descriptors than the (raised) limit.
pub fn check(topology: &Topology) -> Result<(), TooFew> {
    let needed = needed(topology);
    match raise_limit() {
        Some(limit) if needed > limit => Err(TooFew { needed, limit }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let limit = super::raise_limit().expect("a limit");
        let mut hard: libc::rlimit = unsafe { std::mem::zeroed() };
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) },
            0
        );
        assert_eq!(limit, hard.rlim_max as u64);
    }
}
