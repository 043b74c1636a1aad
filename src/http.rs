//! The worker process's HTTP endpoint (`[http] listen`), for autoscalers
//! (KEDA), scrapers and orchestrators:
//! - `/metrics`: Prometheus text format — consumer lag per partition,
//!   events received, results, retries and dead letters by stage and reason,
//!   in-flight events, latency quantiles;
//! - `/healthz`: the process is serving;
//! - `/readyz`: every model is loaded (the endpoint starts only after that)
//!   and every worker has joined its group.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::telemetry::{names, WorkerStats};

/// One worker's name and counters.
pub type Monitored = Vec<(String, Arc<WorkerStats>)>;

/// Binds `addr` (so a taken port fails start-up) and serves until `shutdown`.
pub async fn serve(addr: SocketAddr, workers: Monitored, shutdown: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let workers = Arc::new(workers);
    let (m, r) = (workers.clone(), workers);
    let app = Router::new()
        .route("/metrics", get(move || metrics(m.clone())))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(move || ready(r.clone())));
    tokio::spawn(async move {
        let stop = async move { shutdown.cancelled().await };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            tracing::error!(error = %e, "http endpoint stopped");
        }
    });
    tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
    Ok(bound)
}

async fn ready(workers: Arc<Monitored>) -> impl IntoResponse {
    let waiting: Vec<&str> =
        workers.iter().filter(|(_, s)| !s.joined.load(Ordering::Relaxed)).map(|(n, _)| n.as_str()).collect();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not joined yet: {}\n", waiting.join(", ")))
    }
}

async fn metrics(workers: Arc<Monitored>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], render(&workers))
}

/// Label values escaped as the text format requires.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub fn render(workers: &[(String, Arc<WorkerStats>)]) -> String {
    let mut o = String::new();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let counters: [(&str, &str, fn(&WorkerStats) -> u64); 5] = [
        (names::EVENTS_RECEIVED, "Events read from the bus.", |s| s.received.load(Ordering::Relaxed)),
        (names::RESULTS_EMITTED, "Results accepted by every sink.", |s| s.results.load(Ordering::Relaxed)),
        (names::DUPLICATES, "Inputs acknowledged without a result because dedup had seen them.", |s| {
            s.duplicates.load(Ordering::Relaxed)
        }),
        (names::BATCHES, "Inference batches run.", |s| s.batches.load(Ordering::Relaxed)),
        (names::PAUSES, "Times the bus consumer was paused because the in-flight limit was reached.", |s| {
            s.pauses.load(Ordering::Relaxed)
        }),
    ];
    for (name, help, get) in counters {
        family(&mut o, name, "counter", help);
        for (w, s) in workers {
            let _ = writeln!(o, "{name}{{worker=\"{}\"}} {}", esc(w), get(s));
        }
    }
    family(&mut o, names::IN_FLIGHT, "gauge", "Events read and not yet committed.");
    for (w, s) in workers {
        let _ = writeln!(o, "{}{{worker=\"{}\"}} {}", names::IN_FLIGHT, esc(w), s.in_flight.load(Ordering::Relaxed));
    }
    family(&mut o, names::READY, "gauge", "1 once the worker has joined its consumer group.");
    for (w, s) in workers {
        let _ = writeln!(o, "{}{{worker=\"{}\"}} {}", names::READY, esc(w), s.joined.load(Ordering::Relaxed) as u8);
    }
    family(&mut o, names::RETRIES, "counter", "Transient failures retried, by stage and reason.");
    for (w, s) in workers {
        for ((stage, code), n) in s.retried.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(o, "{}{{worker=\"{}\",stage=\"{}\",reason=\"{}\"}} {n}", names::RETRIES, esc(w), esc(stage), esc(code));
        }
    }
    family(&mut o, names::DEAD_LETTERS, "counter", "Events dead-lettered, by stage and reason.");
    for (w, s) in workers {
        for ((stage, code), n) in s.dead_letters.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(o, "{}{{worker=\"{}\",stage=\"{}\",reason=\"{}\"}} {n}", names::DEAD_LETTERS, esc(w), esc(stage), esc(code));
        }
    }
    family(&mut o, names::CONSUMER_LAG, "gauge", "Committed offset behind the high watermark, per owned partition.");
    for (w, s) in workers {
        for ((topic, p), n) in s.lag.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(o, "{}{{worker=\"{}\",topic=\"{}\",partition=\"{p}\"}} {n}", names::CONSUMER_LAG, esc(w), esc(topic));
        }
    }
    family(&mut o, names::END_TO_END_SECONDS, "summary", "Event time to result accepted by every sink.");
    for (w, s) in workers {
        let h = s.latency_us.lock().unwrap_or_else(|e| e.into_inner());
        for q in [0.5, 0.99, 0.999] {
            let v = h.value_at_quantile(q) as f64 / 1e6;
            let _ = writeln!(o, "{}{{worker=\"{}\",quantile=\"{q}\"}} {v}", names::END_TO_END_SECONDS, esc(w));
        }
        let _ = writeln!(o, "{}_count{{worker=\"{}\"}} {}", names::END_TO_END_SECONDS, esc(w), h.len());
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::TopicPartition;

    #[test]
    fn renders_lag_dead_letters_and_retries_with_labels() {
        let s = Arc::new(WorkerStats::default());
        s.received.store(10, Ordering::Relaxed);
        s.dead_lettered("decode", "malformed_json");
        s.retried("features", "store_unavailable");
        s.set_lag(vec![(TopicPartition { topic: "claims.created".into(), partition: 2 }, 42)]);
        let text = render(&[("risk".into(), s)]);
        assert!(text.contains("modelbus_events_received_total{worker=\"risk\"} 10"), "{text}");
        assert!(text.contains("modelbus_dead_letters_total{worker=\"risk\",stage=\"decode\",reason=\"malformed_json\"} 1"));
        assert!(text.contains("modelbus_retries_total{worker=\"risk\",stage=\"features\",reason=\"store_unavailable\"} 1"));
        assert!(text.contains("modelbus_consumer_lag{worker=\"risk\",topic=\"claims.created\",partition=\"2\"} 42"));
        assert!(text.contains("# TYPE modelbus_consumer_lag gauge"));
    }
}
