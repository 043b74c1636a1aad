//! The CloudEvents HTTP sink's errors, and which of them a retry can fix.

use crate::error::{Classify, ErrorClass};

#[derive(Debug, thiserror::Error)]
pub enum HttpSinkError {
    #[error("http sink {url}: cannot start: {reason}")]
    Open { url: String, reason: String },
    #[error("http sink {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("http sink {url} unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("http sink {url} refused by the address guard: {reason}")]
    Blocked { url: String, reason: String },
    #[error("http sink {url}: result cannot be sent: {reason}")]
    Record { url: String, reason: String },
}

impl HttpSinkError {
    /// The same failure for another record of a batch (errors do not clone).
    pub(super) fn duplicate(&self) -> HttpSinkError {
        match self {
            HttpSinkError::Open { url, reason } => HttpSinkError::Open { url: url.clone(), reason: reason.clone() },
            HttpSinkError::Status { url, status } => HttpSinkError::Status { url: url.clone(), status: *status },
            HttpSinkError::Unreachable { url, reason } => {
                HttpSinkError::Unreachable { url: url.clone(), reason: reason.clone() }
            }
            HttpSinkError::Blocked { url, reason } => {
                HttpSinkError::Blocked { url: url.clone(), reason: reason.clone() }
            }
            HttpSinkError::Record { url, reason } => HttpSinkError::Record { url: url.clone(), reason: reason.clone() },
        }
    }
}

impl Classify for HttpSinkError {
    fn class(&self) -> ErrorClass {
        match self {
            // The receiver may take it later: busy, failing, or not there.
            HttpSinkError::Status { status, .. } if *status == 429 || *status >= 500 => ErrorClass::Transient,
            HttpSinkError::Unreachable { .. } => ErrorClass::Transient,
            // Refused for what it is (4xx), or never to be sent.
            HttpSinkError::Status { .. } | HttpSinkError::Blocked { .. } | HttpSinkError::Record { .. } => {
                ErrorClass::Permanent
            }
            HttpSinkError::Open { .. } => ErrorClass::Fatal,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            HttpSinkError::Open { .. } => "http_open",
            HttpSinkError::Status { .. } => "http_status",
            HttpSinkError::Unreachable { .. } => "http_unreachable",
            HttpSinkError::Blocked { .. } => "http_blocked_address",
            HttpSinkError::Record { .. } => "http_record",
        }
    }
}
