//! `modelbus bench` on the embedded bus: the claims model's numbers, in one run.
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
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use hdrhistogram::Histogram;

use modelbus::bus::{Bus, ReadFrom};
use modelbus::event::Event;
use modelbus::example::{self, Generator};
use modelbus::model::Model;

use super::{claim_rows, cpu_secs, on_core_0, pin_to_core, spawn_worker, stop, time_inference, BenchArgs};

pub(super) async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new().prefix("modelbus-bench-").tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let example::Deployment { config_path, config, customers_csv, .. } = example::set_up(&dir, None, |t| t)?;
    pin_to_core(1);
    println!("modelbus bench — claims model, batch {}, in {}", args.batch, dir.display());

    // 1. inference alone
    let model = Arc::new(Model::load("risk", &config.models["risk"])?);
    let rows = claim_rows(&customers_csv, 20_480)?;
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
