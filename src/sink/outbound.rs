//! What the HTTP sinks (`webhook`, `http`) share: checking an endpoint's
//! settings, the URL as messages show it, the client (no redirects, no
//! environment proxies, the address guard), and what a request that got no
//! answer means.

use std::sync::Arc;
use std::time::Duration;

use super::webhook::guard;
use crate::config::ConfigError;

pub(crate) fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

pub(crate) fn default_max_concurrency() -> usize {
    16
}

/// Checks `url`, `timeout` and `max_concurrency` of a sink at `path`: an
/// http(s) URL with a host, and not a forbidden literal address unless
/// `allow_private`.
pub(crate) fn validate(
    path: &str,
    url: &str,
    allow_private: bool,
    timeout: Duration,
    max_concurrency: usize,
) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let mut err = |key: &str, message: String| errs.push(ConfigError { path: format!("{path}.{key}"), message });
    match reqwest::Url::parse(url) {
        Err(e) => err("url", format!("not a URL ({e})")),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            err("url", format!("must be http or https, not `{}`", u.scheme()))
        }
        Ok(u) if u.host().is_none() => err("url", "has no host".into()),
        Ok(u) => {
            if let Some(ip) = guard::literal_ip(&u).filter(|_| !allow_private) {
                if let Some(why) = guard::forbidden(ip) {
                    err("url", format!("{ip} is {why}; set `allow_private = true` to allow it"));
                }
            }
        }
    }
    if max_concurrency == 0 {
        err("max_concurrency", "must be at least 1".into());
    }
    if timeout.is_zero() {
        err("timeout", "must be more than 0".into());
    }
    errs
}

/// The URL as messages and `dlsink` show it: without user info, query or fragment.
pub(crate) fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
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

/// A client builder for a sink: redirects not followed, proxies from the
/// environment not used, `timeout` for connecting and for the whole
/// request, and unless `allow_private` every address checked by the guard.
pub(crate) fn client(timeout: Duration, allow_private: bool) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .no_proxy()
        .user_agent(concat!("modelbus/", env!("CARGO_PKG_VERSION")));
    if allow_private {
        builder
    } else {
        builder.dns_resolver(Arc::new(guard::GuardedResolver))
    }
}

/// Why a request got no answer.
pub(crate) enum NoAnswer {
    /// The address guard refused where the name resolved (permanent).
    Blocked(String),
    /// Timed out or unreachable (transient); the message leaves the URL out.
    Unreachable(String),
}

pub(crate) fn no_answer(e: reqwest::Error) -> NoAnswer {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if let Some(b) = s.downcast_ref::<guard::Blocked>() {
            return NoAnswer::Blocked(b.to_string());
        }
        source = s.source();
    }
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    if timeout && !reason.contains("timed out") {
        reason = format!("timed out: {reason}");
    }
    NoAnswer::Unreachable(reason)
}
