//! Assembles a running deployment from a config: opens the bus, loads the
//! schema registry, models and feature stores once (shared by every worker),
//! compiles each worker's plan, and runs them under one shutdown token. Any
//! failure here is fatal and names what failed; nothing starts half-way.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, BusError};
use crate::config::Config;
use crate::error::{Classify, ErrorClass};
use crate::features::{FeatureError, FeatureStore};
use crate::model::{Model, ModelError};
use crate::schema::{SchemaError, SchemaRegistry};
use crate::sink::{Sink, SinkContext, SinkError};
use crate::telemetry::WorkerStats;
use crate::worker::breaker::{Breaker, Breakers};
use crate::worker::plan::Plan;
use crate::worker::{Worker, WorkerError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Features(#[from] FeatureError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A worker whose config does not fit what was loaded (its model).
    #[error("{0}")]
    Plan(crate::config::ConfigError),
    /// A task of start-up or of a worker ended in a panic.
    #[error("{what} panicked: {reason}")]
    Panicked { what: String, reason: String },
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

impl Classify for AppError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Fatal
    }
    fn code(&self) -> &'static str {
        match self {
            AppError::Bus(e) => e.code(),
            AppError::Schema(e) => e.code(),
            AppError::Model(e) => e.code(),
            AppError::Features(e) => e.code(),
            AppError::Sink(e) => e.code(),
            AppError::Plan(_) => "bad_worker_plan",
            AppError::Panicked { .. } => "panicked",
            AppError::Worker(e) => e.code(),
        }
    }
}

pub struct App {
    pub config: Config,
    pub bus: Arc<Bus>,
    pub schemas: Arc<SchemaRegistry>,
    pub models: BTreeMap<String, Arc<Model>>,
}

impl App {
    /// Loads everything the config's workers need. Models are loaded only if
    /// a worker uses them.
    pub async fn load(config: Config) -> Result<App, AppError> {
        let bus = Arc::new(Bus::open(&config)?);
        let schemas = Arc::new(SchemaRegistry::load(&config.schemas)?);
        let mut models = BTreeMap::new();
        for w in &config.workers {
            if !models.contains_key(&w.model) {
                let cfg = config.models[&w.model].clone();
                let name = w.model.clone();
                // Loading optimises the graph and runs the golden set: CPU work.
                let m = tokio::task::spawn_blocking(move || Model::load(&name, &cfg)).await.map_err(|e| {
                    AppError::Panicked { what: format!("loading model `{}`", w.model), reason: e.to_string() }
                })??;
                models.insert(w.model.clone(), Arc::new(m));
            }
        }
        Ok(App { config, bus, schemas, models })
    }

    /// Builds every worker of the config, each with its own counters.
    pub async fn workers(&self) -> Result<Vec<Worker>, AppError> {
        let mut out = Vec::new();
        for (i, w) in self.config.workers.iter().enumerate() {
            // Each worker gets its own handle: the prepared query (and the
            // row cache) hold that worker's feature list, and two workers
            // of one store may ask for different features.
            let store = match &w.feature_store {
                Some(s) => {
                    Some(Arc::new(FeatureStore::open(s, &self.config.feature_stores[s], &self.config.data_dir)?))
                }
                None => None,
            };
            let cx = SinkContext { bus: self.bus.clone() };
            let mut sinks = Vec::with_capacity(w.sinks.len());
            for s in &w.sinks {
                sinks.push(Sink::open(s, &cx).await?);
            }
            let breakers = Breakers {
                store: w
                    .feature_store
                    .as_ref()
                    .map(|s| Breaker::new(format!("feature_store:{s}"), self.config.feature_stores[s].breaker.clone())),
                sinks: sinks.iter().zip(&w.sinks).map(|(s, c)| Breaker::new(s.describe(), c.breaker.clone())).collect(),
            };
            let plan = Plan::build(&self.config, i, self.models[&w.model].clone(), store, self.schemas.clone(), sinks)
                .map_err(AppError::Plan)?;
            if let Some(store) = &plan.store {
                store.prepare(&plan.features).await?;
            }
            out.push(Worker {
                topics: vec![w.topic.clone(), w.replay_topic()],
                plan: Arc::new(plan),
                bus: self.bus.clone(),
                batch: w.batch.clone(),
                retry: w.retry.clone(),
                max_in_flight: w.max_in_flight,
                commit_interval: w.commit_interval,
                stats: Arc::new(WorkerStats::default()),
                breakers,
            });
        }
        Ok(out)
    }

    /// Runs workers until `shutdown` or a fatal error. A fatal error stops
    /// every worker (the others drain) and is returned.
    pub async fn run(workers: Vec<Worker>, shutdown: CancellationToken) -> Result<(), AppError> {
        let mut set = tokio::task::JoinSet::new();
        for w in workers {
            let token = shutdown.clone();
            set.spawn(async move { w.run(token).await });
        }
        let mut first_err = None;
        while let Some(res) = set.join_next().await {
            let res = res.map_err(|e| AppError::Panicked { what: "a worker task".into(), reason: e.to_string() });
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "worker stopped");
                    shutdown.cancel();
                    first_err.get_or_insert(AppError::Worker(e));
                }
                Err(e) => {
                    shutdown.cancel();
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Cancels `token` on SIGTERM or Ctrl-C.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested; draining");
        token.cancel();
    });
}
