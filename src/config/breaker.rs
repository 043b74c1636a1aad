//! `breaker = { ... }`: the circuit breaker settings of a dependency (a
//! feature store, a sink). What a breaker does is `worker::breaker`'s.

use std::time::Duration;

use serde::Deserialize;

use super::{duration, ConfigError};

/// `breaker = { ... }` of a feature store or a sink.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failed calls that open the breaker (0: never opens).
    pub failures: u32,
    /// First wait before a probe; it doubles up to `probe_max`.
    #[serde(with = "duration::req")]
    pub probe_initial: Duration,
    #[serde(with = "duration::req")]
    pub probe_max: Duration,
    /// Open longer than this is fatal (default: never).
    #[serde(with = "duration::opt")]
    pub open_fatal_after: Option<Duration>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            probe_initial: Duration::from_millis(100),
            probe_max: Duration::from_secs(5),
            open_fatal_after: None,
        }
    }
}

impl BreakerConfig {
    /// `path` is the breaker table's (`feature_stores.customers.breaker`).
    pub(crate) fn validate(&self, path: &str) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        if self.probe_initial < Duration::from_millis(1) {
            errs.push(ConfigError { path: format!("{path}.probe_initial"), message: "must be at least 1ms".into() });
        }
        if self.probe_max < self.probe_initial {
            errs.push(ConfigError {
                path: format!("{path}.probe_max"),
                message: "must be at least probe_initial".into(),
            });
        }
        errs
    }
}
