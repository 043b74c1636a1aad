//! The claims example built into the binary, so `modelbus demo` and
//! `modelbus bench` work from anywhere with no set-up: its config, schemas,
//! model, golden set and customers CSV are embedded, and [`set_up`] writes
//! them out to a directory ready to run (the one way the demo, the
//! benchmarks and the tests prepare it). Also the synthetic `ClaimCreated`
//! generator, with deliberately bad events for the demo.

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::config::{Config, ConfigErrors};
use crate::event::{Event, Record};
use crate::features::FeatureError;

const FILES: &[(&str, &[u8])] = &[
    ("modelbus.toml", include_bytes!("../examples/claims/modelbus.toml")),
    ("model/risk.onnx", include_bytes!("../examples/claims/model/risk.onnx")),
    ("model/risk.golden.json", include_bytes!("../examples/claims/model/risk.golden.json")),
    ("features/customers.csv", include_bytes!("../examples/claims/features/customers.csv")),
    ("schemas/ClaimCreated/1.json", include_bytes!("../examples/claims/schemas/ClaimCreated/1.json")),
    ("schemas/RiskScored/1.json", include_bytes!("../examples/claims/schemas/RiskScored/1.json")),
];

pub const CUSTOMERS: usize = 5000;
pub const INPUT_TOPIC: &str = "claims";
pub const RESULT_TOPIC: &str = "risk-scored";
pub const STORE: &str = "customers";

/// The customers CSV, relative to the example's directory.
const CUSTOMERS_CSV: &str = "features/customers.csv";

/// The example written out and ready to run.
pub struct Deployment {
    /// The config file, as edited.
    pub config_path: PathBuf,
    /// That config, loaded.
    pub config: Config,
    /// The topic and group names, when the example was pointed at Kafka.
    pub kafka: Option<KafkaNames>,
    /// The customers CSV, already loaded into feature store [`STORE`].
    pub customers_csv: PathBuf,
    /// How many customers it held.
    pub customers: usize,
}

/// Why [`set_up`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SetUpError {
    #[error("writing the claims example: {0}")]
    Write(std::io::Error),
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Features(#[from] FeatureError),
}

/// Writes the example into `dir`, points it at the Kafka cluster at
/// `kafka_brokers` when given (with topic and group names unique to this
/// run; the feature store stays embedded), passes the config text through
/// `edit` and writes it back, loads that config, and loads the customers
/// CSV into the feature store.
pub fn set_up(
    dir: &Path,
    kafka_brokers: Option<&str>,
    edit: impl FnOnce(String) -> String,
) -> Result<Deployment, SetUpError> {
    let config_path = write_to(dir).map_err(SetUpError::Write)?;
    let mut text = std::fs::read_to_string(&config_path).map_err(SetUpError::Write)?;
    let kafka = kafka_brokers.map(|brokers| {
        let (on_kafka, names) = use_kafka(&text, brokers);
        text = on_kafka;
        names
    });
    std::fs::write(&config_path, edit(text)).map_err(SetUpError::Write)?;
    let config = crate::config::load(&config_path)?;
    let customers_csv = dir.join(CUSTOMERS_CSV);
    let customers = crate::features::embedded::load_csv(&config.data_dir, STORE, &customers_csv)?;
    Ok(Deployment { config_path, config, kafka, customers_csv, customers })
}

/// Writes the example into `dir`; returns the config file's path.
fn write_to(dir: &Path) -> std::io::Result<PathBuf> {
    for (name, bytes) in FILES {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, bytes)?;
    }
    Ok(dir.join("modelbus.toml"))
}

/// What kind of event the generator made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Good,
    /// Bytes that are not JSON (stage decode).
    Garbage,
    /// A CloudEvent without `source` (stage decode).
    MissingAttribute,
    /// Data that violates the schema (stage validate).
    SchemaInvalid,
    /// A customer the feature store does not know (stage features).
    UnknownCustomer,
}

