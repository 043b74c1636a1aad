//! The webhook sink's settings (`kind = "webhook"`) and the checks serde
//! cannot express.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::guard;
use crate::config::{duration, ConfigError};

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
    #[serde(default = "default_timeout", with = "duration::req")]
    pub timeout: Duration,
    /// Requests in flight at once for this sink (default 16).
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Allow loopback, private, link-local and unique-local addresses
    /// (refused by default: a guard against requests into the host's network).
    #[serde(default)]
    pub allow_private: bool,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_max_concurrency() -> usize {
    16
}

impl WebhookSinkConfig {
    /// `path` is the sink's (`workers[0].sinks[1]`). A webhook cannot feed
    /// the worker's input topic, so `_input_topic` has nothing to check.
    pub(crate) fn validate(&self, path: &str, _input_topic: &str) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let mut err = |key: &str, message: String| errs.push(ConfigError { path: format!("{path}.{key}"), message });
        match reqwest::Url::parse(&self.url) {
            Err(e) => err("url", format!("not a URL ({e})")),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                err("url", format!("must be http or https, not `{}`", u.scheme()))
            }
            Ok(u) if u.host().is_none() => err("url", "has no host".into()),
            Ok(u) => {
                if let Some(ip) = guard::literal_ip(&u) {
                    if !self.allow_private {
                        if let Some(why) = guard::forbidden(ip) {
                            err("url", format!("{ip} is {why}; set `allow_private = true` to allow it"));
                        }
                    }
                }
            }
        }
        match (&self.secret_env, &self.secret_file) {
            (Some(_), Some(_)) => err("secret_env", "set one of `secret_env` and `secret_file`, not both".into()),
            (None, None) => err("secret_env", "a signing secret is required: set `secret_env` or `secret_file`".into()),
            (Some(name), None) if name.is_empty() => err("secret_env", "must not be empty".into()),
            _ => {}
        }
        if self.max_concurrency == 0 {
            err("max_concurrency", "must be at least 1".into());
        }
        if self.timeout.is_zero() {
            err("timeout", "must be more than 0".into());
        }
        errs
    }

    /// The URL as messages and `dlsink` show it: without user info, query or fragment.
    pub fn display_url(&self) -> String {
        match reqwest::Url::parse(&self.url) {
            Ok(mut u) => {
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.set_query(None);
                u.set_fragment(None);
                u.to_string()
            }
            Err(_) => "<invalid url>".to_string(),
        }
    }
}
