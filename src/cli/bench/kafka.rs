//! `modelbus bench --kafka BROKERS`: modelbus on Kafka against the same flow
//! written the way a competent Python team writes it today
//! (`scripts/kafka_baseline.py`: a batched confluent-kafka consumer,
//! onnxruntime, commits after produce), in one run, on the same broker,
//! model and events. A third run, [`super::floor`], does only the Kafka
//! client's part of the same work (the same records consumed, records
//! shaped like the results produced and committed), which a worker on
//! librdkafka writing these records cannot avoid.
//!
//! Both workers drain the same backlog (each in its own group, pinned to
//! core 0 while this process watches from core 1). Events/s and CPU per
//! event come from the steady 10%..90% stretch of modelbus's drain (from
//! `/proc/<pid>/stat`), and from the baseline's own summary, which times
//! from its first event to its last commit. Completion is counted from the
//! result topic, never from the broker's high watermark. `--rounds N`
//! runs the three in turn N times over the same backlog and reports
//! medians: on a shared machine one run's figures can be a quarter off.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;

use modelbus::bus::{Bus, Follower, ReadFrom};
use modelbus::config::Config;
use modelbus::example::{self, Generator};
use modelbus::model::Model;

use super::{
    claim_rows, cpu_secs, kafka_config, on_core_0, pin_to_core, spawn_worker, stop, time_inference, BenchArgs,
};

/// What both Kafka benchmarks start from: the claims example in `dir` on the
/// cluster at `brokers` (its config text passed through `edit` first), its
/// features loaded, the Python baseline found, and this process on core 1.
pub(super) struct Prepared {
    pub config_path: PathBuf,
    pub names: example::KafkaNames,
    pub config: Config,
    pub customers_csv: PathBuf,
    pub script: PathBuf,
}

pub(super) fn prepare(
    args: &BenchArgs,
    dir: &Path,
    brokers: &str,
    edit: impl FnOnce(String) -> String,
) -> anyhow::Result<Prepared> {
    let example::Deployment { config_path, config, kafka, customers_csv, .. } =
        example::set_up(dir, Some(brokers), edit)?;
    let names = kafka.context("the example was not pointed at Kafka")?;
    let script = std::env::current_dir()?.join("scripts/kafka_baseline.py");
    if !args.python.exists() || !script.exists() {
        bail!("the baseline needs {} and {}", args.python.display(), script.display());
    }
    pin_to_core(1);
    Ok(Prepared { config_path, names, config, customers_csv, script })
}

