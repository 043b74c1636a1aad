//! The Kafka bus over TLS. librdkafka's `security.protocol` and `ssl.*`
//! properties pass through from `[bus.kafka.properties]` unchanged: a worker
//! scores events through a broker it can reach only over TLS, and through
//! one that also requires a client certificate (mutual TLS); a broker whose
//! certificate the configured CA did not sign is refused, and so is a
//! client without a certificate where one is required.
//!
//! The test broker's own TLS flags leave it in plaintext, so `.ci/run` puts
//! a TLS terminator in front of a second tansu, which advertises the
//! terminator's address (`MODELBUS_TEST_KAFKA_TLS`; the CA that signed its
//! certificate is `MODELBUS_TEST_KAFKA_TLS_CA`). Plaintext to that address
//! gets no Kafka answer, so results can only have come through TLS. The
//! mutual-TLS endpoint (`MODELBUS_TEST_KAFKA_MTLS`) is built the same way
//! and accepts the client certificate `MODELBUS_TEST_KAFKA_TLS_CLIENT_CERT`.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::kafka::{self, header};
use modelbus::bus::Bus;
use modelbus::example::Generator;

/// The test CA's certificate file; panics (fails the test) when it is missing.
fn ca() -> String {
    let ca = std::env::var("MODELBUS_TEST_KAFKA_TLS_CA").unwrap_or_else(|_| "/tmp/modelbus-test-tls/cert.pem".into());
    assert!(Path::new(&ca).exists(), "the TLS test CA {ca} is missing; `.ci/run` makes it");
    ca
}

/// The TLS endpoint and its CA file; panics (fails the test) when they are missing.
fn tls() -> (String, String) {
    (kafka::listening("MODELBUS_TEST_KAFKA_TLS", "127.0.0.1:9093", "the TLS Kafka endpoint"), ca())
}

/// The Kafka claims config pointed at the TLS endpoint, with `properties`
/// as `[bus.kafka.properties]`.
fn claims_over(n: &kafka::Names, addr: &str, properties: &str, bus_extra: &str) -> common::Claims {
    let plain = kafka::config_edit(n, "");
    let (addr, properties, bus_extra) = (addr.to_string(), properties.to_string(), bus_extra.to_string());
    common::claims(move |text| {
        let text = plain(text);
        let at = text.find("brokers = \"").expect("config_edit writes brokers");
        let end = at + text[at..].find('\n').unwrap();
        let out = format!(
            "{}brokers = \"{addr}\"\n{bus_extra}{}",
            &text[..at],
            text[end + 1..].replacen(
                "[bus.kafka.consumer_properties]",
                &format!("[bus.kafka.properties]\n{properties}\n\n[bus.kafka.consumer_properties]"),
                1
            )
        );
        assert!(out.contains("[bus.kafka.properties]"), "the config changed shape:\n{out}");
        out
    })
}

fn ssl_with(ca: &str) -> String {
    format!("\"security.protocol\" = \"ssl\"\n\"ssl.ca.location\" = \"{ca}\"")
}

/// The mutual-TLS endpoint and the client certificate and key it accepts.
fn mtls() -> (String, String, String) {
    let ca = ca();
    let file = |var: &str, default: &str| {
        let f = std::env::var(var).unwrap_or_else(|_| default.into());
        assert!(Path::new(&f).exists(), "the test client's {var} {f} is missing; `.ci/run` makes it");
        f
    };
    let cert = file("MODELBUS_TEST_KAFKA_TLS_CLIENT_CERT", "/tmp/modelbus-test-tls/client-cert.pem");
    let key = file("MODELBUS_TEST_KAFKA_TLS_CLIENT_KEY", "/tmp/modelbus-test-tls/client-key.pem");
    let addr = kafka::listening("MODELBUS_TEST_KAFKA_MTLS", "127.0.0.1:9094", "the mutual-TLS Kafka endpoint");
    let properties =
        format!("{}\n\"ssl.certificate.location\" = \"{cert}\"\n\"ssl.key.location\" = \"{key}\"", ssl_with(&ca));
    (addr, properties, ssl_with(&ca))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_scores_events_through_a_broker_reachable_only_over_tls() {
    let (addr, ca) = tls();
    scores_through("tls", &addr, &ssl_with(&ca)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_scores_events_through_a_broker_that_requires_a_client_certificate() {
    let (addr, with_cert, _) = mtls();
    scores_through("mtls", &addr, &with_cert).await;
}

/// A worker configured with `properties` scores 200 events through `addr`,
/// and this test's own client reaches it with the same properties.
async fn scores_through(tag: &str, addr: &str, properties: &str) {
    let n = kafka::names(tag);
    let c = claims_over(&n, addr, properties, "");
    // This test's own client goes through TLS too.
    let bus = Bus::open(&c.config).unwrap();
    bus.ensure_topic(&n.input, true).await.unwrap();
    let log = c.dir.path().join("w.log");
    let mut w = common::spawn_worker(&c.config_path, &log);
    assert!(common::wait_for_log(&log, "rebalance", Duration::from_secs(60)).await, "the worker did not join over TLS");

    let mut g = Generator::new(41, 0.0);
    let events: Vec<_> = (0..200).map(|_| g.claim(chrono::Utc::now())).collect();
    let want: HashSet<String> = events.iter().map(|e| e.id.clone()).collect();
    bus.publish(&n.input, events.iter().map(|e| e.to_record()).collect()).await.unwrap();
    let cause = |d: &modelbus::bus::Delivery| header(d, "ce_causationid");
    let results = kafka::read_covering(&bus, &n.results, &want, cause, Duration::from_secs(90)).await;
    common::signal(&w, libc::SIGTERM);
    assert!(w.wait().unwrap().success(), "the worker stops cleanly");
    let covered: HashSet<String> = results.iter().filter_map(cause).collect();
    assert_eq!(covered, want, "every event was scored through the TLS endpoint");
    assert!(results.iter().all(|d| header(d, "ce_type").as_deref() == Some("RiskScored")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brokers_certificate_is_verified_and_plaintext_gets_nowhere() {
    let (addr, _ca) = tls();
    // The system's CA bundle did not sign the test certificate.
    let system = "/etc/ssl/certs/ca-certificates.crt";
    assert!(Path::new(system).exists(), "{system} is missing (Debian's ca-certificates)");
    refused(&addr, &[("a CA that did not sign it", ssl_with(system)), ("plaintext", String::new())]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_certificate_the_mutual_tls_broker_refuses() {
    let (addr, _, without_cert) = mtls();
    refused(&addr, &[("TLS but no client certificate", without_cert)]).await;
}

/// With each of `attempts` (what, properties), publishing to `addr` fails.
async fn refused(addr: &str, attempts: &[(&str, String)]) {
    for (what, properties) in attempts {
        let n = kafka::names("tls-refused");
        let c = claims_over(&n, addr, properties, "request_timeout = \"4s\"\n");
        let bus = Bus::open(&c.config).unwrap();
        let t = Instant::now();
        let published = tokio::time::timeout(Duration::from_secs(60), async {
            bus.ensure_topic(&n.input, true).await?;
            bus.publish(&n.input, vec![Generator::new(5, 0.0).claim(chrono::Utc::now()).to_record()]).await
        })
        .await
        .unwrap_or_else(|_| panic!("with {what}, publishing neither succeeded nor failed within 60 s"));
        assert!(published.is_err(), "with {what}, the TLS endpoint accepted a publish: {published:?}");
        eprintln!("with {what}: refused after {:?}: {}", t.elapsed(), published.unwrap_err());
    }
}
