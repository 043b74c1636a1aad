//! One batch through the stages: decode → validate → features → infer →
//! emit. Each event ends with a result or a classified failure at the stage
//! where it failed; one bad event never fails its batch-mates.
//!
//! [`run_batch`] calls one function per stage, in order; each takes the
//! events still live and returns those that passed, recording the others'
//! outcomes. Per-event work stays in the stage loops (no extra pass, copy or
//! allocation per event), the batch-wide work (dedup, the feature lookup,
//! inference, the sinks) once per stage.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;

use super::outcome::{Outcome, StageError};
use super::plan::{Column, Plan};
use crate::dead_letter::Stage;
use crate::error::ErrorClass;
use crate::event::{result_record, Event, Record};
use crate::features::{Cell, FeatureStore, Row};
use crate::model::TensorInput;
use crate::telemetry::WorkerStats;

struct Live {
    idx: usize,
    /// Boxed: the stages below filter `Live`s from one vector into the next,
    /// and moving a 300-byte event each time cost more than the box.
    event: Box<Event>,
    schema_version: u32,
    entity: Option<String>,
    features: Row,
}

/// A result ready for the sinks: its input's index in the batch, the
/// record, the latency so far, and the input's (source, id) when dedup
/// records it.
type Emitted = (usize, Record, Option<u64>, Option<(String, String)>);

/// The longest entity key taken from an event. Keys are looked up, cached
/// and logged; an event that names a megabyte-long entity is refused at
/// decode instead of filling the cache with it.
pub const MAX_ENTITY_KEY_BYTES: usize = 256;

/// Each input's outcome, set by the stage that ends it; `None` while the
/// event is still live.
struct Outcomes(Vec<Option<Outcome>>);

impl Outcomes {
    fn new(n: usize) -> Outcomes {
        Outcomes((0..n).map(|_| None).collect())
    }

    #[inline]
    fn fail(&mut self, idx: usize, e: StageError) {
        self.0[idx] = Some(Outcome::Failed(e));
    }

    #[inline]
    fn set(&mut self, idx: usize, outcome: Outcome) {
        self.0[idx] = Some(outcome);
    }

    /// One outcome per input, in order; an input no stage ended is a fatal
    /// `lost` (a bug, not something an event can cause).
    fn finish(self) -> Vec<Outcome> {
        self.0
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Outcome::Failed(StageError::new(Stage::Infer, ErrorClass::Fatal, "lost", "no outcome"))
                })
            })
            .collect()
    }
}

/// The calls a batch made to the worker's dependencies, and whether each
/// succeeded, for their circuit breakers: `None` where no call was made.
/// A call with any success is a success (a poison event fails alone).
#[derive(Debug, Default)]
pub struct Calls {
    pub store: Option<bool>,
    /// Per sink, in the plan's order.
    pub sinks: Vec<Option<bool>>,
}

/// Runs one batch; returns one outcome per input, in order, and the
/// dependency calls it made.
pub async fn run_batch(plan: &Arc<Plan>, records: Vec<&Record>, stats: &WorkerStats) -> (Vec<Outcome>, Calls) {
    let mut out = Outcomes::new(records.len());
    let mut calls = Calls { store: None, sinks: vec![None; plan.sinks.len()] };
    let live = decode_and_validate(plan, &records, stats, &mut out);
    let live = drop_duplicates(plan, live, &mut out).await;
    let live = lookup_features(plan, live, &mut out, &mut calls).await;
    let (live, rows) = assemble_rows(plan, live, &mut out);
    let results = if live.is_empty() { Vec::new() } else { infer(plan, rows).await };
    let emitted = result_records(plan, live, results, &mut out);
    emit_results(plan, emitted, &mut out, &mut calls).await;
    (out.finish(), calls)
}

