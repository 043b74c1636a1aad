//! The webhook sink: each result POSTed to a URL as a Standard Webhooks 1.0
//! message, signed with the sink's secret. The body is
//! `{"type", "timestamp", "data"}` plus the result's CloudEvents attributes
//! beside `data`; `webhook-id` is the result's id (the same on every
//! attempt, so a receiver can drop repeats), `webhook-timestamp` and
//! `webhook-signature` are made anew for each attempt.
//!
//! Per record: 2xx accepts it; 429, 5xx, a timeout or no connection is
//! transient (retried by the worker); 410 disables the endpoint until the
//! worker restarts (every later record fails permanently without a
//! request); any other status is permanent for that record. A batch whose
//! every record failed transiently fails as a whole, so the worker's
//! circuit breaker sees an outage. Requests run
//! concurrently, at most `max_concurrency` at a time per sink. Redirects
//! are not followed, proxies from the environment are not used, and unless
//! `allow_private` every address connected to is checked by `guard`.

mod config;
mod error;
pub(crate) mod guard;
mod sign;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use config::WebhookSinkConfig;
pub use error::WebhookError;
use serde_json::{Map, Value};
use sign::SigningKey;
use tokio::sync::Semaphore;

use super::{outbound, SinkError};
use crate::error::{Classify, ErrorClass};
use crate::event::Record;
use crate::event::CE_PREFIX;

pub struct WebhookSink {
    client: reqwest::Client,
    url: reqwest::Url,
    /// The URL as messages show it (no credentials or query).
    shown: String,
    key: SigningKey,
    permits: Arc<Semaphore>,
    /// Set by a 410 Gone: no more requests until a restart.
    gone: AtomicBool,
}

impl WebhookSink {
    /// Reads the secret and builds the client. An error names the
    /// variable or file, never the secret.
    pub async fn open(cfg: &WebhookSinkConfig) -> Result<WebhookSink, SinkError> {
        let shown = cfg.display_url();
        let open_err = |reason: String| SinkError::from(WebhookError::Open { url: shown.clone(), reason });
        let url = reqwest::Url::parse(&cfg.url).map_err(|e| open_err(format!("url: {e}")))?;
        let (secret, from) = match (&cfg.secret_env, &cfg.secret_file) {
            (Some(name), _) => {
                let v = std::env::var(name).map_err(|e| match e {
                    std::env::VarError::NotPresent => open_err(format!("environment variable `{name}` is not set")),
                    std::env::VarError::NotUnicode(_) => {
                        open_err(format!("environment variable `{name}` is not valid UTF-8"))
                    }
                })?;
                (v, name.clone())
            }
            (None, Some(path)) => {
                // A few bytes, once at start-up: no need to leave the runtime.
                let v = std::fs::read_to_string(path)
                    .map_err(|e| open_err(format!("cannot read secret file {}: {e}", path.display())))?;
                (v.trim().to_string(), "secret_file".to_string())
            }
            (None, None) => return Err(open_err("no secret: set `secret_env` or `secret_file`".into())),
        };
        let mut known = crate::secrets::Secrets::default();
        known.add(&from, &secret);
        crate::secrets::remember(&known);
        let key = SigningKey::parse(&secret).map_err(|e| open_err(format!("{e} (from {from})")))?;
        let builder = outbound::client(cfg.timeout, cfg.allow_private);
        let client = builder.build().map_err(|e| open_err(format!("HTTP client: {e}")))?;
        Ok(WebhookSink {
            client,
            url,
            shown,
            key,
            permits: Arc::new(Semaphore::new(cfg.max_concurrency.max(1))),
            gone: AtomicBool::new(false),
        })
    }

    /// The URL as `dlsink` and messages show it.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// One POST per record, concurrently within `max_concurrency`; an
    /// outcome per record, in order.
    ///
    /// When every record of the batch failed transiently (the endpoint is
    /// down, or answering 5xx/429 to everything) the whole call fails, so
    /// the worker's circuit breaker sees an outage and pauses consumption
    /// instead of retrying the backlog into dead letters; a batch with any
    /// success is a success, and its failed records fail alone.
    pub async fn emit(&self, records: Vec<Record>) -> Result<Vec<Result<(), SinkError>>, SinkError> {
        let mut outcomes = futures::future::join_all(records.iter().map(|r| self.deliver(r))).await;
        let outage = outcomes.iter().all(|o| o.as_ref().is_err_and(|e| e.class() == ErrorClass::Transient));
        if outage {
            if let Some(Err(e)) = outcomes.pop() {
                return Err(e);
            }
        }
        Ok(outcomes)
    }

