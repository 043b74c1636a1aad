//! A worker's compiled configuration: the model's inputs resolved to event
//! fields and feature indices, outputs resolved to expressions, the sinks
//! built. Checked against the loaded model at start-up, so a mismatch (wrong
//! width, unknown output) stops the worker before it reads anything.

use std::sync::Arc;

use serde_json::Value;

use super::infer_cost::InferCost;
use super::outcome::StageError;
use crate::config::{Config, ConfigError, FeatureStoreConfig, MissingEntity, WorkerConfig};
use crate::dead_letter::Stage;
use crate::error::ErrorClass;
use crate::event::{Event, ResultProducer};
use crate::features::{Cell, FeatureStore};
use crate::model::{Model, Output, OutputExpr};
use crate::schema::SchemaRegistry;
use crate::sink::Sink;

#[derive(Debug, Clone)]
pub enum Column {
    /// A path into the event's data.
    Data(Vec<String>),
    /// Index into the worker's feature list.
    Feature(usize),
}

#[derive(Debug, Clone)]
pub struct InputPlan {
    pub columns: Vec<Column>,
    /// The column as written in the config, for error messages.
    pub labels: Vec<String>,
}

pub struct Plan {
    pub worker: String,
    pub group: String,
    pub event_type: String,
    pub result_type: String,
    pub result_source: String,
    pub result_dataschema: Option<String>,
    pub dead_letter_topic: String,
    pub max_payload_bytes: usize,
    pub schemas: Arc<SchemaRegistry>,
    pub model: Arc<Model>,
    pub store: Option<Arc<FeatureStore>>,
    pub store_name: String,
    pub features: Vec<String>,
    pub defaults: crate::features::Row,
    pub defaults_on_missing: bool,
    pub entity_key: Option<Vec<String>>,
    pub inputs: Vec<InputPlan>,
    pub outputs: Vec<(String, OutputExpr)>,
    pub passthrough: Vec<String>,
    pub sinks: Vec<Sink>,
    pub dedup: Option<Arc<crate::dedup::Dedup>>,
    /// Whether a batch is small enough to infer without a thread hand-off.
    pub infer_cost: InferCost,
}

impl Plan {
    /// Compiles `workers[index]`; errors name the config path.
    pub fn build(
        config: &Config,
        index: usize,
        model: Arc<Model>,
        store: Option<Arc<FeatureStore>>,
        schemas: Arc<SchemaRegistry>,
        sinks: Vec<Sink>,
    ) -> Result<Plan, ConfigError> {
        let w: &WorkerConfig = &config.workers[index];
        let p = format!("workers[{index}]");
        // Inputs and outputs against the model as it runs, output widths
        // included: a mismatch stops start-up, naming its path.
        if let Some(e) = super::model_fit::check(w, index, &model).into_iter().next() {
            return Err(e);
        }
        let bad = |path: String, message: String| ConfigError { path, message };
        let mut features: Vec<String> = Vec::new();
        let mut inputs = Vec::new();
        for spec in model.inputs() {
            // `model_fit::check` has vouched for every input being mapped
            // with the model's width.
            let cols = w.inputs.get(&spec.name).ok_or_else(|| {
                bad(
                    format!("{p}.inputs"),
                    format!("model `{}` has an input `{}` that the worker does not map", w.model, spec.name),
                )
            })?;
            let mut columns = Vec::new();
            for c in cols {
                columns.push(if let Some(f) = c.strip_prefix("features.") {
                    let i = features.iter().position(|x| x == f).unwrap_or_else(|| {
                        features.push(f.to_string());
                        features.len() - 1
                    });
                    Column::Feature(i)
                } else {
                    Column::Data(c.trim_start_matches("data.").split('.').map(str::to_string).collect())
                });
            }
            inputs.push(InputPlan { columns, labels: cols.clone() });
        }
        let mut outputs = Vec::new();
        for (field, expr) in &w.outputs {
            let e: OutputExpr = expr.parse().map_err(|e| bad(format!("{p}.outputs.{field}"), e))?;
            outputs.push((field.clone(), e));
        }
        let store_cfg: Option<&FeatureStoreConfig> =
            w.feature_store.as_ref().and_then(|s| config.feature_stores.get(s));
        let defaults = features
            .iter()
            .map(|f| store_cfg.and_then(|c| c.defaults.get(f)).map(Cell::from).unwrap_or(Cell::Null))
            .collect();
        let result_dataschema =
            schemas.latest_version(&w.result_type).map(|v| SchemaRegistry::dataschema_uri(&w.result_type, v));
        Ok(Plan {
            worker: w.name.clone(),
            group: w.group().to_string(),
            event_type: w.event_type.clone(),
            result_type: w.result_type.clone(),
            result_source: w.result_source(),
            result_dataschema,
            dead_letter_topic: w.dead_letter_topic(),
            max_payload_bytes: w.max_payload_bytes(&config.bus),
            schemas,
            model,
            store,
            store_name: w.feature_store.clone().unwrap_or_default(),
            features,
            defaults,
            defaults_on_missing: w.on_missing_entity == MissingEntity::Defaults,
            entity_key: w.entity_key.as_ref().map(|k| k.split('.').map(str::to_string).collect()),
            inputs,
            outputs,
            passthrough: w.passthrough.clone(),
            sinks,
            dedup: match w.dedup_window {
                Some(window) => Some(Arc::new(
                    crate::dedup::Dedup::open(&config.data_dir, w.group(), window)
                        .map_err(|e| bad(format!("{p}.dedup_window"), e.to_string()))?,
                )),
                None => None,
            },
            infer_cost: Default::default(),
        })
    }

