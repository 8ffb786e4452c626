//! Redial delays for explicit peers: exponential with jitter, so that a room full of
//! devices that lost the same cloud peer do not redial in lockstep.

use std::time::Duration;

use rand::Rng;

/// Delay before redial number `attempt` (0 = first redial): `base * 2^attempt`, capped,
/// then scaled by a random factor in [0.5, 1.0].
pub(crate) fn redial_delay(
    base: Duration,
    cap: Duration,
    attempt: u32,
    rng: &mut impl Rng,
) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(20));
    let ceiling = exp.min(cap);
    let factor: f64 = rng.random_range(0.5..=1.0);
    ceiling.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_respects_cap() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(5);
        for attempt in 0..40 {
            let d = redial_delay(base, cap, attempt, &mut rng);
            let ceiling = base.saturating_mul(1 << attempt.min(20)).min(cap);
            assert!(d <= ceiling && d >= ceiling / 2, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn same_seed_same_delays() {
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..10)
                .map(|a| {
                    redial_delay(
                        Duration::from_millis(50),
                        Duration::from_secs(1),
                        a,
                        &mut rng,
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
    }
}
