//! `modelbus bench`: the claims model's numbers, in one run.
//!
//! - raw batched inference, rows/s and µs/row, and onnxruntime's on the same
//!   rows (through `scripts/bench_ort.py`, when a Python with onnxruntime is there);
//! - end-to-end events/s on the embedded bus: a backlog is published, then a
//!   worker *process* (pinned to core 0 with `taskset`) drains it while this
//!   process (pinned to core 1) watches the result topic;
//! - worker CPU per event from `/proc/<pid>/stat` over the steady part of
//!   the drain, with and without the measured inference time;
//! - latency p50/p99 at a fixed offered rate, timed from each event's
//!   *scheduled* send time (its `time` attribute), so a stalled generator
//!   cannot hide queueing; peak RSS of the worker during that paced run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use hdrhistogram::Histogram;

use crate::bus::{Bus, ReadFrom};
use crate::event::Event;
use crate::example::{self, Generator};
use crate::model::{Model, TensorInput};

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
            return crate::bench_kafka_paced::run(&args, brokers).await;
        }
        return crate::bench_kafka::run(&args, brokers).await;
    }
    let tmp = tempfile::Builder::new().prefix("modelbus-bench-").tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let config_path = example::write_to(&dir)?;
    let config = crate::config::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::features::embedded::load_csv(&config.data_dir, example::STORE, &dir.join("features/customers.csv"))?;
    pin_to_core(1);
    println!("modelbus bench — claims model, batch {}, in {}", args.batch, dir.display());

    // 1. inference alone
    let model = Arc::new(Model::load("risk", &config.models["risk"])?);
    let rows = claim_rows(&dir.join("features/customers.csv"), 20_480)?;
    let (ours_rows_s, ours_us_row) = time_inference(&model, &rows, args.batch)?;
    let ort = ort_baseline(&args.python, &dir, &config.models["risk"].path, &rows, args.batch);
    println!("\ninference ({} rows, batch {}):", rows.len() / 12, args.batch);
    println!("  modelbus (tract + own tree ops)  {ours_rows_s:>12.0} rows/s  {ours_us_row:>7.3} µs/row");
    match &ort {
        Ok(us) => println!(
            "  onnxruntime (python, same rows)  {:>12.0} rows/s  {us:>7.3} µs/row   ratio ours/ort = {:.3}",
            1e6 / us,
            ours_us_row / us
        ),
        Err(e) => println!("  onnxruntime: not measured ({e})"),
    }

    // 2. throughput: drain a backlog with a worker process on core 0
    let bus = Bus::open(&config)?;
    let mut generator = Generator::new(7, 0.0);
    let t = Instant::now();
    for chunk_start in (0..args.events).step_by(2000) {
        let k = 2000.min(args.events - chunk_start);
        let now = Utc::now();
        let batch = (0..k).map(|_| generator.claim(now).to_record()).collect();
        bus.publish(example::INPUT_TOPIC, batch).await?;
    }
    println!("\nbacklog: {} events published in {:.2} s", args.events, t.elapsed().as_secs_f64());
    let mut worker = spawn_worker(&config_path)?;
    let pid = worker.id();
    let result = drain(&bus, args.events as u64, pid).await;
    let (eps, cpu_us) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = worker.kill();
            return Err(e);
        }
    };
    println!("throughput (worker pinned to one core):");
    println!("  end to end       {eps:>10.0} events/s");
    println!("  worker CPU       {cpu_us:>10.2} µs/event in all");
    println!("  excl. inference  {:>10.2} µs/event (inference {ours_us_row:.2} µs/row)", cpu_us - ours_us_row);

    // 3. latency at a fixed offered rate. The drain's own peak (a full
    // in-flight table) is reported apart; the paced run's peak is measured
    // from a settled worker, so the two phases are not mixed.
    let drain_rss = peak_rss_kib(pid);
    settle(pid).await;
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let settled = rss_parts_kib(pid);
    let lat = paced(&bus, args.rate, args.duration).await;
    let rss = peak_rss_kib(pid);
    let parts = rss_parts_kib(pid);
    stop(&mut worker);
    let (h, n) = lat?;
    println!(
        "latency at {} events/s for {:?} ({n} events), from scheduled send time to result:",
        args.rate, args.duration
    );
    println!(
        "  p50 {:.3} ms   p99 {:.3} ms   p99.9 {:.3} ms   max {:.3} ms",
        h.value_at_quantile(0.5) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
        h.value_at_quantile(0.999) as f64 / 1e3,
        h.max() as f64 / 1e3
    );
    match rss {
        Some(kib) => {
            println!("  worker peak RSS during the paced run: {:.1} MiB", kib as f64 / 1024.0);
            let mib = |kib: u64| kib as f64 / 1024.0;
            for (when, p) in [("before it", settled), ("at its end", parts)] {
                if let Some((anon, file)) = p {
                    println!(
                        "  ({when}: {:.1} MiB anonymous, {:.1} MiB file-backed, mostly the binary's own code)",
                        mib(anon),
                        mib(file)
                    );
                }
            }
        }
        None => println!("  worker peak RSS: not available"),
    }
    if let Some(kib) = drain_rss {
        println!("  (worker peak RSS over start-up and the backlog drain: {:.1} MiB)", kib as f64 / 1024.0);
    }
    println!("\nsummary (targets from issue #2):");
    println!("  events/s end to end        {eps:>10.0}   target >= 50000");
    println!(
        "  p99 at {} ev/s           {:>10.3} ms target <= 5 ms",
        args.rate,
        h.value_at_quantile(0.99) as f64 / 1e3
    );
    println!("  CPU/event excl. inference  {:>10.2} µs target <= 6 µs", cpu_us - ours_us_row);
    if let Ok(us) = &ort {
        println!("  inference ours/ort         {:>10.3}    target <= 0.333", ours_us_row / us);
    }
    if let Some(kib) = rss {
        println!("  peak RSS                   {:>10.1} MiB target <= 50 MiB", kib as f64 / 1024.0);
    }
    Ok(())
}