/// decode + validate: each record into a live event, in one pass.
fn decode_and_validate(plan: &Plan, records: &[&Record], stats: &WorkerStats, out: &mut Outcomes) -> Vec<Live> {
    let mut live: Vec<Live> = Vec::with_capacity(records.len());
    for (idx, rec) in records.iter().enumerate() {
        let event = match decode(plan, rec, stats) {
            Ok(e) => e,
            Err(e) => {
                out.fail(idx, e);
                continue;
            }
        };
        let (schema_version, entity) = match validate(plan, &event) {
            Ok(v) => v,
            Err(e) => {
                out.fail(idx, e);
                continue;
            }
        };
        live.push(Live { idx, event: Box::new(event), schema_version, entity, features: Row::from([]) });
    }
    live
}

/// One record into an event of this worker's type. The payload limit comes
/// first (its stage is `validate`), so an oversized record is never parsed.
#[inline]
fn decode(plan: &Plan, rec: &Record, stats: &WorkerStats) -> Result<Event, StageError> {
    if rec.size() > plan.max_payload_bytes {
        return Err(StageError::new(
            Stage::Validate,
            ErrorClass::Permanent,
            "payload_too_large",
            format!("record is {} bytes, the limit is {}", rec.size(), plan.max_payload_bytes),
        ));
    }
    let event = match Event::from_record(rec) {
        Ok(e) => e,
        Err(e) => return Err(StageError::from(Stage::Decode, &e)),
    };
    if event.trace_derived {
        stats.without_trace.fetch_add(1, Ordering::Relaxed);
    }
    if event.time.is_none() {
        stats.without_time.fetch_add(1, Ordering::Relaxed);
    }
    if event.ty != plan.event_type {
        return Err(StageError::new(
            Stage::Decode,
            ErrorClass::Permanent,
            "unexpected_type",
            format!("event type `{}`, this worker accepts `{}`", event.ty, plan.event_type),
        ));
    }
    Ok(event)
}

/// An event against its schema, and the feature entity it names: the
/// schema version it matched and the entity to look up.
#[inline]
fn validate(plan: &Plan, event: &Event) -> Result<(u32, Option<String>), StageError> {
    let schema_version = match plan.schemas.validate_compatible(&event.ty, event.dataschema.as_deref(), &event.data) {
        Ok(v) => v,
        Err(e) => return Err(StageError::from(Stage::Validate, &e)),
    };
    let entity = match plan.entity_of(event) {
        Ok(Some(k)) if k.len() > MAX_ENTITY_KEY_BYTES => {
            return Err(StageError::new(
                Stage::Decode,
                ErrorClass::Permanent,
                "entity_key_too_long",
                format!("entity key is {} bytes, the limit is {MAX_ENTITY_KEY_BYTES}", k.len()),
            ));
        }
        Ok(e) => e,
        Err(reason) => {
            return Err(StageError::new(Stage::Features, ErrorClass::Permanent, "missing_entity_key", reason));
        }
    };
    Ok((schema_version, entity))
}

/// dedup: drop events whose result was already emitted (a worker with a
/// dedup window only).
async fn drop_duplicates(plan: &Plan, mut live: Vec<Live>, out: &mut Outcomes) -> Vec<Live> {
    let Some(dedup) = &plan.dedup else { return live };
    let ids = live.iter().map(|l| (l.event.source.clone(), l.event.id.clone())).collect();
    match dedup.seen(ids).await {
        Ok(seen) => {
            let mut kept = Vec::with_capacity(live.len());
            for (l, dup) in live.into_iter().zip(seen) {
                if dup {
                    out.set(l.idx, Outcome::Duplicate);
                } else {
                    kept.push(l);
                }
            }
            kept
        }
        Err(e) => {
            let err = StageError::from(Stage::Decode, &e);
            for l in live.drain(..) {
                out.fail(l.idx, err.clone());
            }
            live
        }
    }
}

