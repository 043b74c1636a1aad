//! The webhook sink's settings (`kind = "webhook"`) and the checks serde
//! cannot express.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{duration, ConfigError};
use crate::sink::outbound;

/// `{ kind = "webhook", url = "https://...", secret_env = "WEBHOOK_SECRET" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSinkConfig {
    /// Where each result is POSTed (`http` or `https`; redirects are not followed).
    pub url: String,
    /// The environment variable holding the signing secret (`whsec_...`).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// A file holding the signing secret (`whsec_...`), read at start-up.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// How long one request may take, connecting included (default 10s).
    #[serde(default = "outbound::default_timeout", with = "duration::req")]
    pub timeout: Duration,
    /// Requests in flight at once for this sink (default 16).
    #[serde(default = "outbound::default_max_concurrency")]
    pub max_concurrency: usize,
    /// Allow loopback, private, link-local and unique-local addresses
    /// (refused by default: a guard against requests into the host's network).
    #[serde(default)]
    pub allow_private: bool,
}

impl WebhookSinkConfig {
    /// `path` is the sink's (`workers[0].sinks[1]`). A webhook cannot feed
    /// the worker's input topic, so `_input_topic` has nothing to check.
    pub(crate) fn validate(&self, path: &str, _input_topic: &str) -> Vec<ConfigError> {
        let mut errs = outbound::validate(path, &self.url, self.allow_private, self.timeout, self.max_concurrency);
        let mut err = |key: &str, message: String| errs.push(ConfigError { path: format!("{path}.{key}"), message });
        match (&self.secret_env, &self.secret_file) {
            (Some(_), Some(_)) => err("secret_env", "set one of `secret_env` and `secret_file`, not both".into()),
            (None, None) => err("secret_env", "a signing secret is required: set `secret_env` or `secret_file`".into()),
            (Some(name), None) if name.is_empty() => err("secret_env", "must not be empty".into()),
            _ => {}
        }
        errs
    }

    /// The URL as messages and `dlsink` show it: without user info, query or fragment.
    pub fn display_url(&self) -> String {
        outbound::display_url(&self.url)
    }
}
