//! `modelbus bench --kafka BROKERS --paced`: latency at a fixed offered
//! rate, modelbus against the Python baseline (`scripts/kafka_baseline.py`)
//! in one run, on the same broker and model, with the same consumer
//! `fetch.wait.max.ms` (`--fetch-wait-ms`), which is the setting that
//! trades broker load for latency on Kafka.
//!
//! Each worker gets a fresh input topic and group. A warm-up event is sent
//! first and its result awaited, so group joins and model loads are not
//! counted. Then `--rate` events/s are published for `--duration`, each
//! publish at its scheduled time, and every result is matched to its
//! cause by `causationid`: latency is from the scheduled send to the
//! moment this process reads the result, so it includes the broker's
//! round trips both ways, as a downstream consumer would see it.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;

use modelbus::bus::{Bus, Follower};
use modelbus::config::Config;
use modelbus::event::Record;
use modelbus::example::Generator;

use super::kafka::{prepare, watch, Prepared};
use super::{kafka_config, on_core_0, spawn_worker, stop, BenchArgs};

pub(super) async fn run(args: &BenchArgs, brokers: &str) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new().prefix("modelbus-bench-kafka-paced-").tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let fetch_wait = format!("\"fetch.wait.max.ms\" = \"{}\"", args.fetch_wait_ms);
    let Prepared { config_path, names, config, customers_csv, script } =
        prepare(args, &dir, brokers, |t| t.replace("\"fetch.wait.max.ms\" = \"10\"", &fetch_wait))?;
    let total = (args.rate as f64 * args.duration.as_secs_f64()) as usize;
    println!(
        "modelbus bench --kafka {brokers} --paced — claims model, {} events/s for {:?} ({total} events), fetch.wait.max.ms = {}",
        args.rate, args.duration, args.fetch_wait_ms
    );
    let bus = Bus::open(&config)?;

    // modelbus: the config's own input topic and group.
    let reader = watch(&bus, &names.results).await?;
    let mut worker = spawn_worker(&config_path)?;
    let ours = offer(&bus, &names.input, reader, args, total).await;
    stop(&mut worker);
    let ours = ours?;

    // Python: a topic and group of its own.
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let (py_input, py_results) = (format!("bench-py-in-{tag}"), format!("bench-py-scored-{tag}"));
    bus.ensure_topic(&py_input, true).await?;
    let reader = watch(&bus, &py_results).await?;
    let mut py = python(args, &script, &config, &config_path, &customers_csv, &py_input, &py_results, total + 1, tag)?;
    let theirs = offer(&bus, &py_input, reader, args, total).await;
    stop(&mut py);
    let theirs = theirs?;

    println!("\n{:<40} {:>10} {:>10} {:>10} {:>9}", "send → result", "p50 ms", "p99 ms", "max ms", "results");
    for (name, l) in [("modelbus on Kafka", &ours), ("Python: confluent-kafka + onnxruntime", &theirs)] {
        println!("{name:<40} {:>10.1} {:>10.1} {:>10.1} {:>9}", l.p50, l.p99, l.max, l.n);
    }
    println!("\nratios modelbus/Python: p50 {:.2}, p99 {:.2}", ours.p50 / theirs.p50, ours.p99 / theirs.p99);
    Ok(())
}

/// Send-to-result latency of one worker, milliseconds.
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
    n: usize,
}

/// The Python baseline on `input`, writing `results`, stopping after `count`.
#[allow(clippy::too_many_arguments)]
fn python(
    args: &BenchArgs,
    script: &Path,
    config: &Config,
    config_path: &Path,
    customers_csv: &Path,
    input: &str,
    results: &str,
    count: usize,
    tag: &str,
) -> anyhow::Result<Child> {
    on_core_0(&args.python)
        .arg(script)
        .args(["--brokers", &kafka_config(config)?.brokers, "--topic", input, "--result-topic", results])
        .args([
            "--group",
            &format!("bench-py-{tag}"),
            "--count",
            &count.to_string(),
            "--batch",
            &args.batch.to_string(),
        ])
        .args(["--fetch-wait-ms", &args.fetch_wait_ms.to_string()])
        .arg("--model")
        .arg(&config.models["risk"].path)
        .arg("--features")
        .arg(customers_csv)
        .arg("--config")
        .arg(config_path)
        .stdout(Stdio::null())
        .spawn()
        .context("starting scripts/kafka_baseline.py")
}

/// Warms the worker up with one event, then offers `total` events at the
/// configured rate while reading results; returns their latencies.
async fn offer(
    bus: &Bus,
    input: &str,
    mut results: Follower,
    args: &BenchArgs,
    total: usize,
) -> anyhow::Result<Latency> {
    let mut g = Generator::new(17, 0.0);
    let warm = g.claim(Utc::now());
    bus.publish(input, vec![warm.to_record()]).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = results.next_batch(100, Duration::from_millis(50)).await?;
        if got.iter().any(|d| d.record.header_str("ce_causationid") == Some(warm.id.as_str())) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the worker did not answer its warm-up event within 120 s");
        }
    }

    let sent: std::sync::Arc<std::sync::Mutex<HashMap<String, Instant>>> = Default::default();
    let tick = Duration::from_millis(10);
    let per_tick = ((args.rate as f64) * tick.as_secs_f64()).max(1.0) as usize;
    let publisher = {
        let (sent, input) = (sent.clone(), input.to_string());
        let bus_records: Vec<Vec<Record>> = (0..total.div_ceil(per_tick))
            .map(|t| {
                let k = per_tick.min(total - t * per_tick);
                (0..k).map(|_| g.claim(Utc::now())).map(|e| e.to_record()).collect()
            })
            .collect();
        let start = Instant::now();
        async move {
            for (t, batch) in bus_records.into_iter().enumerate() {
                let scheduled = start + tick * t as u32;
                tokio::time::sleep_until(scheduled.into()).await;
                {
                    let mut s = sent.lock().unwrap_or_else(|e| e.into_inner());
                    for r in &batch {
                        if let Some(id) = r.header_str("ce_id") {
                            s.insert(id.to_string(), scheduled);
                        }
                    }
                }
                bus.publish(&input, batch).await?;
            }
            anyhow::Ok(())
        }
    };
    let reading = async {
        let mut lat = Vec::with_capacity(total);
        let deadline = Instant::now() + args.duration + Duration::from_secs(120);
        while lat.len() < total && Instant::now() < deadline {
            for d in results.next_batch(1000, Duration::from_millis(20)).await? {
                let now = Instant::now();
                let Some(cause) = d.record.header_str("ce_causationid") else { continue };
                if let Some(t) = sent.lock().unwrap_or_else(|e| e.into_inner()).remove(cause) {
                    lat.push(now.duration_since(t).as_secs_f64() * 1e3);
                }
            }
        }
        anyhow::Ok(lat)
    };
    let (published, lat) = tokio::join!(publisher, reading);
    published?;
    let mut lat = lat?;
    if lat.len() < total {
        bail!("only {} of {total} results arrived", lat.len());
    }
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    Ok(Latency { p50: q(0.5), p99: q(0.99), max: lat[lat.len() - 1], n: lat.len() })
}
