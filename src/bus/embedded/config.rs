//! `[bus.embedded]`: the embedded bus's settings, and their checks.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{duration, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedBusConfig {
    /// Partitions of topics created on first use.
    pub partitions: u32,
    /// Records older than this are deleted (dead-letter topics are exempt).
    #[serde(with = "duration::opt")]
    pub retention_age: Option<Duration>,
    /// At most this many records are kept per partition (dead letters exempt).
    pub retention_records: Option<u64>,
    /// A member that has not heartbeated for this long is presumed dead and
    /// its partitions are taken over.
    #[serde(with = "duration::req")]
    pub session_timeout: Duration,
    #[serde(with = "duration::req")]
    pub heartbeat_interval: Duration,
    /// How often an idle consumer looks for new records written by another
    /// process when nothing woke it. On Linux a write by any process wakes
    /// it at once (an inotify watch on the WAL, see `bus::embedded::wake`),
    /// so this is only the fallback.
    #[serde(with = "duration::req")]
    pub poll_interval: Duration,
    /// `normal` survives a process crash (kill -9); `full` also survives
    /// power loss at the cost of an fsync per commit.
    pub sync: SyncMode,
}

impl Default for EmbeddedBusConfig {
    fn default() -> Self {
        EmbeddedBusConfig {
            partitions: 4,
            retention_age: None,
            retention_records: None,
            session_timeout: Duration::from_secs(6),
            heartbeat_interval: Duration::from_millis(500),
            poll_interval: Duration::from_millis(50),
            sync: SyncMode::Normal,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    #[default]
    Normal,
    Full,
}

impl EmbeddedBusConfig {
    /// Checks serde cannot express; `path` is this table's (`bus.embedded`).
    pub(crate) fn validate(&self, path: &str) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let mut err = |key: &str, message: &str| {
            errs.push(ConfigError { path: format!("{path}.{key}"), message: message.to_string() })
        };
        if self.partitions == 0 || self.partitions > 1024 {
            err("partitions", "must be between 1 and 1024");
        }
        for (name, d) in [
            ("poll_interval", self.poll_interval),
            ("heartbeat_interval", self.heartbeat_interval),
            ("session_timeout", self.session_timeout),
        ] {
            if d < Duration::from_millis(1) {
                err(name, "must be at least 1ms");
            }
        }
        if self.heartbeat_interval >= self.session_timeout {
            err("heartbeat_interval", &format!("must be shorter than {path}.session_timeout"));
        }
        errs
    }
}
