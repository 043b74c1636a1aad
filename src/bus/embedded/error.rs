//! The embedded bus's own errors: its SQLite store and data directory.
//! They classify themselves; [`crate::bus::BusError`] carries them whole.

use crate::error::{Classify, ErrorClass};

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedBusError {
    #[error("embedded bus store {path}: {source}")]
    Store { path: String, source: rusqlite::Error },
    #[error("embedded bus store busy: {0}")]
    Busy(rusqlite::Error),
    #[error("cannot open data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
}

impl Classify for EmbeddedBusError {
    fn class(&self) -> ErrorClass {
        match self {
            // Another process holds the write lock longer than our busy
            // handler waits: it will let go.
            EmbeddedBusError::Busy(_) => ErrorClass::Transient,
            // A store that fails for any other reason (disk gone, corrupt file)
            // cannot be trusted with the group's position.
            EmbeddedBusError::Store { .. } | EmbeddedBusError::DataDir { .. } => ErrorClass::Fatal,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            EmbeddedBusError::Store { .. } => "bus_store",
            EmbeddedBusError::Busy(_) => "bus_busy",
            EmbeddedBusError::DataDir { .. } => "data_dir",
        }
    }
}
