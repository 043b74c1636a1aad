//! `modelbus demo`: the claims example end to end, with no set-up. It writes
//! the built-in example to a fresh directory, loads the customers feature
//! store, starts the worker in-process on the embedded bus, publishes a few
//! thousand synthetic claims (a few deliberately bad) at a steady rate, and
//! prints what happened: results, dead letters by reason, throughput,
//! end-to-end latency, and the commands to look further.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use modelbus::app::App;
use modelbus::dead_letter::DeadLetter;
use modelbus::example::{self, Generator, Kind};
use modelbus::telemetry::WorkerStats;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// How many events to publish.
    #[arg(long, default_value_t = 5000)]
    pub events: usize,
    /// Offered rate, events per second.
    #[arg(long, default_value_t = 5000)]
    pub rate: u64,
    /// Fraction of events that are deliberately bad.
    #[arg(long, default_value_t = 0.01)]
    pub bad_fraction: f64,
    /// Directory to run in (default: a new temporary directory, kept afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Run on this Kafka cluster (`host:port`) instead of the embedded bus,
    /// with topic names unique to this run.
    #[arg(long, value_name = "BROKERS")]
    pub kafka: Option<String>,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => tempfile::Builder::new().prefix("modelbus-demo-").tempdir()?.keep(),
    };
    let example::Deployment { config_path, config, kafka, customers, .. } =
        example::set_up(&dir, args.kafka.as_deref(), |t| t)?;
    let (input, results_topic) = match (&args.kafka, kafka) {
        (Some(brokers), Some(names)) => {
            println!("modelbus demo — claims example on Kafka at {brokers}, config in {}", dir.display());
            (names.input, names.results)
        }
        _ => {
            println!("modelbus demo — claims example in {}", dir.display());
            (example::INPUT_TOPIC.to_string(), example::RESULT_TOPIC.to_string())
        }
    };
    println!("  loaded {customers} customers into feature store `{}`", example::STORE);

    let t_load = Instant::now();
    let app = App::load(config).await?;
    let model = app.models.values().next().context("no model")?;
    println!(
        "  model `{}` version {} loaded and golden-checked in {:.0} ms (sha256 {}…)",
        model.name,
        model.version,
        t_load.elapsed().as_secs_f64() * 1e3,
        &model.sha256[..12]
    );
    let workers = app.workers().await?;
    let stats = workers[0].stats.clone();
    let token = CancellationToken::new();
    let running = tokio::spawn(App::run(workers, token.clone()));
    // A Kafka group takes a few seconds to form; latency counts from after it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stats.joined.load(Ordering::Relaxed) && Instant::now() < deadline && !running.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let bar = ProgressBar::new(args.events as u64);
    bar.set_style(
        ProgressStyle::with_template("  {bar:40.cyan/blue} {pos}/{len} handled  {per_sec}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut generator = Generator::new(42, args.bad_fraction);
    let mut bad = std::collections::BTreeMap::<&str, usize>::new();
    let start = Instant::now();
    let tick = Duration::from_millis(10);
    let per_tick = ((args.rate as f64) * tick.as_secs_f64()).max(1.0) as usize;
    let mut sent = 0;
    while sent < args.events {
        let k = per_tick.min(args.events - sent);
        let scheduled = start + tick * (sent / per_tick) as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        let now = chrono::Utc::now();
        let mut batch = Vec::with_capacity(k);
        for _ in 0..k {
            let (kind, rec) = generator.next(now);
            if kind != Kind::Good {
                *bad.entry(kind_name(kind)).or_default() += 1;
            }
            batch.push(rec);
        }
        app.bus.publish(&input, batch).await?;
        sent += k;
        bar.set_position(handled(&stats));
    }
    let publish_secs = start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(60);
    while handled(&stats) < args.events as u64 && Instant::now() < deadline {
        bar.set_position(handled(&stats));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    bar.set_position(handled(&stats));
    bar.finish();
    token.cancel();
    running.await??;

    let results = stats.results.load(Ordering::Relaxed);
    let dead: u64 = stats.dead_letter_total();
    let h = stats.latency_us.lock().unwrap_or_else(|e| e.into_inner()).clone();
    println!();
    println!(
        "  published      {} events in {:.2} s ({} deliberately bad)",
        args.events,
        publish_secs,
        bad.values().sum::<usize>()
    );
    println!("  results        {results} RiskScored events on topic `{results_topic}`");
    println!("  dead letters   {dead} on topic `{input}.dlq`");
    for ((stage, code), count) in stats.dead_letters.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        println!("                 {count:>5}  {stage:<9} {code}");
    }
    println!("  throughput     {:.0} events/s (offered {} events/s)", (results + dead) as f64 / elapsed, args.rate);
    println!(
        "  latency        p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (event time → result accepted)",
        h.value_at_quantile(0.50) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
        h.max() as f64 / 1e3
    );
    if results + dead < args.events as u64 {
        println!(
            "  WARNING        {} events were not handled within the deadline",
            args.events as u64 - results - dead
        );
    }
    let cfg = shell_quote(&config_path.display().to_string());
    // The binary as it was run (`cargo run` leaves it in target/release,
    // which is not on the PATH): the commands below run as printed.
    let bin =
        std::env::current_exe().map(|p| shell_quote(&p.display().to_string())).unwrap_or_else(|_| "modelbus".into());
    let first_dlid = first_dead_letter(&app, &format!("{input}.dlq")).await.unwrap_or_else(|| "<dlid>".into());
    println!();
    println!("  the data (bus, feature store, config) is kept in {}", dir.display());
    println!("  look further:");
    println!("    {bin} tail {results_topic} --config {cfg} --from-beginning --count 5");
    println!("    {bin} dlq list --config {cfg}");
    println!("    {bin} dlq show {first_dlid} --config {cfg}");
    println!("    {bin} run --config {cfg}     # then publish more with `{bin} publish --config {cfg}`");
    println!("  remove it all with: rm -rf {}", shell_quote(&dir.display().to_string()));
    if results + dead < args.events as u64 {
        anyhow::bail!("demo incomplete");
    }
    Ok(())
}

/// The id of the first dead letter of `topic`, for a `dlq show` that runs as printed.
async fn first_dead_letter(app: &App, topic: &str) -> Option<String> {
    let mut scan = app.bus.scan(topic).await.ok()?;
    let chunk = scan.next_chunk(1).await.ok()?;
    let d = chunk.into_iter().next()?;
    DeadLetter::from_record(d.record, d.tp.partition, d.offset).map(|dl| dl.id().to_string())
}

/// `s` quoted for a POSIX shell when it needs it.
fn shell_quote(s: &str) -> String {
    if s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn handled(stats: &Arc<WorkerStats>) -> u64 {
    stats.results.load(Ordering::Relaxed) + stats.dead_letter_total()
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Good => "good",
        Kind::Garbage => "garbage",
        Kind::MissingAttribute => "missing_attribute",
        Kind::SchemaInvalid => "schema_invalid",
        Kind::UnknownCustomer => "unknown_customer",
    }
}
