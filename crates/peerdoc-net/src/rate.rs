//! The device's sync budget (`net.max_rate`): one token bucket for everything the sync
//! streams send and one for everything they receive, shared by all peers.
//!
//! A frame takes its size from the bucket and waits until the bucket is no longer in
//! debt, so a frame larger than the burst still passes (after its time) and the average
//! never exceeds the rate. Waiting to read is how receiving is limited: the peer's
//! writes back up in yamux's window, so its frames wait on its side, in the order the
//! engine queued them (highest priority first).
//!
//! [`TokenBucket`] is the policy, with time as an input; [`Throttle`] waits with
//! `tokio::time`, so tests run it under paused time.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket in bytes. Sans-IO: the caller passes the time.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    /// Bytes that may pass now; negative while frames wait for their time.
    balance: f64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket passing `rate` bytes per second on average and up to `burst` bytes at
    /// once after a quiet spell; full at `now`.
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        Self {
            rate: rate.max(1) as f64,
            burst: burst.max(1) as f64,
            balance: burst.max(1) as f64,
            last: now,
        }
    }

    /// Takes `bytes` at `now`; returns how long the taker must wait before passing
    /// them (zero when the bucket had them).
    pub fn take(&mut self, bytes: usize, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.balance = (self.balance + elapsed * self.rate).min(self.burst);
        self.balance -= bytes as f64;
        if self.balance >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.balance / self.rate)
        }
    }
}

/// The budget in one direction, shared by every session.
#[derive(Debug)]
pub(crate) struct Throttle {
    bucket: Mutex<TokenBucket>,
}

impl Throttle {
    /// `rate` bytes per second, with a burst of a quarter second of it (at least 16 KiB,
    /// so small frames are never held back one by one).
    pub(crate) fn new(rate: u64) -> Self {
        let burst = (rate / 4).max(16 * 1024);
        Self {
            bucket: Mutex::new(TokenBucket::new(rate, burst, Instant::now())),
        }
    }

    /// Waits until `bytes` may pass.
    pub(crate) async fn pass(&self, bytes: usize) {
        let wait = self
            .bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The two budgets of a device.
#[derive(Debug)]
pub(crate) struct Budget {
    pub(crate) up: Throttle,
    pub(crate) down: Throttle,
}

impl Budget {
    pub(crate) fn new(rate: u64) -> Self {
        Self {
            up: Throttle::new(rate),
            down: Throttle::new(rate),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_passes_its_burst_then_meters_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1_000, 500, t0);
        assert_eq!(bucket.take(500, t0), Duration::ZERO);
        // In debt by 250 bytes: a quarter second at 1,000 B/s.
        assert_eq!(bucket.take(250, t0), Duration::from_millis(250));
        // The next taker queues behind that debt.
        assert_eq!(bucket.take(250, t0), Duration::from_millis(500));
        // Time pays the debt back.
        assert_eq!(
            bucket.take(0, t0 + Duration::from_millis(500)),
            Duration::ZERO
        );
    }

    #[test]
    fn a_frame_larger_than_the_burst_waits_its_time_and_does_not_stall() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1_000, 100, t0);
        assert_eq!(bucket.take(2_100, t0), Duration::from_secs(2));
        assert_eq!(
            bucket.take(10, t0 + Duration::from_secs(2)),
            Duration::from_millis(10)
        );
    }

    #[test]
    fn a_quiet_spell_refills_no_more_than_the_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1_000, 100, t0);
        assert_eq!(bucket.take(100, t0), Duration::ZERO);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(bucket.take(100, later), Duration::ZERO);
        assert_eq!(bucket.take(100, later), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn the_average_never_exceeds_the_rate() {
        let throttle = Throttle::new(64 * 1024);
        let start = Instant::now();
        // 1 MiB in 4 KiB frames: 16 s at 64 KiB/s, less the 16 KiB burst.
        for _ in 0..256 {
            throttle.pass(4096).await;
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs_f64((1024.0 - 16.0) / 64.0),
            "1 MiB passed in {took:?}"
        );
        assert!(took < Duration::from_secs(17), "1 MiB took {took:?}");
    }
}
