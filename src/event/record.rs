//! The raw bus record (key, headers, value bytes): what every bus carries,
//! whether or not it holds a CloudEvent, so input that is not one still
//! travels and can be dead-lettered intact.

use super::Headers;

/// Added by a bus reader for each header whose name was not UTF-8 (Kafka
/// allows any bytes): the name was repaired lossily, and this header holds
/// the original name's bytes in hex. Decoding refuses such a record
/// (`invalid_header_name`), so it is dead-lettered with this trace of it.
pub const INVALID_HEADER_NAME: &str = "modelbus-invalid-header-name";

/// One raw record as every bus carries it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub headers: Headers,
    pub value: Vec<u8>,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Sets a header, replacing any earlier value of the same name.
    pub fn set_header(&mut self, name: &str, value: impl AsRef<[u8]>) {
        self.headers.set(name, value.as_ref());
    }

    /// Approximate size in bytes, for payload limits.
    pub fn size(&self) -> usize {
        self.value.len() + self.key.as_ref().map_or(0, |k| k.len()) + self.headers.byte_len()
    }
}

/// A record's key as text, when it has a non-empty UTF-8 one.
pub(super) fn record_key(rec: &Record) -> Option<String> {
    rec.key.as_deref().filter(|k| !k.is_empty()).and_then(|k| std::str::from_utf8(k).ok()).map(str::to_string)
}
