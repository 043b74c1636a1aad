//! modelbus runs machine-learning models on business events.
//!
//! An event's journey, one module per step:
//!
//! - [`config`] — the TOML tree that declares bus, schemas, stores, models, workers.
//! - [`event`] — the CloudEvents envelope, trace context, and raw bus [`event::Record`]s.
//! - [`bus`] — topics, partitions, consumer groups and commits; `embedded` and `kafka` backends.
//! - [`schema`] — the schema registry: validation and compatibility of versions.
//! - [`faults`] — fault injection points for failure tests.
//! - [`features`] — feature stores: entity key → named features, batched.
//! - [`model`] — ONNX models run in-process; golden checks at load.
//! - [`preflight`] — what `modelbus validate` checks: the config, schemas, models, and each worker against its model.
//! - [`worker`] — the loop: receive → decode → validate → features → infer → emit → ack.
//! - [`retry`] — backoff and the give-up decision for transient failures.
//! - [`dead_letter`] — the failure envelope, and reading dead letters back.
//! - [`dedup`] — the optional input dedup window.
//! - [`sink`] — where results go.
//! - [`app`] — assembles a running deployment from a config.
//! - [`telemetry`] — metric names, counters, latency, tracing setup.
//! - [`http`] — the worker's `/metrics`, `/healthz` and `/readyz` endpoint.
//! - [`error`] — the error classes every module's errors map to.
//! - [`sqlite_config`] — process-wide SQLite settings.
//! - [`private_fs`] — data directories and database files only their owner can read.
//! - [`secrets`] — values taken from the environment, kept out of every message.
//! - [`memory`] — returning freed memory to the OS after a burst.
//! - [`example`] — the claims example built into the binary, and its event generator.
//!
//! `modelbus demo` and `modelbus bench` are commands of the binary
//! (`src/cli/`), and use this library only through its public API.

pub mod app;
pub mod bus;
pub mod config;
pub mod dead_letter;
pub mod dedup;
pub mod error;
pub mod event;
pub mod example;
pub mod faults;
pub mod features;
/// The bodies of the cargo-fuzz targets in `fuzz/`, shared with `tests/fuzz_regressions.rs`.
#[doc(hidden)]
pub mod fuzz_targets;
pub mod http;
pub mod memory;
pub mod model;
pub mod preflight;
pub(crate) mod private_fs;
pub(crate) mod retry;
pub mod schema;
pub(crate) mod secrets;
pub(crate) mod sink;
pub mod sqlite_config;
pub mod telemetry;
pub(crate) mod worker;