/// Topic and group names of the example once pointed at Kafka: unique per
/// run, because a cluster outlives any one demo or benchmark.
pub struct KafkaNames {
    pub input: String,
    pub results: String,
    pub group: String,
}

/// The example's config `text` rewritten to use the Kafka cluster at
/// `brokers` (the feature store stays embedded), and the names it now uses.
fn use_kafka(text: &str, brokers: &str) -> (String, KafkaNames) {
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let names = KafkaNames {
        input: format!("{INPUT_TOPIC}-{tag}"),
        results: format!("{RESULT_TOPIC}-{tag}"),
        group: format!("claims-risk-{tag}"),
    };
    let text = text
        .replace(
            "[bus]\nkind = \"embedded\"\n\n[bus.embedded]\npartitions = 4\n",
            &format!(
                "[bus]\nkind = \"kafka\"\n\n[bus.kafka]\nbrokers = \"{brokers}\"\npartitions = 4\n\
                 session_timeout = \"6s\"\n\n[bus.kafka.consumer_properties]\n\
                 # Latency over fetch efficiency: return fetches after at most 10 ms.\n\
                 \"fetch.wait.max.ms\" = \"10\"\n"
            ),
        )
        .replace(
            &format!("topic = \"{INPUT_TOPIC}\""),
            &format!("topic = \"{}\"\ngroup = \"{}\"", names.input, names.group),
        )
        .replace(&format!("topic = \"{RESULT_TOPIC}\""), &format!("topic = \"{}\"", names.results));
    (text, names)
}

pub struct Generator {
    rng: StdRng,
    seed: u64,
    seq: u64,
    /// Fraction of events that are deliberately bad.
    pub bad_fraction: f64,
}

impl Generator {
    pub fn new(seed: u64, bad_fraction: f64) -> Generator {
        Generator { rng: StdRng::seed_from_u64(seed), seed, seq: 0, bad_fraction }
    }

    /// A good claim for a random known customer, stamped with `time`.
    pub fn claim(&mut self, time: chrono::DateTime<chrono::Utc>) -> Event {
        self.seq += 1;
        let customer = format!("C{:05}", self.rng.random_range(0..CUSTOMERS));
        let obj = json!({
            "id": format!("claim-{}-{}-{}", std::process::id(), self.seed, self.seq),
            "source": "/modelbus/demo",
            "type": "ClaimCreated",
            "subject": customer,
            "time": crate::event::format_time(time),
            "data": {
                "claim_id": format!("CL-{}", self.seq),
                "customer_id": customer,
                "amount": (self.rng.random_range(50.0..20000.0f64) * 100.0).round() / 100.0,
                "claim_type_code": self.rng.random_range(0..5),
                "days_since_policy_start": self.rng.random_range(0..3000),
                "incident_hour": self.rng.random_range(0..24),
            }
        });
        Event::from_structured_for_publish(obj).expect("generated events are well-formed")
    }

    /// The next record: mostly good claims, `bad_fraction` of them bad in
    /// one of four ways.
    pub fn next(&mut self, time: chrono::DateTime<chrono::Utc>) -> (Kind, Record) {
        let mut e = self.claim(time);
        if self.rng.random_bool(1.0 - self.bad_fraction.clamp(0.0, 1.0)) {
            return (Kind::Good, e.to_record());
        }
        match self.rng.random_range(0..4) {
            0 => {
                let mut r = e.to_record();
                r.value = b"{\"claim_id\": \"CL-broken\", amount: oops".to_vec();
                (Kind::Garbage, r)
            }
            1 => {
                let mut r = e.to_record();
                r.headers.retain(|k, _| k != "ce_source");
                (Kind::MissingAttribute, r)
            }
            2 => {
                e.data["amount"] = json!(-5);
                (Kind::SchemaInvalid, e.to_record())
            }
            _ => {
                e.data["customer_id"] = json!("C99999");
                (Kind::UnknownCustomer, e.to_record())
            }
        }
    }
}
