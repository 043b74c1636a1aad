//! Error classes. Every module has its own `thiserror` enum and implements
//! [`Classify`], so the worker can decide what to do from the class alone:
//! retry a transient error, dead-letter a permanent one at once, stop on a
//! fatal one without committing.

use std::fmt;

/// What the worker does with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Might succeed if tried again later (a store timeout, a sink that is down).
    Transient,
    /// Will never succeed for this input (malformed JSON, schema violation).
    Permanent,
    /// The worker itself cannot go on (lost data directory, corrupt model).
    Fatal,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Fatal => "fatal",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Implemented by every module's error type.
pub trait Classify {
    fn class(&self) -> ErrorClass;
    /// A stable, machine-readable code (`schema_violation`, `unknown_entity`)
    /// that dead letters carry in `dlcode`; dashboards count by it.
    fn code(&self) -> &'static str;
}
