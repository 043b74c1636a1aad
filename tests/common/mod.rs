//! Shared helpers for the end-to-end tests: a claims deployment in a
//! temporary directory, publishing, reading topics, and child processes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use modelbus::bus::{Bus, Delivery, ReadFrom};
use modelbus::config::Config;
use modelbus::event::Record;

pub struct Claims {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub config: Config,
}

/// The built-in claims example in a fresh directory, with features loaded.
/// `edit` may rewrite the config text first (e.g. shorter timeouts).
pub fn claims(edit: impl FnOnce(String) -> String) -> Claims {
    let dir = tempfile::tempdir().unwrap();
    let config_path = modelbus::example::write_to(dir.path()).unwrap();
    let text = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(&config_path, edit(text)).unwrap();
    let config = modelbus::config::load(&config_path).unwrap_or_else(|e| panic!("{e}"));
    modelbus::features::embedded::load_csv(&config.data_dir, "customers", &dir.path().join("features/customers.csv"))
        .unwrap();
    Claims { dir, config_path, config }
}

/// Reads every record of a topic (empty if the topic does not exist yet).
pub async fn read_all(bus: &Bus, topic: &str) -> Vec<Delivery> {
    bus.read(topic, ReadFrom::Beginning, usize::MAX).await.unwrap_or_default()
}

pub async fn count(bus: &Bus, topic: &str) -> u64 {
    bus.end_offsets(topic).await.map(|v| v.iter().sum()).unwrap_or(0)
}

/// Polls until `cond` holds or `timeout` passes; returns whether it held.
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    cond().await
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_modelbus")
}

/// `modelbus run --config` as a child process, logging to a file.
pub fn spawn_worker(config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(bin())
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

pub fn signal(child: &Child, sig: i32) {
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

pub fn raw(value: &[u8], key: &str) -> Record {
    Record { key: Some(key.as_bytes().to_vec()), headers: vec![], value: value.to_vec() }
}
