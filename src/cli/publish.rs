//! `publish`: validated JSON events, or raw bytes with `--raw`, sent as the
//! input arrives, so that `producer | modelbus publish` streams. Records go
//! to the bus a chunk at a time: when the chunk is full, or when its first
//! record has waited [`LINGER`]. Each published record's id is printed on
//! stdout once the bus has it; an invalid line is named on stderr and the
//! others go on.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use modelbus::bus::Bus;
use modelbus::event::{Event, Headers, Record};
use modelbus::schema::SchemaRegistry;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::documents::{Document, Documents};
use super::escape::{escape_control, escape_control_json};
use super::load_config;
use super::out::Out;

/// The longest a record waits for others to fill its chunk: a producer's
/// event reaches the bus within this, however slowly events come.
const LINGER: Duration = Duration::from_millis(100);

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
    /// Print a JSON object per published record (`id`, `source`, `type`,
    /// `partition`, `offset`) instead of its id.
    #[arg(long)]
    json: bool,
}

pub async fn publish(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.config)?;
    let topic = match args.topic.clone().or_else(|| config.workers.first().map(|w| w.topic.clone())) {
        Some(t) => t,
        None => bail!("no --topic given and the config has no worker to take it from"),
    };
    let mut input = open_input(args.file.as_deref())?;
    let mut parser = match args.raw {
        true => Parser::Raw(RawShape {
            key: args.key.as_ref().map(|k| k.as_bytes().to_vec()),
            headers: raw_headers(&args.headers)?,
        }),
        false => Parser::Json { registry: SchemaRegistry::load(&config.schemas)?, documents: Documents::default() },
    };
    let mut sender = Sender::new(Bus::open(&config)?, topic, &args);
    match &parser {
        // The whole input is one record: nothing to stream.
        Parser::Raw(shape) if !args.lines => {
            let mut value = Vec::new();
            input.read_to_end(&mut value).context("cannot read the input")?;
            sender.take(&mut vec![(1, Ok(shape.record(value)))]).await?;
        }
        _ => stream(input, &mut parser, &mut sender).await?,
    }
    sender.send().await?;
    sender.finish()
}

fn open_input(file: Option<&Path>) -> anyhow::Result<Box<dyn BufRead + Send>> {
    Ok(match file {
        Some(f) => {
            let file = std::fs::File::open(f).with_context(|| format!("cannot read {}", f.display()))?;
            Box::new(std::io::BufReader::with_capacity(64 << 10, file))
        }
        None => Box::new(std::io::BufReader::with_capacity(64 << 10, std::io::stdin())),
    })
}

fn raw_headers(specs: &[String]) -> anyhow::Result<Headers> {
    let mut headers = Headers::new();
    for h in specs {
        let (k, v) = h.split_once('=').with_context(|| format!("--header `{h}`: expected name=value"))?;
        headers.push(k, v.as_bytes());
    }
    Ok(headers)
}

/// A record made of an input line, or why the line is refused, with the
/// number of the line it starts on.
type Parsed = (usize, Result<Record, String>);

/// What turns input into records.
enum Parser {
    /// `--raw`: the bytes as they are.
    Raw(RawShape),
    /// CloudEvents in structured-mode JSON, each validated against its schema.
    Json { registry: SchemaRegistry, documents: Documents },
}

/// The key and headers `--raw` gives every record.
struct RawShape {
    key: Option<Vec<u8>>,
    headers: Headers,
}

impl RawShape {
    fn record(&self, value: Vec<u8>) -> Record {
        Record { key: self.key.clone(), headers: self.headers.clone(), value }
    }
}

impl Parser {
    /// One input line, without its newline; what it completes goes to `out`.
    fn line(&mut self, number: usize, line: Vec<u8>, out: &mut Vec<Parsed>) {
        match self {
            Parser::Raw(_) if line.is_empty() => {}
            Parser::Raw(shape) => out.push((number, Ok(shape.record(line)))),
            Parser::Json { registry, documents } => {
                let mut docs = Vec::new();
                match String::from_utf8(line) {
                    Ok(text) => documents.push(number, text, &mut docs),
                    Err(_) => docs.push((number, Err("not UTF-8".into()))),
                }
                out.extend(docs.into_iter().map(|doc| event_record(registry, doc)));
            }
        }
    }

    /// The input ended: a document still open is refused.
    fn finish(&mut self, out: &mut Vec<Parsed>) {
        if let Parser::Json { registry, documents } = self {
            let mut docs = Vec::new();
            documents.finish(&mut docs);
            out.extend(docs.into_iter().map(|doc| event_record(registry, doc)));
        }
    }
}

/// A document as a binary-mode record, if it is an event its schema accepts.
fn event_record(registry: &SchemaRegistry, (line, doc): Document) -> Parsed {
    let record = doc.and_then(|mut v| {
        drop_tail_headers(&mut v);
        let e = Event::from_structured_for_publish(v).map_err(|e| e.to_string())?;
        registry.validate(&e.ty, e.dataschema.as_deref(), &e.data).map_err(|e| e.to_string())?;
        Ok(e.to_record())
    });
    (line, record)
}

/// `tail` prints each record's headers as an object member `headers`. No
/// CloudEvents attribute holds an object, so it is the record's metadata,
/// not part of the event: dropped, `tail a | publish --topic b` copies
/// events instead of adding a `headers` attribute to each.
fn drop_tail_headers(v: &mut Value) {
    if let Value::Object(m) = v {
        if m.get("headers").is_some_and(Value::is_object) {
            m.remove("headers");
        }
    }
}

