//! The `modelbus` command line. This is the edge: errors become `anyhow`
//! messages and exit codes here and nowhere else.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// A worker allocates per event (records, headers, JSON); under glibc malloc
// that was a third of its CPU. mimalloc's thread-local free lists cut it.
// The `override` build feature of libmimalloc-sys makes it the C `malloc`
// too, so SQLite, librdkafka (a dozen mallocs per produced message, one per
// header) and ONNX Runtime use it: glibc kept an arena per thread (MiBs of
// resident memory) and its locks showed in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps resident memory near what is in use (the 50 MiB budget): commit
/// arena memory on demand, and return freed pages after 100 ms. With
/// transparent huge pages off (the `no_thp` build feature) lazy commit took
/// the worker's peak RSS in `modelbus bench` from 50.3 to 44.5 MiB (96 MiB
/// with neither). An immediate purge (0 ms) saved 3 MiB more but re-faulted
/// and zeroed pages on every batch: a fifth of the worker's CPU in `perf`,
/// 9.1 against 8.5 µs/event. mimalloc's default of 10 ms still left 196
/// page faults per 1,000 events in a backlog replay
/// (`scripts/replay_profile.sh`), about 6% of the worker's CPU with the
/// `madvise` calls; 100 ms leaves 66, and the paced peak RSS did not move.
/// The numbers are mimalloc v3's `mi_option_e`; the environment variables
/// `MIMALLOC_ARENA_EAGER_COMMIT` / `MIMALLOC_PURGE_DELAY` still override.
fn tune_allocator() {
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    for (option, var, value) in
        [(ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT", 0), (PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 100)]
    {
        if std::env::var_os(var).is_none() {
            // SAFETY: setting an option is thread-safe and takes plain integers.
            unsafe { libmimalloc_sys::mi_option_set(option, value) };
        }
    }
}

/// `--version`: which model runtimes and buses this binary has, so a user
/// need not guess which cargo command built it.
#[cfg(feature = "ort")]
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nmodel runtimes: tract (pure Rust), ort (ONNX Runtime, loaded from ORT_DYLIB_PATH when a model asks for it)",
    "\nbuses: embedded, kafka"
);
#[cfg(not(feature = "ort"))]
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nmodel runtimes: tract (pure Rust); ort not built in (the `ort` Cargo feature is off)",
    "\nbuses: embedded, kafka"
);

#[derive(Parser)]
#[command(name = "modelbus", version, long_version = LONG_VERSION, about = "Run machine-learning models on business events.",
    long_about = "Run machine-learning models on business events.\n\n\
    Events arrive on a bus (embedded by default); workers validate them, look up features, \
    run an ONNX model in-process and emit result events. Start with `modelbus demo`.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the workers that the config declares, until SIGTERM or Ctrl-C (then drain and commit).
    Run {
        /// The config file.
        #[arg(long, short, default_value = "modelbus.toml")]
        config: PathBuf,
    },
    /// Check a config and everything it names, and report every problem at once, each with
    /// its config path: keys and values, the schema registry, the model files (present,
    /// pinned, loadable by their runtime, golden set), each worker's inputs and outputs
    /// against its model, and the features of stores already loaded.
    Validate {
        #[arg(long, short, default_value = "modelbus.toml")]
        config: PathBuf,
        /// Skip loading the models (and the checks of workers against them).
        #[arg(long)]
        fast: bool,
        /// Accepted for compatibility: the full check is now the default.
        #[arg(long, hide = true)]
        deep: bool,
    },
    /// Validate events against their schemas and publish them.
    ///
    /// Input is JSON lines (a document may also span lines), from --file or stdin, published
    /// as it arrives: a chunk goes to the bus when full or 100 ms after its first event. Each
    /// event is a CloudEvents structured-mode object (`type`, `source`, `data`, ...); `id`,
    /// `time` and `traceparent` are generated when absent. An invalid event is never
    /// published: its line number and the validator's reasons go to stderr, the other events
    /// are published, and the exit status is 1. Prints each published event's id, one per
    /// line (--json: an object with `id`, `source`, `type`, `partition`, `offset`).
    Publish(cli::publish::PublishArgs),
    /// Print a topic's events as JSON lines.
    Tail(cli::tail::TailArgs),
    /// Inspect dead letters: what failed, where, and why.
    Dlq {
        #[command(subcommand)]
        command: cli::dlq::DlqCommand,
    },
    /// Manage feature stores.
    Features {
        #[command(subcommand)]
        command: FeaturesCommand,
    },
    /// Schema registry tools.
    Schema {
        #[command(subcommand)]
        command: cli::schema::SchemaCommand,
    },
    /// Run the claims example end to end in a temporary directory and print a summary.
    Demo(cli::demo::DemoArgs),
    /// Measure throughput, latency, inference speed and CPU per event with the claims model.
    Bench(cli::bench::BenchArgs),
    /// (For `bench --kafka`.) Consume and produce result-shaped records with no processing.
    #[command(hide = true)]
    BenchFloor(cli::bench::floor::FloorArgs),
}