/// Pins this process to `core` when the machine has it (best effort).
pub(crate) fn pin_to_core(core: usize) {
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
pub(crate) fn num_cpus() -> usize {
    // SAFETY: sysconf only reads a system value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        1
    }
}

pub(crate) fn spawn_worker(config: &Path) -> anyhow::Result<Child> {
    let mut cmd = on_core_0(std::env::current_exe()?);
    cmd.arg("run").arg("--config").arg(config).env("RUST_LOG", "warn,tract_onnx=error").stdout(Stdio::null());
    cmd.spawn().context("starting the worker process")
}

/// A command for `program` pinned to core 0 with `taskset`, when the
/// machine has a second core for the generator and `taskset` is there.
pub(crate) fn on_core_0(program: impl AsRef<std::ffi::OsStr>) -> Command {
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

pub(crate) fn stop(child: &mut Child) {
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

async fn handled(bus: &Bus) -> u64 {
    let results: u64 = bus.end_offsets(example::RESULT_TOPIC).await.map(|v| v.iter().sum()).unwrap_or(0);
    let dead: u64 = bus.end_offsets("claims.dlq").await.map(|v| v.iter().sum()).unwrap_or(0);
    results + dead
}

/// Waits for `n` results; rate and CPU/event over the 10%..90% stretch, so
/// start-up and the tail do not count.
async fn drain(bus: &Bus, n: u64, pid: u32) -> anyhow::Result<(f64, f64)> {
    let (lo, hi) = (n / 10, n * 9 / 10);
    let mut start: Option<(Instant, u64, f64)> = None;
    let mut measured = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = handled(bus).await;
        let now = Instant::now();
        if start.is_none() && done >= lo {
            start = Some((now, done, cpu_secs(pid)?));
        }
        if done >= hi && measured.is_none() {
            let (t0, d0, c0) = start.context("no start sample")?;
            let secs = now.duration_since(t0).as_secs_f64();
            let cpu = cpu_secs(pid)? - c0;
            let events = (done - d0) as f64;
            measured = Some((events / secs, cpu * 1e6 / events));
        }
        // The paced phase must start on an idle worker: wait for the tail too.
        if done >= n {
            return measured.context("no measurement");
        }
        if now > deadline {
            bail!("worker handled only {done} of {n} events in 600 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Publishes at `rate` for `duration`, each event stamped with its scheduled
/// send time; returns the latency histogram (µs) and the event count.
async fn paced(bus: &Bus, rate: u64, duration: Duration) -> anyhow::Result<(Histogram<u64>, usize)> {
    let mut results = bus.follow(example::RESULT_TOPIC, ReadFrom::End).await?;
    let mut generator = Generator::new(9, 0.0);
    let total = (rate as f64 * duration.as_secs_f64()) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let wall0 = Utc::now();
    let mut sent = 0usize;
    let mut scheduled_of: HashMap<String, chrono::DateTime<Utc>> = HashMap::with_capacity(total);
    while sent < total {
        // Everything whose scheduled time has come is sent now, stamped with
        // its schedule, so generator stalls count as latency.
        let due = ((start.elapsed().as_secs_f64() / interval.as_secs_f64()) as usize + 1).min(total);
        if due > sent {
            let mut batch = Vec::with_capacity(due - sent);
            for i in sent..due {
                let sched = wall0 + chrono::Duration::from_std(interval * i as u32)?;
                let e: Event = generator.claim(sched);
                scheduled_of.insert(e.id.clone(), sched);
                batch.push(e.to_record());
            }
            bus.publish(example::INPUT_TOPIC, batch).await?;
            sent = due;
        }
        // A thread sleep, not tokio's: its timer rounds every sleep up to the
        // next millisecond, which would add up to 1 ms of the generator's own
        // lateness to every latency sample. (This task does nothing else.)
        let next = start + interval * sent as u32;
        tokio::task::block_in_place(|| std::thread::sleep(next.saturating_duration_since(Instant::now())));
    }
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut seen = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < total && Instant::now() < deadline {
        for d in results.next_batch(10_000, Duration::from_millis(100)).await? {
            let Ok(e) = Event::from_record(&d.record) else { continue };
            let Some(cause) = e.extensions.get("causationid") else { continue };
            if let Some(s) = scheduled_of.get(cause) {
                let us = (e.time.unwrap_or(*s) - *s).num_microseconds().unwrap_or(0).max(1) as u64;
                h.record(us)?;
                seen += 1;
            }
        }
    }
    if seen < total {
        bail!("only {seen} of {total} paced events produced results within 60 s");
    }
    Ok((h, total))
}

pub(crate) fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading worker CPU time")?;
    // Fields after the command name (which may contain spaces) start after ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Waits until the idle worker's resident memory has stopped falling for
/// two seconds (at most 20 s): the worker returns what the drain freed once
/// it has been idle for half a second, the allocator in steps after that,
/// and the paced run is meant to start from a settled worker.
async fn settle(pid: u32) {
    let rss = || rss_parts_kib(pid).map(|(a, f)| a + f).unwrap_or(0);
    let (mut low, mut quiet) = (rss(), 0);
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = rss();
        if now + 256 < low {
            (low, quiet) = (now, 0);
        } else {
            quiet += 1;
            if quiet >= 8 {
                return;
            }
        }
    }
}

/// The resident set now, split into anonymous memory (heap, stacks) and
/// file-backed pages (mapped code and libraries), KiB.
fn rss_parts_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("RssAnon:")?, field("RssFile:")?))
}

/// Realistic model rows: generated claims joined with the customers CSV.
pub(crate) fn claim_rows(csv_path: &Path, n: usize) -> anyhow::Result<Vec<f32>> {
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

pub(crate) fn time_inference(model: &Model, rows: &[f32], batch: usize) -> anyhow::Result<(f64, f64)> {
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

/// onnxruntime's µs/row on the same rows, through a short Python script.
fn ort_baseline(python: &Path, dir: &Path, model: &Path, rows: &[f32], batch: usize) -> anyhow::Result<f64> {
    let script = std::env::current_dir()?.join("scripts/bench_ort.py");
    if !python.exists() || !script.exists() {
        bail!("needs {} and {}", python.display(), script.display());
    }
    let rows_path = dir.join("rows.f32");
    let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&rows_path, bytes)?;
    let mut cmd = on_core_0(python);
    let out = cmd
        .arg(&script)
        .arg(model)
        .arg(&rows_path)
        .arg("12")
        .arg(batch.to_string())
        .output()
        .context("running the onnxruntime baseline")?;
    if !out.status.success() {
        bail!("baseline failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["us_per_row"].as_f64().context("baseline printed no us_per_row")
}