/// features: one lookup for the batch (a worker with a feature store only).
/// A lookup that fails is bisected, so that a poison key fails its own
/// events and not the batch, and does not count against the breaker.
async fn lookup_features(plan: &Plan, mut live: Vec<Live>, out: &mut Outcomes, calls: &mut Calls) -> Vec<Live> {
    let Some(store) = &plan.store else { return live };
    if live.is_empty() {
        return live;
    }
    let keys: Vec<String> = live.iter_mut().map(|l| l.entity.take().unwrap_or_default()).collect();
    let (answers, ok): (Vec<Answer>, bool) = match store.lookup(keys).await {
        Ok(rows) => (rows.into_iter().map(Ok).collect(), true),
        Err(e) => {
            // Taken again from the events, not kept: a copy of every key
            // for the rare failed lookup would cost every batch.
            let keys = live.iter().map(|l| plan.entity_of(&l.event).ok().flatten().unwrap_or_default()).collect();
            bisect(store, keys, StageError::from(Stage::Features, &e)).await
        }
    };
    calls.store = Some(ok);
    {
        {
            let mut kept = Vec::with_capacity(live.len());
            for (mut l, answer) in live.into_iter().zip(answers) {
                let row = match answer {
                    Ok(row) => row,
                    Err(e) => {
                        out.fail(l.idx, e);
                        continue;
                    }
                };
                match row {
                    Some(cells) => l.features = cells,
                    None if plan.defaults_on_missing => l.features = plan.defaults.clone(),
                    None => {
                        out.fail(
                            l.idx,
                            StageError::new(
                                Stage::Features,
                                ErrorClass::Permanent,
                                "unknown_entity",
                                format!(
                                    "entity `{}` is not in feature store `{}`",
                                    plan.entity_of(&l.event).ok().flatten().unwrap_or_default(),
                                    plan.store_name
                                ),
                            ),
                        );
                        continue;
                    }
                }
                kept.push(l);
            }
            kept
        }
    }
}

/// A key's answer from the store: its row (`None`: no such entity), or why
/// its lookup failed.
type Answer = Result<Option<Row>, StageError>;

/// After a failed lookup of `keys`: each half is looked up again, and a
/// half that fails while the other succeeds is split further, down to the
/// keys that fail alone. Returns each key's answer, and whether the call
/// as a whole succeeded: false only when every part failed (an outage,
/// not a poison key), which costs three lookups.
async fn bisect(store: &FeatureStore, keys: Vec<String>, first: StageError) -> (Vec<Answer>, bool) {
    let mut answers: Vec<Answer> = vec![Err(first.clone()); keys.len()];
    if keys.len() < 2 {
        return (answers, false);
    }
    let mut any_ok = false;
    // Ranges still failing. Iterative: about two lookups per poison key per halving.
    let mut failing = Vec::with_capacity(16);
    failing.push(0..keys.len());
    while let Some(range) = failing.pop() {
        if range.len() == 1 {
            continue;
        }
        let mid = range.start + range.len() / 2;
        let mut failed_halves = 0;
        for half in [range.start..mid, mid..range.end] {
            match store.lookup(keys[half.clone()].to_vec()).await {
                Ok(rows) => {
                    any_ok = true;
                    for (i, row) in half.zip(rows) {
                        answers[i] = Ok(row);
                    }
                }
                Err(e) => {
                    let err = StageError::from(Stage::Features, &e);
                    for i in half.clone() {
                        answers[i] = Err(err.clone());
                    }
                    failed_halves += 1;
                    failing.push(half);
                }
            }
        }
        if failed_halves == 2 && !any_ok {
            // Both halves fail and nothing has succeeded: an outage, not a
            // poison key. No more calls; every key keeps its error.
            break;
        }
    }
    (answers, any_ok)
}

/// infer: assemble rows, refuse the ones the model cannot take. Returns the
/// events still live and their rows, in the same order.
fn assemble_rows(plan: &Plan, live: Vec<Live>, out: &mut Outcomes) -> (Vec<Live>, Vec<Vec<Vec<f32>>>) {
    let mut rows: Vec<Vec<Vec<f32>>> = Vec::with_capacity(live.len());
    let mut kept = Vec::with_capacity(live.len());
    for l in live {
        match assemble(plan, &l) {
            Ok(r) => {
                rows.push(r);
                kept.push(l);
            }
            Err(e) => out.fail(l.idx, e),
        }
    }
    (kept, rows)
}

