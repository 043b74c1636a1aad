//! The CloudEvents HTTP sink's settings (`kind = "http"`) and the checks
//! serde cannot express.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{duration, ConfigError};
use crate::sink::outbound;

/// How results are put into requests (CloudEvents HTTP protocol binding 1.0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpMode {
    /// One POST per result: attributes as `ce-*` headers, the body is the data.
    #[default]
    Binary,
    /// One POST per result: the body is the whole event as JSON.
    Structured,
    /// One POST per batch: the body is a JSON array of events.
    Batch,
}

/// `{ kind = "http", url = "https://...", mode = "structured" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// Where results are POSTed (`http` or `https`; redirects are not followed).
    pub url: String,
    /// `binary` (default), `structured` or `batch`.
    #[serde(default)]
    pub mode: HttpMode,
    /// Extra headers sent with every request (`aeg-sas-key = "${EVENTGRID_KEY}"`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How long one request may take, connecting included (default 10s).
    #[serde(default = "outbound::default_timeout", with = "duration::req")]
    pub timeout: Duration,
    /// Requests in flight at once for this sink (default 16).
    #[serde(default = "outbound::default_max_concurrency")]
    pub max_concurrency: usize,
    /// Allow loopback, private, link-local and unique-local addresses.
    #[serde(default)]
    pub allow_private: bool,
}

/// Headers the sink sets itself, which the config may not override.
const RESERVED: &[&str] = &["content-type", "content-length", "host", "transfer-encoding"];

impl HttpSinkConfig {
    /// `path` is the sink's (`workers[0].sinks[1]`). An HTTP endpoint cannot
    /// feed the worker's input topic, so `_input_topic` has nothing to check.
    pub(crate) fn validate(&self, path: &str, _input_topic: &str) -> Vec<ConfigError> {
        let mut errs = outbound::validate(path, &self.url, self.allow_private, self.timeout, self.max_concurrency);
        let mut err = |key: &str, message: String| errs.push(ConfigError { path: format!("{path}.{key}"), message });
        for (name, value) in &self.headers {
            let lower = name.to_ascii_lowercase();
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                err(&format!("headers.{name}"), "not a valid HTTP header name".into());
            } else if RESERVED.contains(&lower.as_str()) || lower.starts_with("ce-") {
                err(&format!("headers.{name}"), "is set by the sink and cannot be configured".into());
            } else if reqwest::header::HeaderValue::from_str(value).is_err() {
                // The value is not shown: it may be a secret.
                err(&format!("headers.{name}"), "not a valid HTTP header value".into());
            }
        }
        errs
    }

    /// The URL as messages and `dlsink` show it: without user info, query or fragment.
    pub fn display_url(&self) -> String {
        outbound::display_url(&self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HttpSinkConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn defaults_are_binary_ten_seconds_and_sixteen_requests() {
        let c = parse("url = \"https://example.com/events\"").unwrap();
        assert_eq!(c.mode, HttpMode::Binary);
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.max_concurrency, 16);
        assert!(!c.allow_private && c.headers.is_empty());
        assert!(c.validate("s", "in").is_empty());
    }

    #[test]
    fn unknown_modes_and_keys_are_refused() {
        assert!(parse("url = \"https://e.com\"\nmode = \"stream\"").is_err());
        assert!(parse("url = \"https://e.com\"\nsecret_env = \"X\"").is_err());
    }

    #[test]
    fn headers_the_sink_sets_and_private_addresses_are_refused() {
        let c =
            parse("url = \"http://127.0.0.1/e\"\nheaders = { \"Content-Type\" = \"x\", \"ce-id\" = \"1\" }").unwrap();
        let paths: Vec<String> = c.validate("s", "in").into_iter().map(|e| e.path).collect();
        assert!(paths.contains(&"s.url".to_string()), "{paths:?}");
        assert!(paths.contains(&"s.headers.Content-Type".to_string()), "{paths:?}");
        assert!(paths.contains(&"s.headers.ce-id".to_string()), "{paths:?}");
    }
}