    /// The feature entity named by the event, if the worker uses a store.
    pub fn entity_of(&self, e: &Event) -> Result<Option<String>, String> {
        let Some(path) = &self.entity_key else { return Ok(None) };
        let v = match path[0].as_str() {
            "subject" => e.subject.clone().map(Value::String).unwrap_or(Value::Null),
            "id" => Value::String(e.id.clone()),
            _ => {
                let mut v = &e.data;
                for seg in &path[1..] {
                    v = v.get(seg.as_str()).unwrap_or(&Value::Null);
                }
                v.clone()
            }
        };
        match v {
            Value::String(s) if !s.is_empty() => Ok(Some(s)),
            Value::Number(n) => Ok(Some(n.to_string())),
            _ => Err(format!("entity key `{}` is missing or not a string/number", path.join("."))),
        }
    }

    /// What a result event takes from this worker rather than from its
    /// cause, borrowed once per batch for [`crate::event::result_record`].
    pub fn result_producer(&self) -> ResultProducer<'_> {
        ResultProducer {
            source: &self.result_source,
            ty: &self.result_type,
            dataschema: self.result_dataschema.as_deref(),
            worker: &self.worker,
            model_name: &self.model.name,
            model_version: &self.model.version,
        }
    }

    /// The data of the result event for `cause`: the mapped outputs of its
    /// `row`, then the passthrough fields, as JSON written directly (this
    /// runs once per event, so it builds no JSON map). The record around it
    /// is [`crate::event::result_record`]'s, beside `Event::to_record`,
    /// which it must match byte for byte.
    pub fn result_data(&self, cause: &Event, outputs: &[Output], row: usize) -> Result<Vec<u8>, StageError> {
        let mut data = Vec::with_capacity(128);
        data.push(b'{');
        let mut first = true;
        let mut field = |data: &mut Vec<u8>, name: &str| {
            if !std::mem::take(&mut first) {
                data.push(b',');
            }
            // Serialising a &str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *data, name);
            data.push(b':');
        };
        for (name, expr) in &self.outputs {
            let out = outputs.iter().find(|o| o.name == expr.tensor());
            let v = out.and_then(|o| expr.eval(o, row)).ok_or_else(|| {
                StageError::new(
                    Stage::Infer,
                    ErrorClass::Permanent,
                    "output_shape",
                    format!("output mapping `{name}` does not fit the model's output shape"),
                )
            })?;
            if !v.is_finite() {
                return Err(StageError::new(
                    Stage::Infer,
                    ErrorClass::Permanent,
                    "nan_output",
                    format!("model output for `{name}` is {v}"),
                ));
            }
            field(&mut data, name);
            if expr.is_label() {
                data.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
            } else {
                data.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
            }
        }
        for f in &self.passthrough {
            if let Some(v) = cause.data.get(f) {
                field(&mut data, f);
                let _ = serde_json::to_writer(&mut data, v);
            }
        }
        data.push(b'}');
        Ok(data)
    }
}
