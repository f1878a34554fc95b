//! Free loopback ports for `topo test --run`: a file's own ports may be in
//! use (the demo running on a developer's machine), and files run side by
//! side, so every listener and private broker gets a port of its own.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// Ports are taken below the kernel's ephemeral range (32768+ on Linux): a
/// port the OS hands out for port 0 can be taken by any outgoing connection
/// between our check and the node's bind, and a probe opens many.
const LOW: u32 = 12_000;
const SPAN: u32 = 8_000;

/// How many ports are tried before giving up (the range is nearly full).
const ATTEMPTS: u32 = 2_000;

/// A loopback port nobody listens on right now. Several `topo test`
/// processes start at different points of the range (by pid), and one
/// process never hands out the same port twice in a row of `SPAN`.
pub fn free_port() -> Option<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(37) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..ATTEMPTS {
        let n = NEXT.fetch_add(1, Ordering::SeqCst) % SPAN;
        let port = u16::try_from(LOW + n).ok()?;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Some(port);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let a = free_port().unwrap();
        let b = free_port().unwrap();
        assert_ne!(a, b);
        assert!((12_000..20_000).contains(&a));
        let _held = TcpListener::bind(("127.0.0.1", b)).unwrap();
    }
}
