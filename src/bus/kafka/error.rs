//! The Kafka backend's own errors, and which of librdkafka's are transient,
//! fatal, or a refusal of one record. [`crate::bus::BusError`] carries them whole.

use rdkafka::error::{KafkaError as Rd, RDKafkaErrorCode as C};

use crate::error::{Classify, ErrorClass};

#[derive(Debug, thiserror::Error)]
pub enum KafkaBusError {
    #[error("kafka {op}: {source}")]
    Client { op: &'static str, source: Rd },
    /// librdkafka refused a property; its value is left out (it may be a password).
    #[error("kafka {op}: cannot set property `{property}` (value <redacted>): {reason}")]
    Config { op: &'static str, property: String, reason: String },
    #[error("topic `{0}` does not exist and bus.kafka.create_topics is false")]
    MissingTopic(String),
    #[error("cannot create topic `{topic}`: {code}")]
    CreateTopic { topic: String, code: C },
}

impl KafkaBusError {
    /// Errors about one record that no retry can fix: the broker or the
    /// client refuses its size or shape. They fail that record alone.
    pub fn refuses_record(&self) -> bool {
        match self {
            KafkaBusError::Client { source, .. } => matches!(
                source.rdkafka_error_code(),
                Some(C::MessageSizeTooLarge | C::InvalidMessageSize | C::InvalidRecord | C::InvalidMessage)
            ),
            _ => false,
        }
    }
}

/// librdkafka errors that no retry can fix: credentials, authorisation, config.
fn is_fatal(e: &Rd) -> bool {
    match e {
        Rd::ClientConfig(..) | Rd::ClientCreation(_) | Rd::Subscription(_) => true,
        _ => matches!(
            e.rdkafka_error_code(),
            Some(
                C::TopicAuthorizationFailed
                    | C::GroupAuthorizationFailed
                    | C::ClusterAuthorizationFailed
                    | C::SaslAuthenticationFailed
                    | C::Authentication
                    | C::InvalidConfig
                    | C::Fatal
            )
        ),
    }
}

impl Classify for KafkaBusError {
    fn class(&self) -> ErrorClass {
        match self {
            KafkaBusError::Client { source, .. } if is_fatal(source) => ErrorClass::Fatal,
            _ if self.refuses_record() => ErrorClass::Permanent,
            // Brokers down, leaders moving, timeouts: retry.
            KafkaBusError::Client { .. } => ErrorClass::Transient,
            KafkaBusError::MissingTopic(_) | KafkaBusError::CreateTopic { .. } | KafkaBusError::Config { .. } => {
                ErrorClass::Fatal
            }
        }
    }
    fn code(&self) -> &'static str {
        match self {
            _ if self.refuses_record() => "record_too_large",
            KafkaBusError::Client { .. } => "kafka",
            KafkaBusError::Config { .. } => "kafka_config",
            KafkaBusError::MissingTopic(_) => "missing_topic",
            KafkaBusError::CreateTopic { .. } => "create_topic",
        }
    }
}
