//! Why a record is not an event: the decode errors, all permanent (the same
//! bytes fail the same way forever), each with its dead-letter code.

use crate::error::{Classify, ErrorClass};

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("missing required CloudEvents attribute `{0}`")]
    MissingAttribute(&'static str),
    #[error("unsupported specversion `{0}` (expected 1.0)")]
    SpecVersion(String),
    #[error("attribute `{name}` is invalid: {reason}")]
    InvalidAttribute { name: String, reason: String },
    #[error("data is not valid JSON: {0}")]
    DataNotJson(String),
    #[error("structured-mode event is not a JSON object: {0}")]
    NotAnObject(String),
    #[error("a header name is not UTF-8 (its bytes in hex: {0}); it was repaired to read the record")]
    InvalidHeaderName(String),
}

impl Classify for EventError {
    fn class(&self) -> ErrorClass {
        // Decoding is deterministic: the same bytes fail the same way forever.
        ErrorClass::Permanent
    }
    fn code(&self) -> &'static str {
        match self {
            EventError::MissingAttribute(_) => "missing_attribute",
            EventError::SpecVersion(_) => "bad_specversion",
            EventError::InvalidAttribute { .. } => "invalid_attribute",
            EventError::DataNotJson(_) => "malformed_json",
            EventError::NotAnObject(_) => "malformed_json",
            EventError::InvalidHeaderName(_) => "invalid_header_name",
        }
    }
}
