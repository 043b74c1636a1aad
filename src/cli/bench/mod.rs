//! `modelbus bench`: its flags, which benchmark they choose, and what the
//! benchmarks share: pinning processes to cores, starting and stopping the
//! worker process and reading its CPU time, and the model rows and
//! inference timing.
//!
//! - [`embedded`]: the claims model's numbers on the embedded bus (the default);
//! - [`kafka`]: modelbus on Kafka against a Python worker, and with [`floor`]
//!   (`modelbus bench-floor`), the Kafka client's own cost per event;
//! - [`kafka_paced`]: their latency at a fixed rate (`--kafka --paced`).

mod embedded;
pub mod floor;
mod kafka;
mod kafka_paced;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;

use modelbus::bus::kafka::KafkaBusConfig;
use modelbus::config::{BusConfig, Config};
use modelbus::example::Generator;
use modelbus::model::{Model, TensorInput};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Backlog size for the throughput phase.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Offered rate of the latency phase, events/s.
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// Length of the latency phase.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Inference batch size.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Python with onnxruntime, for the comparison (skipped with a note when absent).
    #[arg(long, default_value = ".venv/bin/python")]
    pub python: PathBuf,
    /// Directory to run in (default: a new temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Instead: modelbus on this Kafka cluster (`host:port`) against the
    /// Python confluent-kafka + onnxruntime baseline, on the same events.
    #[arg(long, value_name = "BROKERS")]
    pub kafka: Option<String>,
    /// With `--kafka`: run the three workers in turn this many times on the
    /// same backlog and report the medians (one run on a shared machine can
    /// be a quarter off).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rounds: u32,
    /// With `--kafka`: instead of draining a backlog, offer `--rate` events/s
    /// for `--duration` to modelbus and then to the Python baseline, and
    /// report p50/p99 from each event's send to its result.
    #[arg(long)]
    pub paced: bool,
    /// With `--kafka --paced`: the consumers' `fetch.wait.max.ms` (both
    /// workers'), the setting that trades broker load for latency.
    #[arg(long, default_value_t = 10)]
    pub fetch_wait_ms: u32,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(brokers) = &args.kafka {
        if args.paced {
            return kafka_paced::run(&args, brokers).await;
        }
        return kafka::run(&args, brokers).await;
    }
    embedded::run(&args).await
}

/// Pins this process to `core` when the machine has it (best effort).
fn pin_to_core(core: usize) {
    #[cfg(target_os = "linux")]
    unsafe {
        if core >= num_cpus() {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The machine's online cores. Not `available_parallelism`: that honours
/// this process's own affinity, which is one core once the bench pins
/// itself, and then the worker would silently share the generator's core.
fn num_cpus() -> usize {
    // SAFETY: sysconf only reads a system value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        1
    }
}

fn spawn_worker(config: &Path) -> anyhow::Result<Child> {
    let mut cmd = on_core_0(std::env::current_exe()?);
    cmd.arg("run").arg("--config").arg(config).env("RUST_LOG", "warn,tract_onnx=error").stdout(Stdio::null());
    cmd.spawn().context("starting the worker process")
}

/// A command for `program` pinned to core 0 with `taskset`, when the
/// machine has a second core for the generator and `taskset` is there.
fn on_core_0(program: impl AsRef<std::ffi::OsStr>) -> Command {
    if num_cpus() >= 2 && which("taskset") {
        let mut c = Command::new("taskset");
        c.arg("-c").arg("0").arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn stop(child: &mut Child) {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
}

fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading worker CPU time")?;
    // Fields after the command name (which may contain spaces) start after ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// The Kafka settings of a config that `--kafka` pointed at a cluster.
fn kafka_config(config: &Config) -> anyhow::Result<&KafkaBusConfig> {
    match &config.bus {
        BusConfig::Kafka(k) => Ok(k),
        _ => bail!("the bench's config does not run on Kafka"),
    }
}

/// Realistic model rows: generated claims joined with the customers CSV.
fn claim_rows(csv_path: &Path, n: usize) -> anyhow::Result<Vec<f32>> {
    let mut rdr = csv::Reader::from_path(csv_path)?;
    let mut customers: HashMap<String, Vec<f32>> = HashMap::new();
    for r in rdr.records() {
        let r = r?;
        let vals = r.iter().skip(1).map(|v| v.parse::<f32>().unwrap_or(f32::NAN)).collect();
        customers.insert(r[0].to_string(), vals);
    }
    let mut g = Generator::new(3, 0.0);
    let mut rows = Vec::with_capacity(n * 12);
    for _ in 0..n {
        let e = g.claim(Utc::now());
        let d = &e.data;
        for f in ["amount", "claim_type_code", "days_since_policy_start", "incident_hour"] {
            rows.push(d[f].as_f64().unwrap_or(f64::NAN) as f32);
        }
        rows.extend(customers.get(d["customer_id"].as_str().unwrap_or("")).context("customer")?);
    }
    Ok(rows)
}

fn time_inference(model: &Model, rows: &[f32], batch: usize) -> anyhow::Result<(f64, f64)> {
    let width = 12;
    let n = rows.len() / width;
    let run_all = || -> anyhow::Result<()> {
        for start in (0..n).step_by(batch) {
            let k = batch.min(n - start);
            let data = rows[start * width..(start + k) * width].to_vec();
            model.run(vec![TensorInput { rows: k, cols: width, data }])?;
        }
        Ok(())
    };
    run_all()?; // warm-up
    let t = Instant::now();
    let mut passes = 0;
    while t.elapsed() < Duration::from_secs(2) || passes < 3 {
        run_all()?;
        passes += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    let total = (n * passes) as f64;
    Ok((total / secs, secs * 1e6 / total))
}
