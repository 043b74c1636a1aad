//! Retry policy: capped exponential backoff with ±20% jitter, a maximum
//! number of attempts and a maximum horizon measured from the first failure.
//! Pure functions of the attempt state, so the same decision is reached by
//! whichever process resumes the count after a crash or handover.

use std::time::Duration;

use rand::Rng;

use crate::config::RetryConfig;

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Try again after this delay.
    RetryAfter(Duration),
    /// Give up: dead-letter with this reason.
    Exhausted(&'static str),
}

/// What to do after failed attempt number `attempts` (1 = the first try),
/// `since_first_failure` after the first failure. `jitter` is in [-1, 1].
pub fn decide(cfg: &RetryConfig, attempts: u32, since_first_failure: Duration, jitter: f64) -> Decision {
    if attempts >= cfg.max_attempts {
        return Decision::Exhausted("retries_exhausted");
    }
    let delay = backoff(cfg, attempts, jitter);
    if since_first_failure.saturating_add(delay) > cfg.max_horizon {
        return Decision::Exhausted("retry_horizon_exceeded");
    }
    Decision::RetryAfter(delay)
}

/// Delay before attempt `attempts + 1`: initial × multiplier^(attempts-1),
/// capped, then jittered by up to ±20%.
pub fn backoff(cfg: &RetryConfig, attempts: u32, jitter: f64) -> Duration {
    let exp = cfg.multiplier.powi(attempts.saturating_sub(1).min(64) as i32);
    let base = (cfg.initial_delay.as_secs_f64() * exp).min(cfg.max_delay.as_secs_f64());
    // A NaN (0 × an infinite power) or an out-of-range value falls back to
    // the cap rather than panicking.
    Duration::try_from_secs_f64((base * (1.0 + 0.2 * jitter.clamp(-1.0, 1.0))).max(0.0)).unwrap_or(cfg.max_delay)
}

pub fn random_jitter() -> f64 {
    rand::rng().random_range(-1.0..=1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RetryConfig {
        RetryConfig {
            initial_delay: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_millis(500),
            max_attempts: 5,
            max_horizon: Duration::from_secs(2),
        }
    }

    #[test]
    fn exponential_capped_and_jittered() {
        let c = cfg();
        assert_eq!(backoff(&c, 1, 0.0), Duration::from_millis(100));
        assert_eq!(backoff(&c, 2, 0.0), Duration::from_millis(200));
        assert_eq!(backoff(&c, 4, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(&c, 1, 1.0), Duration::from_millis(120));
        assert_eq!(backoff(&c, 1, -1.0), Duration::from_millis(80));
    }

    #[test]
    fn exhausts_at_max_attempts_and_horizon() {
        let c = cfg();
        assert!(matches!(decide(&c, 4, Duration::ZERO, 0.0), Decision::RetryAfter(_)));
        assert_eq!(decide(&c, 5, Duration::ZERO, 0.0), Decision::Exhausted("retries_exhausted"));
        assert_eq!(decide(&c, 2, Duration::from_millis(1900), 0.0), Decision::Exhausted("retry_horizon_exceeded"));
    }
}
