//! When to dial a cloud endpoint: exponential backoff with jitter and a circuit breaker.
//!
//! A venue device keeps a list of cloud endpoints it cannot reach most of the time. Each
//! gets an [`EndpointState`]: after a failed attempt the next one waits `base * 2^(n-1)`
//! (capped) scaled by a random factor in `[1 - jitter, 1 + jitter]`, so a room of devices
//! that lost the same uplink does not redial in lockstep; after `failure_threshold`
//! consecutive failures the breaker opens and only one probe is let through every
//! `half_open_after_ms` until one succeeds.
//!
//! Like the engine, this does no IO: time and randomness are inputs.
//!
//! ```
//! use peerdoc_core::endpoint::{Breaker, EndpointPolicy, EndpointState};
//! use rand::SeedableRng;
//!
//! let policy = EndpointPolicy::default();
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
//! let mut cloud = EndpointState::new(0);
//! let mut now = 0;
//! for _ in 0..5 {
//!     assert!(cloud.may_attempt(now));
//!     cloud.on_attempt(now);
//!     cloud.on_failure(&policy, now, &mut rng);
//!     now = cloud.next_attempt_ms();
//! }
//! assert!(matches!(cloud.breaker(), Breaker::Open { .. }));
//! ```

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

/// The retry policy shared by all endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointPolicy {
    /// Delay after the first failure, in ms.
    pub base_ms: u64,
    /// Longest delay between attempts while the breaker is closed, in ms.
    pub cap_ms: u64,
    /// Relative jitter: each delay is scaled by a factor in `[1 - jitter, 1 + jitter]`.
    pub jitter: f64,
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker waits before letting one probe through, in ms.
    pub half_open_after_ms: u64,
}

impl Default for EndpointPolicy {
    fn default() -> Self {
        Self {
            base_ms: 1_000,
            cap_ms: 60_000,
            jitter: 0.25,
            failure_threshold: 5,
            half_open_after_ms: 30_000,
        }
    }
}

impl EndpointPolicy {
    /// Checks that the policy can be followed.
    ///
    /// # Errors
    /// A message naming the field that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.base_ms == 0 || self.cap_ms < self.base_ms {
            return Err("base_ms must be positive and at most cap_ms".into());
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err("jitter must be in [0, 1)".into());
        }
        if self.failure_threshold == 0 {
            return Err("failure_threshold must be positive".into());
        }
        if self.half_open_after_ms == 0 {
            return Err("half_open_after_ms must be positive".into());
        }
        Ok(())
    }

    /// The delay after `failures` consecutive failures (1 = the first), before jitter.
    fn ceiling_ms(&self, failures: u32) -> u64 {
        let doublings = failures.saturating_sub(1).min(40);
        self.base_ms
            .saturating_mul(1u64 << doublings)
            .min(self.cap_ms)
    }

    fn jittered(&self, ms: u64, rng: &mut dyn RngCore) -> u64 {
        if self.jitter == 0.0 {
            return ms;
        }
        let factor = rng.random_range(1.0 - self.jitter..=1.0 + self.jitter);
        // Bounded by cap * 2 < 2^64 for any sane cap; the float is the delay in ms.
        (ms as f64 * factor).round() as u64
    }
}

/// The circuit breaker of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Breaker {
    /// Attempts follow the backoff schedule.
    Closed {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// Too many failures: no attempt until `probe_at_ms`.
    Open {
        /// When the breaker opened.
        since_ms: u64,
        /// When one probe may go through.
        probe_at_ms: u64,
    },
    /// One probe is in flight; its outcome closes or reopens the breaker.
    HalfOpen,
}

/// What is known about one endpoint and when to try it next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointState {
    breaker: Breaker,
    next_attempt_ms: u64,
    in_flight: bool,
    connected: bool,
    /// Attempts made since start.
    pub attempts: u64,
    /// Failed attempts since start.
    pub failures_total: u64,
    /// When the endpoint was last connected, ms since the epoch.
    pub last_success_ms: Option<u64>,
    /// When an attempt last failed.
    pub last_failure_ms: Option<u64>,
}