/// Reads `input` a line at a time and hands what it makes to `sender` as it
/// comes. Lines are read on a thread of their own: a blocking read of
/// stdin cannot be cancelled, and one left pending would keep the runtime
/// from shutting down after an error.
async fn stream(input: Box<dyn BufRead + Send>, parser: &mut Parser, sender: &mut Sender) -> anyhow::Result<()> {
    let (tx, mut lines) = mpsc::channel(1024);
    std::thread::Builder::new().name("publish-input".into()).spawn(move || read_lines(input, tx))?;
    let (mut number, mut parsed) = (0, Vec::new());
    loop {
        let next = match sender.deadline() {
            Some(at) => match tokio::time::timeout_at(at, lines.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    sender.send().await?;
                    continue;
                }
            },
            None => lines.recv().await,
        };
        let Some(line) = next else { break };
        number += 1;
        parser.line(number, line.context("cannot read the input")?, &mut parsed);
        sender.take(&mut parsed).await?;
    }
    parser.finish(&mut parsed);
    sender.take(&mut parsed).await
}

/// Sends each line of `input`, without its newline, until the input ends
/// (the channel closes) or the receiver is gone.
fn read_lines(mut input: Box<dyn BufRead + Send>, tx: mpsc::Sender<std::io::Result<Vec<u8>>>) {
    loop {
        let mut line = Vec::new();
        let line = match input.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                Ok(line)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
        let failed = line.is_err();
        if tx.blocking_send(line).is_err() || failed {
            return;
        }
    }
}

/// Publishes records a chunk at a time and reports what became of each.
struct Sender {
    bus: Bus,
    topic: String,
    chunk: usize,
    json: bool,
    verbose: bool,
    /// Records not sent yet, with their input line numbers.
    pending: Vec<(usize, Record)>,
    /// When the first of them came.
    since: Option<Instant>,
    out: Out,
    published: usize,
    refused: usize,
}

impl Sender {
    fn new(bus: Bus, topic: String, args: &PublishArgs) -> Sender {
        Sender {
            bus,
            topic,
            chunk: args.chunk.max(1),
            json: args.json,
            verbose: args.verbose,
            pending: Vec::new(),
            since: None,
            out: Out::new(),
            published: 0,
            refused: 0,
        }
    }

    /// When the pending records must go, if there are any.
    fn deadline(&self) -> Option<Instant> {
        self.since.map(|t| t + LINGER)
    }

    /// Queues the records of `parsed` (sending each chunk that fills) and
    /// reports the refused lines.
    async fn take(&mut self, parsed: &mut Vec<Parsed>) -> anyhow::Result<()> {
        for (line, record) in parsed.drain(..) {
            match record {
                Ok(r) => {
                    self.since.get_or_insert_with(Instant::now);
                    self.pending.push((line, r));
                    if self.pending.len() >= self.chunk {
                        self.send().await?;
                    }
                }
                Err(reason) => self.refuse(line, &reason),
            }
        }
        Ok(())
    }

    fn refuse(&mut self, line: usize, reason: &str) {
        eprintln!("line {line}: {}", escape_control(reason));
        self.refused += 1;
    }

    /// Publishes the pending records as one durable chunk, and prints each
    /// one's id, or why the bus refused it.
    async fn send(&mut self) -> anyhow::Result<()> {
        self.since = None;
        if self.pending.is_empty() {
            return Ok(());
        }
        let (lines, records): (Vec<usize>, Vec<Record>) = std::mem::take(&mut self.pending).into_iter().unzip();
        let names: Vec<Names> = records.iter().map(Names::of).collect();
        let results = self.bus.publish_each(&self.topic, records).await?;
        for ((line, names), result) in lines.into_iter().zip(names).zip(results) {
            match result {
                Ok((partition, offset)) => {
                    self.print(names, partition, offset)?;
                    self.published += 1;
                }
                Err(e) => self.refuse(line, &format!("not published: {e}")),
            }
        }
        self.out.flush()?;
        if self.verbose {
            eprintln!("acked {}", self.published);
        }
        Ok(())
    }

    /// A published record's id, or its position when it has none (`--raw`
    /// without a `ce_id` header); with `--json`, an object.
    fn print(&mut self, names: Names, partition: u32, offset: u64) -> std::io::Result<()> {
        if self.json {
            let line = json!({
                "id": names.id, "source": names.source, "type": names.ty, "partition": partition, "offset": offset,
            });
            return writeln!(self.out, "{}", escape_control_json(&line.to_string()));
        }
        match names.id {
            Some(id) => writeln!(self.out, "{}", escape_control(&id)),
            None => writeln!(self.out, "{}/{partition}@{offset}", escape_control(&self.topic)),
        }
    }

    fn finish(mut self) -> anyhow::Result<ExitCode> {
        self.out.flush()?;
        let refused = match self.refused {
            0 => String::new(),
            n => format!("; {n} line(s) refused"),
        };
        eprintln!("published {} record(s) to `{}`{refused}", self.published, self.topic);
        Ok(if self.refused == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    }
}

/// A record's CloudEvents identity, as its headers carry it.
struct Names {
    id: Option<String>,
    source: Option<String>,
    ty: Option<String>,
}

impl Names {
    fn of(r: &Record) -> Names {
        let get = |name: &str| r.header_str(name).map(str::to_owned);
        Names { id: get("ce_id"), source: get("ce_source"), ty: get("ce_type") }
    }
}
