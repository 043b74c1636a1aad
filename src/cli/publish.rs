//! `publish`: validated JSON events, or raw bytes with `--raw`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use modelbus::bus::Bus;
use modelbus::event::{Event, Headers, Record};
use modelbus::schema::SchemaRegistry;

use super::load_config;

#[derive(clap::Args)]
pub struct PublishArgs {
    #[arg(long, short, default_value = "modelbus.toml")]
    config: PathBuf,
    /// Topic to publish to (default: the first worker's input topic).
    #[arg(long, short)]
    topic: Option<String>,
    /// Read from this file instead of stdin.
    #[arg(long, short)]
    file: Option<PathBuf>,
    /// Publish the input bytes unchanged, with no validation: the whole input as one
    /// record, or one record per line with --lines. For tests and replaying captured traffic.
    #[arg(long)]
    raw: bool,
    /// With --raw: one record per input line.
    #[arg(long, requires = "raw")]
    lines: bool,
    /// With --raw: the record key.
    #[arg(long, requires = "raw")]
    key: Option<String>,
    /// With --raw: a header `name=value` (repeatable).
    #[arg(long = "header", requires = "raw")]
    headers: Vec<String>,
    /// Print `acked N` to stderr after each durable chunk (for scripts and crash tests).
    #[arg(long)]
    verbose: bool,
    /// Records per durable chunk (one transaction each).
    #[arg(long, default_value_t = 1000)]
    chunk: usize,
}

pub async fn publish(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.config)?;
    let topic = match args.topic.clone().or_else(|| config.workers.first().map(|w| w.topic.clone())) {
        Some(t) => t,
        None => bail!("no --topic given and the config has no worker to take it from"),
    };
    let mut input = Vec::new();
    match &args.file {
        Some(f) => input = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?,
        None => {
            std::io::stdin().read_to_end(&mut input).context("cannot read stdin")?;
        }
    }
    let records = if args.raw { raw_records(&args, input)? } else { json_records(&config.schemas, &input)? };
    let bus = Bus::open(&config)?;
    let n = records.len();
    let mut acked = 0;
    for chunk in records.chunks(args.chunk.max(1)) {
        bus.publish(&topic, chunk.to_vec()).await?;
        acked += chunk.len();
        if args.verbose {
            eprintln!("acked {acked}");
        }
    }
    eprintln!("published {n} record(s) to `{topic}`");
    Ok(ExitCode::SUCCESS)
}

fn raw_records(args: &PublishArgs, input: Vec<u8>) -> anyhow::Result<Vec<Record>> {
    let mut headers = Headers::new();
    for h in &args.headers {
        let (k, v) = h.split_once('=').with_context(|| format!("--header `{h}`: expected name=value"))?;
        headers.push(k, v.as_bytes());
    }
    let values: Vec<Vec<u8>> = if args.lines {
        input.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect()
    } else {
        vec![input]
    };
    Ok(values
        .into_iter()
        .map(|value| Record { key: args.key.as_ref().map(|k| k.as_bytes().to_vec()), headers: headers.clone(), value })
        .collect())
}

/// Parses one JSON document or JSON lines; validates every event before
/// anything is published, and reports every invalid one.
fn json_records(schemas: &std::path::Path, input: &[u8]) -> anyhow::Result<Vec<Record>> {
    let text = std::str::from_utf8(input).context("input is not UTF-8")?;
    let registry = SchemaRegistry::load(schemas)?;
    let docs: Vec<(usize, serde_json::Result<serde_json::Value>)> = match serde_json::from_str(text) {
        Ok(v) => vec![(1, Ok(v))],
        Err(_) => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, serde_json::from_str(l)))
            .collect(),
    };
    let mut records = Vec::new();
    let mut problems = Vec::new();
    for (line, doc) in docs {
        let event = doc
            .map_err(|e| e.to_string())
            .and_then(|v| Event::from_structured_for_publish(v).map_err(|e| e.to_string()))
            .and_then(|e| {
                registry.validate(&e.ty, e.dataschema.as_deref(), &e.data).map_err(|e| e.to_string())?;
                Ok(e)
            });
        match event {
            Ok(e) => records.push(e.to_record()),
            Err(reason) => problems.push(format!("line {line}: {reason}")),
        }
    }
    if !problems.is_empty() {
        bail!("refused {} invalid event(s), nothing published:\n  {}", problems.len(), problems.join("\n  "));
    }
    Ok(records)
}