pub(super) async fn run(args: &BenchArgs, brokers: &str) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new().prefix("modelbus-bench-kafka-").tempdir()?;
    let dir = &args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let Prepared { config_path, names, config, customers_csv, script } = prepare(args, dir, brokers, |t| t)?;
    let n = args.events;
    println!(
        "modelbus bench --kafka {brokers} — claims model, batch {}, {n} events, {} round(s)",
        args.batch, args.rounds
    );

    let model = Model::load("risk", &config.models["risk"])?;
    let rows = claim_rows(&customers_csv, 20_480)?;
    let (_, infer_us) = time_inference(&model, &rows, args.batch)?;

    let bus = Bus::open(&config)?;
    let mut g = Generator::new(11, 0.0);
    let t = Instant::now();
    for start in (0..n).step_by(2000) {
        let k = 2000.min(n - start);
        let now = Utc::now();
        bus.publish(&names.input, (0..k).map(|_| g.claim(now).to_record()).collect()).await?;
    }
    println!("backlog: {n} events produced in {:.2} s", t.elapsed().as_secs_f64());

    let setup = Setup {
        args,
        bus: &bus,
        config: &config,
        config_path: &config_path,
        names: &names,
        customers_csv: &customers_csv,
        script: &script,
        dir,
    };
    let mut rounds = Vec::new();
    for r in 1..=args.rounds {
        let round = setup.round(r).await?;
        if args.rounds > 1 {
            println!(
                "round {r}: modelbus {:.2} µs/event ({:.0}/s), client alone {:.2} ({:.0}/s), Python {:.2} ({:.0}/s): CPU ratio {:.3}",
                round.ours.1, round.ours.0, round.floor.1, round.floor.0, round.py.1, round.py.0, round.ours.1 / round.py.1
            );
        }
        rounds.push(round);
    }

    // Medians of each figure; ratios are the medians of each round's own
    // ratio, since a round's three runs share the machine's mood.
    let m = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let (ours_eps, ours_cpu) = (m(&|r| r.ours.0), m(&|r| r.ours.1));
    let (floor_eps, floor_cpu) = (m(&|r| r.floor.0), m(&|r| r.floor.1));
    let (py_eps, py_cpu, py_excl) = (m(&|r| r.py.0), m(&|r| r.py.1), m(&|r| r.py.1 - r.py.2));
    if args.rounds > 1 {
        println!("\nmedians of {} rounds:", args.rounds);
    }
    println!("\n{:<44} {:>12} {:>14} {:>16}", "", "events/s", "CPU µs/event", "excl. inference");
    println!(
        "{:<44} {:>12.0} {:>14.2} {:>16.2}",
        "modelbus on Kafka (one core)",
        ours_eps,
        ours_cpu,
        ours_cpu - infer_us
    );
    println!("{:<44} {:>12.0} {:>14.2} {:>16}", "Kafka client alone (no processing)", floor_eps, floor_cpu, "-");
    println!("{:<44} {:>12.0} {:>14.2} {:>16.2}", "Python: confluent-kafka + onnxruntime", py_eps, py_cpu, py_excl);
    println!(
        "\nratios modelbus/Python: events/s {:.2}x, CPU per event {:.3} (target <= 0.1), excl. inference {:.3}",
        m(&|r| r.ours.0 / r.py.0),
        m(&|r| r.ours.1 / r.py.1),
        m(&|r| (r.ours.1 - infer_us) / (r.py.1 - r.py.2))
    );
    println!(
        "modelbus CPU per event on top of inference: {:.2} µs (target <= 6 µs; inference {infer_us:.2} µs/row)",
        ours_cpu - infer_us
    );
    println!(
        "Kafka client alone: {floor_cpu:.2} µs/event = {:.3} of Python's CPU per event; modelbus's own work on top of it: {:.2} µs/event",
        m(&|r| r.floor.1 / r.py.1),
        m(&|r| r.ours.1 - r.floor.1)
    );
    Ok(())
}

/// What every round shares: the backlog on `names.input`, the config
/// (rounds differ only in group and result topic names).
struct Setup<'a> {
    args: &'a BenchArgs,
    bus: &'a Bus,
    config: &'a Config,
    config_path: &'a Path,
    names: &'a example::KafkaNames,
    customers_csv: &'a Path,
    script: &'a Path,
    dir: &'a Path,
}

/// One round's (events/s, CPU µs/event) of each worker; Python's also has
/// its inference CPU µs/event.
struct Round {
    ours: (f64, f64),
    floor: (f64, f64),
    py: (f64, f64, f64),
}

