//! The CloudEvents HTTP sink (`kind = "http"`): results POSTed to a URL as
//! the CloudEvents HTTP protocol binding 1.0 puts them, in one of three
//! modes:
//!
//! - `binary` (default): one request per result; each CloudEvents
//!   attribute a `ce-<name>` header (the record's `ce_<name>`), the
//!   `content-type` the event's data content type, the body its data.
//! - `structured`: one request per result, `application/cloudevents+json`,
//!   the body the whole event.
//! - `batch`: one request per emitted batch,
//!   `application/cloudevents-batch+json`, the body a JSON array of events;
//!   its outcome is every record's.
//!
//! The configured `headers` go with every request. Per request: 2xx
//! accepts; 429, 5xx, a timeout or no connection is transient (retried by
//! the worker); any other status is permanent. A batch whose every record
//! failed transiently fails as a whole, so the worker's circuit breaker
//! sees an outage. Requests run concurrently, at most `max_concurrency` at
//! a time. Redirects are not followed, proxies from the environment are not
//! used, and unless `allow_private` every address connected to is checked
//! by the webhook sink's address guard.

mod config;
mod error;

use std::sync::Arc;

pub use config::{HttpMode, HttpSinkConfig};
pub use error::HttpSinkError;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::outbound;
use super::SinkError;
use crate::error::{Classify, ErrorClass};
use crate::event::{Event, Record, CE_PREFIX, JSON_CONTENT_TYPE};

const STRUCTURED: &str = "application/cloudevents+json; charset=utf-8";
const BATCH: &str = "application/cloudevents-batch+json; charset=utf-8";

pub struct HttpSink {
    client: reqwest::Client,
    url: reqwest::Url,
    /// The URL as messages show it (no credentials or query).
    shown: String,
    mode: HttpMode,
    permits: Arc<Semaphore>,
}

/// One request's headers (besides the configured ones) and body.
type Request = (HeaderMap, Vec<u8>);

impl HttpSink {
    /// Builds the client, the configured headers its defaults (their values
    /// are remembered as secrets, so logs never show them).
    pub async fn open(cfg: &HttpSinkConfig) -> Result<HttpSink, SinkError> {
        let shown = cfg.display_url();
        let open_err = |reason: String| SinkError::from(HttpSinkError::Open { url: shown.clone(), reason });
        let url = reqwest::Url::parse(&cfg.url).map_err(|e| open_err(format!("url: {e}")))?;
        let mut defaults = HeaderMap::new();
        let mut known = crate::secrets::Secrets::default();
        for (name, value) in &cfg.headers {
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| open_err(format!("header `{name}`: {e}")))?;
            let mut v = HeaderValue::from_str(value)
                .map_err(|_| open_err(format!("header `{name}`: not a valid header value")))?;
            v.set_sensitive(true);
            defaults.insert(n, v);
            known.add(name, value);
        }
        crate::secrets::remember(&known);
        let builder = outbound::client(cfg.timeout, cfg.allow_private).default_headers(defaults);
        let client = builder.build().map_err(|e| open_err(format!("HTTP client: {e}")))?;
        Ok(HttpSink {
            client,
            url,
            shown,
            mode: cfg.mode,
            permits: Arc::new(Semaphore::new(cfg.max_concurrency.max(1))),
        })
    }

    /// The URL as `dlsink` and messages show it.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// An outcome per record, in order. When every record failed
    /// transiently the whole call fails (an outage, for the breaker).
    pub async fn emit(&self, records: Vec<Record>) -> Result<Vec<Result<(), SinkError>>, SinkError> {
        let mut outcomes = match self.mode {
            HttpMode::Batch => self.emit_batch(&records).await,
            mode => futures::future::join_all(records.iter().map(|r| self.deliver_one(r, mode))).await,
        };
        let outage = !outcomes.is_empty()
            && outcomes.iter().all(|o| o.as_ref().is_err_and(|e| e.class() == ErrorClass::Transient));
        if outage {
            if let Some(Err(e)) = outcomes.pop() {
                return Err(e);
            }
        }
        Ok(outcomes)
    }

    async fn deliver_one(&self, rec: &Record, mode: HttpMode) -> Result<(), SinkError> {
        let made = match mode {
            HttpMode::Binary => binary(rec),
            _ => structured(rec).map(|v| {
                let mut h = HeaderMap::new();
                h.insert(CONTENT_TYPE, HeaderValue::from_static(STRUCTURED));
                (h, serde_json::to_vec(&v).expect("JSON always serialises"))
            }),
        };
        let (headers, body) = made.map_err(|reason| self.record_err(reason))?;
        self.send(headers, body).await.map_err(SinkError::from)
    }

    /// One request for the whole batch; records that cannot be encoded fail
    /// alone and are left out of it.
    async fn emit_batch(&self, records: &[Record]) -> Vec<Result<(), SinkError>> {
        let encoded: Vec<Result<Value, String>> = records.iter().map(structured).collect();
        let events: Vec<&Value> = encoded.iter().filter_map(|e| e.as_ref().ok()).collect();
        let sent = if events.is_empty() {
            Ok(())
        } else {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(BATCH));
            self.send(h, serde_json::to_vec(&events).expect("JSON always serialises")).await
        };
        encoded
            .into_iter()
            .map(|e| match (e, &sent) {
                (Err(reason), _) => Err(self.record_err(reason)),
                (Ok(_), Ok(())) => Ok(()),
                (Ok(_), Err(err)) => Err(err.duplicate().into()),
            })
            .collect()
    }

    async fn send(&self, headers: HeaderMap, body: Vec<u8>) -> Result<(), HttpSinkError> {
        let _permit = self.permits.acquire().await.map_err(|_| HttpSinkError::Unreachable {
            url: self.shown.clone(),
            reason: "the sink is closing".into(),
        })?;
        let sent = self.client.post(self.url.clone()).headers(headers).body(body).send().await;
        let status = match sent {
            Ok(resp) => resp.status().as_u16(),
            Err(e) => return Err(self.request_error(e)),
        };
        match status {
            200..=299 => Ok(()),
            _ => Err(HttpSinkError::Status { url: self.shown.clone(), status }),
        }
    }

    fn record_err(&self, reason: String) -> SinkError {
        HttpSinkError::Record { url: self.shown.clone(), reason }.into()
    }

    /// A request that got no answer: refused by the guard (permanent), or
    /// timed out / unreachable (transient). The message leaves the URL out.
    fn request_error(&self, e: reqwest::Error) -> HttpSinkError {
        match outbound::no_answer(e) {
            outbound::NoAnswer::Blocked(reason) => HttpSinkError::Blocked { url: self.shown.clone(), reason },
            outbound::NoAnswer::Unreachable(reason) => HttpSinkError::Unreachable { url: self.shown.clone(), reason },
        }
    }
}

