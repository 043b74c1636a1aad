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
    let example = modelbus::example::set_up(dir.path(), None, edit).unwrap_or_else(|e| panic!("{e}"));
    Claims { dir, config_path: example.config_path, config: example.config }
}

/// Copies an example directory (`examples/<name>`) to `to`, leaving out a
/// `data` directory someone running the example in place left there.
pub fn copy_example(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            if e.file_name() != "data" {
                copy_example(&e.path(), &target);
            }
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
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

/// Waits until the log file at `path` contains `needle`; returns whether it did.
pub async fn wait_for_log(path: &Path, needle: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::fs::read_to_string(path).unwrap_or_default().contains(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_modelbus")
}

/// A `modelbus` command whose process dies with the test that started it,
/// so a failing test leaves no worker behind.
pub fn modelbus() -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(bin());
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

/// `modelbus run --config` as a child process, logging to a file.
pub fn spawn_worker(config: &Path, log: &Path) -> Child {
    spawn_worker_with(config, log, &[])
}

/// [`spawn_worker`] with extra environment variables (`RUST_LOG`, or
/// `MODELBUS_FAULTS` to inject failures); they override the defaults.
pub fn spawn_worker_with(config: &Path, log: &Path, env: &[(&str, &str)]) -> Child {
    let log = std::fs::File::create(log).unwrap();
    modelbus()
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
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
    Record { key: Some(key.as_bytes().to_vec()), headers: Default::default(), value: value.to_vec() }
}

/// A small deployment around one of `tests/models/*.onnx` (6 float inputs
/// `x0..x5`, nullable), consuming `readings` and emitting `Scored`.
/// `worker_extra` is appended to the worker table.
pub fn reading_deployment(
    model: &str,
    model_extra: &str,
    outputs: &str,
    worker_extra: &str,
) -> (tempfile::TempDir, PathBuf, Config) {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models");
    std::fs::copy(root.join(format!("{model}.onnx")), dir.path().join("m.onnx")).unwrap();
    std::fs::copy(root.join(format!("{model}.golden.json")), dir.path().join("m.golden.json")).unwrap();
    std::fs::create_dir_all(dir.path().join("schemas/Reading")).unwrap();
    let props: Vec<String> = (0..6).map(|i| format!("\"x{i}\": {{\"type\": [\"number\", \"null\"]}}")).collect();
    std::fs::write(
        dir.path().join("schemas/Reading/1.json"),
        format!(
            "{{\"$schema\": \"https://json-schema.org/draft/2020-12/schema\", \"type\": \"object\", \
             \"properties\": {{{}}}, \"required\": [\"x0\",\"x1\",\"x2\",\"x3\",\"x4\",\"x5\"]}}",
            props.join(", ")
        ),
    )
    .unwrap();
    let text = format!(
        r#"
data_dir = "data"
[bus.embedded]
partitions = 2
[models.m]
path = "m.onnx"
{model_extra}
[[workers]]
name = "scorer"
topic = "readings"
event_type = "Reading"
model = "m"
result_type = "Scored"
{worker_extra}
[workers.inputs]
input = ["data.x0", "data.x1", "data.x2", "data.x3", "data.x4", "data.x5"]
[workers.outputs]
{outputs}
[[workers.sinks]]
topic = "scored"
"#
    );
    let config_path = dir.path().join("modelbus.toml");
    std::fs::write(&config_path, text).unwrap();
    let config = modelbus::config::load(&config_path).unwrap_or_else(|e| panic!("{e}"));
    (dir, config_path, config)
}

/// A `Reading` event with the given values (None = null).
pub fn reading(id: &str, xs: [Option<f64>; 6]) -> Record {
    let mut data = serde_json::Map::new();
    for (i, x) in xs.iter().enumerate() {
        data.insert(format!("x{i}"), x.map_or(serde_json::Value::Null, serde_json::Value::from));
    }
    modelbus::event::Event::from_structured_for_publish(serde_json::json!({
        "id": id, "type": "Reading", "source": "/test", "subject": id, "data": data,
    }))
    .unwrap()
    .to_record()
}

/// Dead letters of a topic, parsed.
pub async fn dead_letters(bus: &Bus, topic: &str) -> Vec<modelbus::dead_letter::DeadLetter> {
    read_all(bus, topic)
        .await
        .into_iter()
        .filter_map(|d| modelbus::dead_letter::DeadLetter::from_record(d.record, d.tp.partition, d.offset))
        .collect()
}
/// Adds an `[http]` endpoint on a free port to the config; returns its address.
pub fn with_http(config_path: &Path) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let text = std::fs::read_to_string(config_path).unwrap();
    std::fs::write(config_path, format!("{text}\n[http]\nlisten = \"{addr}\"\n")).unwrap();
    addr
}

/// One HTTP/1.1 GET: the status and the whole response.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, buf)
}

pub mod kafka;