#[derive(Subcommand)]
enum FeaturesCommand {
    /// Load (replace) a feature store from a CSV file whose first column is the entity key.
    Load {
        /// The store's name, as in `[feature_stores.<name>]`.
        store: String,
        /// The CSV file: header row, entity key first, then one column per feature.
        file: PathBuf,
        #[arg(long, short, default_value = "modelbus.toml")]
        config: PathBuf,
    },
}

/// Output not written through `cli::out` (`demo` and `bench` reports, the
/// one-line answers of `validate` and `features load`) goes through
/// `println!`, which panics when standard output's reader has gone ("failed
/// printing to stdout: Broken pipe"). That panic ends the process quietly
/// and successfully instead, as a closed pipe does for the other commands.
/// std gives no typed error here, only its message.
fn exit_quietly_on_closed_stdout() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload().downcast_ref::<String>().map_or("", String::as_str);
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        report(info);
    }));
}

fn main() -> ExitCode {
    tune_allocator();
    exit_quietly_on_closed_stdout();
    modelbus::sqlite_config::configure();
    // tract warns about every opset newer than it was tested with; the golden
    // check at load is what tells whether a model is computed right.
    let cli = Cli::parse();
    modelbus::telemetry::init_tracing(match &cli.command {
        // The demo and bench print their own summaries; progress bars and
        // log lines would interleave.
        Command::Demo(_) | Command::Bench(_) | Command::BenchFloor(_) => "warn,tract_onnx=error",
        _ => "info,tract_onnx=error",
    });
    let rt = match tokio::runtime::Builder::new_multi_thread()
        // Why so few: see `memory::blocking_threads`. Tasks beyond the limit
        // queue; none of them waits on another blocking task.
        .max_blocking_threads(modelbus::memory::blocking_threads())
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        // `modelbus … | head`: the reader has what it wanted (see `cli::out`).
        Err(e) if cli::out::is_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Run { config } => cli::run::run(&config).await,
        Command::Validate { config, fast, deep: _ } => cli::run::validate(&config, fast).await,
        Command::Publish(args) => cli::publish::publish(args).await,
        Command::Tail(args) => cli::tail::tail(args).await,
        Command::Dlq { command } => cli::dlq::dlq(command).await,
        Command::Features { command: FeaturesCommand::Load { store, file, config } } => {
            cli::run::features_load(&config, &store, &file)
        }
        Command::Schema { command } => cli::schema::schema(command),
        Command::Demo(args) => cli::demo::run(args).await.map(|_| ExitCode::SUCCESS),
        Command::Bench(args) => cli::bench::run(args).await.map(|_| ExitCode::SUCCESS),
        Command::BenchFloor(args) => cli::bench::floor::run(args).await.map(|_| ExitCode::SUCCESS),
    }
}