impl EndpointState {
    /// A fresh endpoint, to be tried at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self {
            breaker: Breaker::Closed { failures: 0 },
            next_attempt_ms: now_ms,
            in_flight: false,
            connected: false,
            attempts: 0,
            failures_total: 0,
            last_success_ms: None,
            last_failure_ms: None,
        }
    }

    /// The breaker's state.
    pub fn breaker(&self) -> Breaker {
        self.breaker
    }

    /// Whether a connection to the endpoint is up.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// When the next attempt is due (meaningless while connected or in flight).
    pub fn next_attempt_ms(&self) -> u64 {
        self.next_attempt_ms
    }

    /// Whether an attempt may start at `now_ms`.
    pub fn may_attempt(&self, now_ms: u64) -> bool {
        !self.connected && !self.in_flight && now_ms >= self.next_attempt_ms
    }

    /// An attempt starts (a dial). An open breaker whose probe time has come turns
    /// half-open: this attempt is the probe.
    pub fn on_attempt(&mut self, now_ms: u64) {
        debug_assert!(self.may_attempt(now_ms));
        if let Breaker::Open { probe_at_ms, .. } = self.breaker
            && now_ms >= probe_at_ms
        {
            self.breaker = Breaker::HalfOpen;
        }
        self.in_flight = true;
        self.attempts += 1;
    }

    /// The attempt connected: the breaker closes and the failure count resets.
    pub fn on_success(&mut self, now_ms: u64) {
        self.in_flight = false;
        self.connected = true;
        self.breaker = Breaker::Closed { failures: 0 };
        self.last_success_ms = Some(now_ms);
    }

    /// The attempt failed: schedule the next one, opening the breaker when due.
    pub fn on_failure(&mut self, policy: &EndpointPolicy, now_ms: u64, rng: &mut dyn RngCore) {
        self.in_flight = false;
        self.connected = false;
        self.failures_total += 1;
        self.last_failure_ms = Some(now_ms);
        let failures = match self.breaker {
            Breaker::Closed { failures } => failures.saturating_add(1),
            // A failed probe (or a failure reported while open) reopens at once.
            Breaker::HalfOpen | Breaker::Open { .. } => policy.failure_threshold,
        };
        if failures >= policy.failure_threshold {
            let probe_at_ms = now_ms.saturating_add(policy.half_open_after_ms);
            self.breaker = Breaker::Open {
                since_ms: now_ms,
                probe_at_ms,
            };
            self.next_attempt_ms = probe_at_ms;
        } else {
            self.breaker = Breaker::Closed { failures };
            let delay = policy.jittered(policy.ceiling_ms(failures), rng);
            self.next_attempt_ms = now_ms.saturating_add(delay);
        }
    }

    /// An established connection closed: redial after one jittered base delay (a drop
    /// after success is not a failure of the endpoint).
    pub fn on_disconnected(&mut self, policy: &EndpointPolicy, now_ms: u64, rng: &mut dyn RngCore) {
        self.connected = false;
        self.in_flight = false;
        self.breaker = Breaker::Closed { failures: 0 };
        self.next_attempt_ms = now_ms.saturating_add(policy.jittered(policy.base_ms, rng));
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn fail(state: &mut EndpointState, policy: &EndpointPolicy, now: u64, rng: &mut ChaCha8Rng) {
        assert!(state.may_attempt(now), "{state:?} at {now}");
        state.on_attempt(now);
        state.on_failure(policy, now, rng);
    }

    #[test]
    fn delays_double_within_jitter_up_to_the_cap() {
        let policy = EndpointPolicy {
            failure_threshold: 100,
            ..EndpointPolicy::default()
        };
        for seed in 0..50 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut state = EndpointState::new(0);
            let mut now = 0;
            for failures in 1..=12u32 {
                fail(&mut state, &policy, now, &mut rng);
                let delay = state.next_attempt_ms() - now;
                let ceiling = (1_000u64 << (failures - 1)).min(60_000);
                let (lo, hi) = (ceiling * 3 / 4, ceiling * 5 / 4);
                assert!(
                    (lo..=hi).contains(&delay),
                    "seed {seed}, failure {failures}: {delay} not in {lo}..={hi}"
                );
                assert!(!state.may_attempt(now + delay - 1));
                now += delay;
            }
        }
    }

    #[test]
    fn jitter_spreads_devices_that_failed_together() {
        let policy = EndpointPolicy::default();
        let delays: std::collections::BTreeSet<u64> = (0..20)
            .map(|seed| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let mut state = EndpointState::new(0);
                fail(&mut state, &policy, 0, &mut rng);
                state.next_attempt_ms()
            })
            .collect();
        assert!(delays.len() > 10, "{delays:?}");
    }

    #[test]
    fn breaker_opens_after_five_failures_and_probes_after_thirty_seconds() {
        let policy = EndpointPolicy::default();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut state = EndpointState::new(0);
        let mut now = 0;
        for n in 1..=4 {
            fail(&mut state, &policy, now, &mut rng);
            assert_eq!(state.breaker(), Breaker::Closed { failures: n });
            now = state.next_attempt_ms();
        }
        fail(&mut state, &policy, now, &mut rng);
        let opened = now;
        assert_eq!(
            state.breaker(),
            Breaker::Open {
                since_ms: opened,
                probe_at_ms: opened + 30_000
            }
        );
        assert!(!state.may_attempt(opened + 29_999));
        assert!(state.may_attempt(opened + 30_000));

        // The probe fails: open again for another 30 s, with no backoff growth.
        state.on_attempt(opened + 30_000);
        assert_eq!(state.breaker(), Breaker::HalfOpen);
        assert!(!state.may_attempt(opened + 30_000), "one probe at a time");
        state.on_failure(&policy, opened + 30_000, &mut rng);
        assert_eq!(state.next_attempt_ms(), opened + 60_000);

        // The next probe succeeds: closed, counters reset.
        state.on_attempt(opened + 60_000);
        state.on_success(opened + 60_010);
        assert_eq!(state.breaker(), Breaker::Closed { failures: 0 });
        assert!(state.is_connected());
        assert!(
            !state.may_attempt(opened + 90_000),
            "connected: nothing to do"
        );
        assert_eq!(state.attempts, 7);
        assert_eq!(state.failures_total, 6);
    }

    #[test]
    fn a_dropped_connection_redials_after_one_base_delay() {
        let policy = EndpointPolicy::default();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut state = EndpointState::new(0);
        state.on_attempt(0);
        state.on_success(5);
        state.on_disconnected(&policy, 10_000, &mut rng);
        let delay = state.next_attempt_ms() - 10_000;
        assert!((750..=1_250).contains(&delay), "{delay}");
        assert_eq!(state.breaker(), Breaker::Closed { failures: 0 });
    }

    #[test]
    fn same_seed_same_schedule() {
        let run = |seed| {
            let policy = EndpointPolicy::default();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut state = EndpointState::new(0);
            let mut times = Vec::new();
            for _ in 0..8 {
                let now = state.next_attempt_ms();
                fail(&mut state, &policy, now, &mut rng);
                times.push(state.next_attempt_ms());
            }
            times
        };
        assert_eq!(run(11), run(11));
    }

    #[test]
    fn policy_validation_names_the_field() {
        let bad = EndpointPolicy {
            jitter: 1.5,
            ..EndpointPolicy::default()
        };
        assert!(bad.validate().unwrap_err().contains("jitter"));
        assert!(EndpointPolicy::default().validate().is_ok());
    }
}