    async fn deliver(&self, rec: &Record) -> Result<(), SinkError> {
        let (id, body) = payload(rec).map_err(|reason| WebhookError::Record { url: self.shown.clone(), reason })?;
        let _permit = self.permits.acquire().await.map_err(|_| self.disabled())?;
        if self.gone.load(Ordering::Relaxed) {
            return Err(self.disabled());
        }
        let timestamp = chrono::Utc::now().timestamp();
        let signature = self.key.sign(&id, timestamp, &body);
        let sent = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let status = match sent {
            Ok(resp) => resp.status().as_u16(),
            Err(e) => return Err(self.request_error(e)),
        };
        match status {
            200..=299 => Ok(()),
            410 => {
                if !self.gone.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        url = %self.shown,
                        "webhook endpoint answered 410 Gone: it is disabled until the worker restarts, \
                         and every later result for it is dead-lettered"
                    );
                }
                Err(WebhookError::Status { url: self.shown.clone(), status }.into())
            }
            _ => Err(WebhookError::Status { url: self.shown.clone(), status }.into()),
        }
    }

    fn disabled(&self) -> SinkError {
        WebhookError::Disabled { url: self.shown.clone() }.into()
    }

    /// A request that got no answer: refused by the guard (permanent), or
    /// timed out / unreachable (transient). The message leaves the URL
    /// out (its query may hold a token).
    fn request_error(&self, e: reqwest::Error) -> SinkError {
        match outbound::no_answer(e) {
            outbound::NoAnswer::Blocked(reason) => WebhookError::Blocked { url: self.shown.clone(), reason },
            outbound::NoAnswer::Unreachable(reason) => WebhookError::Unreachable { url: self.shown.clone(), reason },
        }
        .into()
    }
}

/// The result's id and the Standard Webhooks body of a result record
/// (binary mode): `type`, `timestamp` (the result's `time`), `data`, and
/// every `ce_*` attribute without its prefix.
fn payload(rec: &Record) -> Result<(String, Vec<u8>), String> {
    let mut body = Map::new();
    for (k, v) in rec.headers.iter() {
        let Some(name) = k.strip_prefix(CE_PREFIX) else { continue };
        if name == "data" {
            continue;
        }
        let v = std::str::from_utf8(v).map_err(|_| format!("attribute `{name}` is not UTF-8"))?;
        body.insert(name.to_string(), Value::String(v.to_string()));
    }
    let attr = |name: &str| match body.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(format!("the result has no `{name}` attribute")),
    };
    let id = attr("id")?;
    let time = attr("time")?;
    attr("type")?;
    let data: Value = serde_json::from_slice(&rec.value).map_err(|e| format!("the result's data is not JSON: {e}"))?;
    body.insert("timestamp".into(), Value::String(time));
    body.insert("data".into(), data);
    let bytes = serde_json::to_vec(&Value::Object(body)).expect("a JSON map always serialises");
    Ok((id, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_has_the_standard_webhooks_shape_and_the_cloudevents_attributes() {
        let mut rec = Record { key: None, headers: Default::default(), value: br#"{"risk_score":0.25}"#.to_vec() };
        for (k, v) in [
            ("ce_specversion", "1.0"),
            ("ce_id", "r-1"),
            ("ce_source", "modelbus/claims-risk"),
            ("ce_type", "RiskScored"),
            ("ce_time", "2026-01-02T03:04:05.678Z"),
            ("ce_traceparent", "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"),
            ("ce_worker", "claims-risk"),
            ("content-type", "application/json"),
        ] {
            rec.headers.push(k, v.as_bytes());
        }
        let (id, body) = payload(&rec).unwrap();
        assert_eq!(id, "r-1");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "RiskScored");
        assert_eq!(v["timestamp"], "2026-01-02T03:04:05.678Z");
        assert_eq!(v["data"]["risk_score"], 0.25);
        assert_eq!(v["id"], "r-1");
        assert_eq!(v["source"], "modelbus/claims-risk");
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["worker"], "claims-risk");
        assert!(v["traceparent"].as_str().unwrap().starts_with("00-"));
        assert!(v.get("content-type").is_none());
    }

    #[test]
    fn a_record_without_an_id_is_refused() {
        let rec = Record { key: None, headers: Default::default(), value: b"{}".to_vec() };
        assert!(payload(&rec).unwrap_err().contains("`id`"));
    }
}