/// Binary mode: every CloudEvents attribute of the result (its record's
/// `ce_<name>` headers) as a `ce-<name>` header, its value percent-encoded
/// as the HTTP binding asks; `content-type` the data's; the body the data.
fn binary(rec: &Record) -> Result<Request, String> {
    let event = Event::from_record(rec).map_err(|e| format!("not a CloudEvent: {e}"))?;
    let Value::Object(attrs) = event.to_structured() else { unreachable!("an event is a JSON object") };
    let mut headers = HeaderMap::new();
    for (name, v) in &attrs {
        if name == "data" || name == "datacontenttype" {
            continue;
        }
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let n = HeaderName::from_bytes(format!("ce-{name}").as_bytes())
            .map_err(|_| format!("attribute `{name}` cannot be an HTTP header name"))?;
        let v = HeaderValue::from_str(&percent_encode(&v)).map_err(|_| format!("attribute `{name}`: bad value"))?;
        headers.insert(n, v);
    }
    let ct = event.datacontenttype.as_deref().unwrap_or(JSON_CONTENT_TYPE);
    headers.insert(CONTENT_TYPE, HeaderValue::from_str(ct).map_err(|_| "bad datacontenttype".to_string())?);
    // A binary-mode record's value is the data as sent; otherwise the data
    // is serialised from the decoded event.
    let body = if rec.header(&format!("{CE_PREFIX}specversion")).is_some() {
        rec.value.clone()
    } else {
        serde_json::to_vec(&event.data).expect("JSON always serialises")
    };
    Ok((headers, body))
}

/// Structured mode: the event as JSON.
fn structured(rec: &Record) -> Result<Value, String> {
    Event::from_record(rec).map(|e| e.to_structured()).map_err(|e| format!("not a CloudEvent: {e}"))
}

/// The HTTP binding's header value encoding: printable ASCII but `"` and
/// `%` as is, anything else (space included) `%XX` of its UTF-8 bytes.
fn percent_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'"' && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result_record() -> Record {
        let mut rec = Record { key: None, headers: Default::default(), value: br#"{"risk_score":0.25}"#.to_vec() };
        for (k, v) in [
            ("ce_specversion", "1.0"),
            ("ce_id", "r-1"),
            ("ce_source", "modelbus/claims-risk"),
            ("ce_type", "RiskScored"),
            ("ce_time", "2026-01-02T03:04:05.678Z"),
            ("ce_traceparent", "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"),
            ("ce_worker", "claims risk"),
            ("content-type", "application/json"),
        ] {
            rec.headers.push(k, v.as_bytes());
        }
        rec
    }

    #[test]
    fn binary_mode_maps_each_attribute_to_a_ce_header() {
        let (h, body) = binary(&result_record()).unwrap();
        assert_eq!(h["ce-id"], "r-1");
        assert_eq!(h["ce-specversion"], "1.0");
        assert_eq!(h["ce-type"], "RiskScored");
        assert!(h["ce-time"].to_str().unwrap().starts_with("2026-01-02T03:04:05.678"));
        assert!(h["ce-traceparent"].to_str().unwrap().starts_with("00-"));
        assert_eq!(h["ce-worker"], "claims%20risk");
        assert_eq!(h[CONTENT_TYPE], "application/json");
        assert_eq!(body, br#"{"risk_score":0.25}"#);
    }

    #[test]
    fn structured_mode_is_the_whole_event() {
        let v = structured(&result_record()).unwrap();
        assert_eq!(v["id"], "r-1");
        assert_eq!(v["data"]["risk_score"], 0.25);
        assert_eq!(v["worker"], "claims risk");
    }

    #[test]
    fn a_record_that_is_not_an_event_is_refused() {
        let rec = Record { key: None, headers: Default::default(), value: b"{}".to_vec() };
        assert!(binary(&rec).is_err());
        assert!(structured(&rec).is_err());
    }
}
