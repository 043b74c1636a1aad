//! A worker's compiled configuration: the model's inputs resolved to event
//! fields and feature indices, outputs resolved to expressions, the sinks
//! built. Checked against the loaded model at start-up, so a mismatch (wrong
//! width, unknown output) stops the worker before it reads anything.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::stages::StageError;
use crate::config::{Config, FeatureStoreConfig, MissingEntity, WorkerConfig};
use crate::dead_letter::Stage;
use crate::error::ErrorClass;
use crate::event::{result_id, Event, Record};
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
    pub defaults: Vec<Cell>,
    pub defaults_on_missing: bool,
    pub entity_key: Option<Vec<String>>,
    pub inputs: Vec<InputPlan>,
    pub outputs: Vec<(String, OutputExpr)>,
    pub passthrough: Vec<String>,
    pub sinks: Vec<Sink>,
    pub dedup: Option<Arc<crate::dedup::Dedup>>,
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
    ) -> Result<Plan, String> {
        let w: &WorkerConfig = &config.workers[index];
        let p = format!("workers[{index}]");
        let mut features: Vec<String> = Vec::new();
        let mut inputs = Vec::new();
        for spec in model.inputs() {
            let cols = w.inputs.get(&spec.name).ok_or_else(|| {
                format!("{p}.inputs: model `{}` has an input `{}` that the worker does not map", w.model, spec.name)
            })?;
            if cols.len() != spec.width {
                return Err(format!(
                    "{p}.inputs.{}: model `{}` takes {} columns, {} are listed",
                    spec.name, w.model, spec.width, cols.len()
                ));
            }
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
        for name in w.inputs.keys() {
            if !model.inputs().iter().any(|s| &s.name == name) {
                return Err(format!("{p}.inputs.{name}: model `{}` has no input `{name}`", w.model));
            }
        }
        let mut outputs = Vec::new();
        for (field, expr) in &w.outputs {
            let e: OutputExpr = expr.parse().map_err(|e| format!("{p}.outputs.{field}: {e}"))?;
            if !model.output_names().iter().any(|o| o == e.tensor()) {
                return Err(format!(
                    "{p}.outputs.{field}: model `{}` has no output `{}` (it has: {})",
                    w.model,
                    e.tensor(),
                    model.output_names().join(", ")
                ));
            }
            outputs.push((field.clone(), e));
        }
        let store_cfg: Option<&FeatureStoreConfig> = w.feature_store.as_ref().and_then(|s| config.feature_stores.get(s));
        let defaults = features
            .iter()
            .map(|f| store_cfg.and_then(|c| c.defaults.get(f)).map(Cell::from).unwrap_or(Cell::Null))
            .collect();
        let result_dataschema = schemas
            .latest_version(&w.result_type)
            .map(|v| SchemaRegistry::dataschema_uri(&w.result_type, v));
        Ok(Plan {
            worker: w.name.clone(),
            group: w.group().to_string(),
            event_type: w.event_type.clone(),
            result_type: w.result_type.clone(),
            result_source: w.result_source(),
            result_dataschema,
            dead_letter_topic: w.dead_letter_topic(),
            max_payload_bytes: w.max_payload_bytes,
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
                    crate::dedup::Dedup::open(&config.data_dir, w.group(), window).map_err(|e| format!("{p}.dedup_window: {e}"))?,
                )),
                None => None,
            },
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

    /// The result event for `cause`, as a record ready for the sinks.
    pub fn result_for(
        &self,
        cause: &Event,
        schema_version: u32,
        outputs: &[Output],
        row: usize,
        now: DateTime<Utc>,
    ) -> Result<Record, StageError> {
        let mut data = Map::new();
        for (field, expr) in &self.outputs {
            let out = outputs.iter().find(|o| o.name == expr.tensor());
            let v = out.and_then(|o| expr.eval(o, row)).ok_or_else(|| {
                StageError::new(Stage::Infer, ErrorClass::Permanent, "output_shape",
                    format!("output mapping `{field}` does not fit the model's output shape"))
            })?;
            if !v.is_finite() {
                return Err(StageError::new(Stage::Infer, ErrorClass::Permanent, "nan_output",
                    format!("model output for `{field}` is {v}")));
            }
            let json = if expr.is_label() {
                Value::from(v as i64)
            } else {
                serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null)
            };
            data.insert(field.clone(), json);
        }
        for f in &self.passthrough {
            if let Some(v) = cause.data.get(f) {
                data.insert(f.clone(), v.clone());
            }
        }
        let id = result_id(&cause.source, &cause.id, &self.worker, &self.model.version);
        let mut ext = std::collections::BTreeMap::new();
        ext.insert("causationid".into(), cause.id.clone());
        ext.insert(
            "correlationid".into(),
            cause.extensions.get("correlationid").cloned().unwrap_or_else(|| cause.id.clone()),
        );
        ext.insert("modelname".into(), self.model.name.clone());
        ext.insert("modelversion".into(), self.model.version.clone());
        ext.insert("worker".into(), self.worker.clone());
        ext.insert("partitionkey".into(), cause.partition_key().to_string());
        ext.insert("inputschemaversion".into(), schema_version.to_string());
        let result = Event {
            traceparent: cause.traceparent.child(id.as_bytes()),
            tracestate: cause.tracestate.clone(),
            id,
            source: self.result_source.clone(),
            ty: self.result_type.clone(),
            time: now,
            subject: cause.subject.clone(),
            datacontenttype: Some(crate::event::JSON_CONTENT_TYPE.into()),
            dataschema: self.result_dataschema.clone(),
            extensions: ext,
            data: Value::Object(data),
        };
        Ok(result.to_record())
    }
}