/// map outputs into result events: each inferred event's result record,
/// stamped with one time for the batch.
fn result_records(
    plan: &Plan,
    live: Vec<Live>,
    results: Vec<Result<RowOutputs, StageError>>,
    out: &mut Outcomes,
) -> Vec<Emitted> {
    let now = Utc::now();
    let time = crate::event::format_time(now);
    let producer = plan.result_producer();
    let mut emitted: Vec<Emitted> = Vec::with_capacity(live.len());
    for (l, res) in live.into_iter().zip(results) {
        let (outputs, row) = match res {
            Ok(o) => o,
            Err(e) => {
                out.fail(l.idx, e);
                continue;
            }
        };
        match plan.result_data(&l.event, &outputs, row) {
            Ok(data) => {
                let rec = result_record(&l.event, &producer, l.schema_version, &time, data);
                // Events without `time` are counted apart (at decode), not observed.
                let latency =
                    l.event.time.and_then(|t| (now - t).num_microseconds()).and_then(|v| u64::try_from(v).ok());
                let id = plan.dedup.is_some().then(|| (l.event.source.clone(), l.event.id.clone()));
                emitted.push((l.idx, rec, latency, id));
            }
            Err(e) => out.fail(l.idx, e),
        }
    }
    emitted
}

/// emit: every sink must accept a result before its input counts as handled
async fn emit_results(plan: &Plan, emitted: Vec<Emitted>, out: &mut Outcomes, calls: &mut Calls) {
    if emitted.is_empty() {
        return;
    }
    let mut recs: Vec<Record> = Vec::with_capacity(emitted.len());
    let mut meta = Vec::with_capacity(emitted.len());
    for (idx, rec, latency, id) in emitted {
        recs.push(rec);
        meta.push((idx, latency, id));
    }
    let failed = emit(plan, recs, calls).await;
    if let Some(dedup) = &plan.dedup {
        // Recorded only now that the results are out. If this fails the
        // results stand; a redelivery would produce the same result ids.
        let ids = meta.iter_mut().zip(&failed).filter(|(_, f)| f.is_none()).filter_map(|(m, _)| m.2.take()).collect();
        if let Err(e) = dedup.record(ids).await {
            tracing::warn!(worker = %plan.worker, error = %e, "could not record emitted ids for dedup");
        }
    }
    for ((idx, latency, _), failure) in meta.into_iter().zip(failed) {
        out.set(
            idx,
            match failure {
                None => Outcome::Emitted { latency_us: latency },
                Some(e) => Outcome::Failed(e),
            },
        );
    }
}

/// Sends each result to every sink; returns, per result, why it was not
/// accepted (`None`: every sink took it). A sink's refusal of one record
/// fails that record alone; a record refused by one sink is not sent to the
/// next (its input will be retried or dead-lettered anyway).
async fn emit(plan: &Plan, mut recs: Vec<Record>, calls: &mut Calls) -> Vec<Option<StageError>> {
    let mut failed: Vec<Option<StageError>> = vec![None; recs.len()];
    let n = plan.sinks.len();
    for (s, sink) in plan.sinks.iter().enumerate() {
        let pending: Vec<usize> = (0..recs.len()).filter(|&i| failed[i].is_none()).collect();
        if pending.is_empty() {
            break;
        }
        // The last sink takes the records when all are still pending; the
        // others get copies.
        let batch = if s + 1 == n && pending.len() == recs.len() {
            std::mem::take(&mut recs)
        } else {
            pending.iter().map(|&i| recs[i].clone()).collect()
        };
        let result = sink.emit(batch).await;
        calls.sinks[s] = Some(result.is_ok());
        match result {
            Err(e) => {
                let err = StageError::at_sink(&e, sink);
                for &i in &pending {
                    failed[i] = Some(err.clone());
                }
            }
            Ok(outcomes) => {
                if outcomes.len() != pending.len() {
                    // A sink that loses track of records must not count them accepted.
                    let reason = format!("sink answered for {} of {} records", outcomes.len(), pending.len());
                    let err = StageError::new(Stage::Emit, ErrorClass::Transient, "sink_outcomes", reason);
                    for &i in &pending {
                        failed[i] = Some(StageError { sink: Some(sink.describe()), ..err.clone() });
                    }
                    continue;
                }
                for (&i, outcome) in pending.iter().zip(outcomes) {
                    if let Err(e) = outcome {
                        failed[i] = Some(StageError::at_sink(&e, sink));
                    }
                }
            }
        }
    }
    failed
}