impl Setup<'_> {
    /// The three workers in turn, each in a group and result topic of this
    /// round only, so each drains the whole backlog from the start.
    async fn round(&self, r: u32) -> anyhow::Result<Round> {
        let (args, n) = (self.args, self.args.events);
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let (group, results) = (format!("{}-{tag}", self.names.group), format!("{}-{tag}", self.names.results));
        // The same config with this round's names, beside the first so its
        // relative paths still hold.
        let config_path = self.dir.join(format!("modelbus-round-{r}.toml"));
        let text = std::fs::read_to_string(self.config_path)?
            .replace(&format!("\"{}\"", self.names.group), &format!("\"{group}\""))
            .replace(&format!("\"{}\"", self.names.results), &format!("\"{results}\""));
        std::fs::write(&config_path, text)?;

        // modelbus
        let reader = watch(self.bus, &results).await?;
        let mut worker = spawn_worker(&config_path)?;
        let ours = drain(reader, n, worker.id()).await;
        stop(&mut worker);
        let ours = ours?;

        // the Kafka client alone: the same consume and produce of result-shaped
        // records, with no processing (see `floor`)
        let floor_topic = format!("bench-floor-{tag}");
        let reader = watch(self.bus, &floor_topic).await?;
        let mut floor_worker = on_core_0(std::env::current_exe()?)
            .args(["bench-floor", "--config"])
            .arg(&config_path)
            .args([
                "--group",
                &format!("bench-floor-{tag}"),
                "--topic",
                &self.names.input,
                "--template-topic",
                &results,
            ])
            .args(["--result-topic", &floor_topic, "--count", &n.to_string(), "--batch", &args.batch.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .context("starting the floor process")?;
        let floor = drain(reader, n, floor_worker.id()).await;
        stop(&mut floor_worker);
        let floor = floor?;

        // the Python baseline, same events, its own group and result topic
        let config = self.config;
        let out = on_core_0(&args.python)
            .arg(self.script)
            .args(["--brokers", &kafka_config(config)?.brokers, "--topic", &self.names.input])
            .args(["--result-topic", &format!("bench-py-scored-{tag}"), "--group", &format!("bench-py-{tag}")])
            .args(["--count", &n.to_string(), "--batch", &args.batch.to_string()])
            .arg("--model")
            .arg(&config.models["risk"].path)
            .arg("--features")
            .arg(self.customers_csv)
            .arg("--config")
            .arg(&config_path)
            .stderr(Stdio::inherit())
            .output()
            .context("running scripts/kafka_baseline.py")?;
        if !out.status.success() {
            bail!("the Python baseline failed: {}", String::from_utf8_lossy(&out.stdout));
        }
        let py: serde_json::Value = serde_json::from_slice(
            out.stdout.split(|b| *b == b'\n').rfind(|l| !l.is_empty()).context("the baseline printed nothing")?,
        )?;
        let f = |k: &str| py[k].as_f64().with_context(|| format!("baseline summary lacks {k}"));
        Ok(Round { ours, floor, py: (f("events_per_s")?, f("cpu_us_per_event")?, f("inference_cpu_us_per_event")?) })
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A reader of `topic` that is live before the worker under test starts.
/// Were it to attach afterwards, a fast worker could finish first and the
/// reader would see the whole result backlog in one batch, with no steady
/// stretch to time (CI once got 0 events over 0 s, printed as NaN).
pub(super) async fn watch(bus: &Bus, topic: &str) -> anyhow::Result<Follower> {
    bus.ensure_topic(topic, true).await.with_context(|| format!("creating {topic}"))?;
    let mut f = bus.follow(topic, ReadFrom::Beginning).await?;
    // The first fetch resolves the start offsets and connects to the leaders.
    if !f.next_batch(1, Duration::from_millis(500)).await?.is_empty() {
        bail!("{topic} already holds records; the bench needs a fresh topic");
    }
    Ok(f)
}

/// Counts result records until `n`; rate and CPU/event over 10%..90%.
async fn drain(mut f: Follower, n: usize, pid: u32) -> anyhow::Result<(f64, f64)> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let (lo, hi) = (n / 10, n * 9 / 10);
    let mut done = 0;
    let mut start = None;
    loop {
        // Small reads keep each sample close to the count it stands for.
        done += f.next_batch(1000, Duration::from_millis(20)).await?.len();
        let now = Instant::now();
        if start.is_none() && done >= lo {
            start = Some((now, done, cpu_secs(pid)?));
        }
        if done >= hi {
            let (t0, d0, c0) = start.context("no start sample")?;
            if done - d0 < n / 2 {
                bail!("only {} of {n} results arrived between the samples; nothing steady to time", done - d0);
            }
            let events = (done - d0) as f64;
            let cpu = cpu_secs(pid)? - c0;
            // /proc counts CPU in 10 ms ticks.
            if cpu < 0.5 {
                eprintln!("note: only {cpu:.2} s of CPU measured over {events} events; CPU figures are coarse (use --events 100000 or more)");
            }
            return Ok((events / now.duration_since(t0).as_secs_f64(), cpu * 1e6 / events));
        }
        if now > deadline {
            bail!("only {done} of {n} results arrived in 600 s");
        }
    }
}
