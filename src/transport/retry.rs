//! Waiting between attempts over the network, shared by the links: a capped
//! exponential backoff with jitter (backon's, already in the tree through
//! the redis crate), and a sleep that a link's cancellation cuts short.

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Endless delays: `min` doubling up to `max`, each plus up to as much
/// again at random, so that links that failed together do not retry in step.
pub fn backoff(min: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Sleeps for `d` unless `cancel` fires first; true when it did.
pub async fn sleep_or_cancelled(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_at_most_as_much_again_of_jitter() {
        let (min, max) = (Duration::from_millis(50), Duration::from_millis(400));
        let delays: Vec<Duration> = backoff(min, max).take(8).collect();
        assert_eq!(delays.len(), 8, "endless");
        for (i, d) in delays.iter().enumerate() {
            let base = (min * 2u32.pow(i as u32)).min(max);
            assert!(
                *d >= base && *d <= base * 2,
                "attempt {i}: {d:?} for {base:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_cancelled_sleep_ends_at_once() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let started = std::time::Instant::now();
        assert!(sleep_or_cancelled(&cancel, Duration::from_secs(30)).await);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!sleep_or_cancelled(&CancellationToken::new(), Duration::from_millis(1)).await);
    }
}