/// One row per model input for one event; NaN marks a missing value.
fn assemble(plan: &Plan, l: &Live) -> Result<Vec<Vec<f32>>, StageError> {
    let bad = |code: &str, reason: String| StageError::new(Stage::Infer, ErrorClass::Permanent, code, reason);
    let mut out = Vec::with_capacity(plan.inputs.len());
    for input in &plan.inputs {
        let mut row = Vec::with_capacity(input.columns.len());
        for (col, label) in input.columns.iter().zip(&input.labels) {
            let v = match col {
                Column::Data(path) => {
                    let mut v = &l.event.data;
                    for seg in path {
                        v = v.get(seg.as_str()).unwrap_or(&Value::Null);
                    }
                    match v {
                        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN) as f32,
                        Value::Bool(b) => *b as u8 as f32,
                        Value::Null => f32::NAN,
                        other => return Err(bad("non_numeric_input", format!("`{label}` is {other}, not a number"))),
                    }
                }
                Column::Feature(i) => match l.features.get(*i) {
                    Some(Cell::Num(n)) => *n as f32,
                    Some(Cell::Null) | None => f32::NAN,
                    Some(Cell::Text(t)) => {
                        return Err(bad("non_numeric_input", format!("`{label}` is the string {t:?}, not a number")))
                    }
                },
            };
            if v.is_nan() && !plan.model.allow_nan {
                return Err(bad(
                    "nan_input",
                    format!(
                        "`{label}` is missing or null, and model `{}` does not accept missing values",
                        plan.model.name
                    ),
                ));
            }
            row.push(v);
        }
        out.push(row);
    }
    Ok(out)
}

/// A batch's outputs and the row of one event in them.
type RowOutputs = (Arc<Vec<crate::model::Output>>, usize);

/// Runs the model, inline or on a blocking thread (see [`INLINE_BUDGET_NS`](super::infer_cost::INLINE_BUDGET_NS)).
async fn infer(plan: &Arc<Plan>, rows: Vec<Vec<Vec<f32>>>) -> Vec<Result<RowOutputs, StageError>> {
    if plan.infer_cost.inline(rows.len()) {
        return infer_now(plan, rows);
    }
    let plan2 = plan.clone();
    let n = rows.len();
    tokio::task::spawn_blocking(move || infer_now(&plan2, rows)).await.unwrap_or_else(|e| {
        (0..n)
            .map(|_| Err(StageError::new(Stage::Infer, ErrorClass::Transient, "inference_task", e.to_string())))
            .collect()
    })
}

/// If the batch fails as a whole, each row is run alone so only the rows
/// that cause the failure are refused.
fn infer_now(plan: &Plan, rows: Vec<Vec<Vec<f32>>>) -> Vec<Result<RowOutputs, StageError>> {
    let model = &plan.model;
    let n = rows.len();
    let to_inputs = |rows: &[Vec<Vec<f32>>]| -> Vec<TensorInput> {
        model
            .inputs()
            .iter()
            .enumerate()
            .map(|(i, spec)| TensorInput {
                rows: rows.len(),
                cols: spec.width,
                data: rows.iter().flat_map(|r| r[i].iter().copied()).collect(),
            })
            .collect()
    };
    let start = std::time::Instant::now();
    match model.run(to_inputs(&rows)) {
        Ok(outputs) => {
            plan.infer_cost.record(n, start.elapsed());
            let shared = Arc::new(outputs);
            (0..n).map(|row| Ok((shared.clone(), row))).collect()
        }
        Err(_) => rows
            .iter()
            .map(|r| {
                model
                    .run(to_inputs(std::slice::from_ref(r)))
                    .map(|o| (Arc::new(o), 0))
                    .map_err(|e| StageError::from(Stage::Infer, &e))
            })
            .collect(),
    }
}
