//! The webhook sink's errors, and which of them a retry can fix.

use crate::error::{Classify, ErrorClass};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook sink {url}: cannot start: {reason}")]
    Open { url: String, reason: String },
    #[error("webhook {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("webhook {url} unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("webhook {url} refused by the address guard: {reason}")]
    Blocked { url: String, reason: String },
    #[error("webhook {url} is disabled until restart, after a 410")]
    Disabled { url: String },
    #[error("webhook {url}: result cannot be sent: {reason}")]
    Record { url: String, reason: String },
}

impl Classify for WebhookError {
    fn class(&self) -> ErrorClass {
        match self {
            // The receiver may take it later: busy, failing, or not there.
            WebhookError::Status { status, .. } if *status == 429 || *status >= 500 => ErrorClass::Transient,
            WebhookError::Unreachable { .. } => ErrorClass::Transient,
            // Refused for what it is (4xx, 410 Gone), or never to be sent.
            WebhookError::Status { .. }
            | WebhookError::Blocked { .. }
            | WebhookError::Disabled { .. }
            | WebhookError::Record { .. } => ErrorClass::Permanent,
            WebhookError::Open { .. } => ErrorClass::Fatal,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            WebhookError::Open { .. } => "webhook_open",
            WebhookError::Status { .. } => "webhook_status",
            WebhookError::Unreachable { .. } => "webhook_unreachable",
            WebhookError::Blocked { .. } => "webhook_blocked_address",
            WebhookError::Disabled { .. } => "webhook_gone",
            WebhookError::Record { .. } => "webhook_record",
        }
    }
}
