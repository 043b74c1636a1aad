//! The worker process's HTTP endpoint (`[http] listen`), for autoscalers
//! (KEDA), scrapers and orchestrators:
//! - `/metrics`: Prometheus text format — consumer lag per partition,
//!   events received, results, retries and dead letters by stage and reason,
//!   in-flight events, latency quantiles;
//! - `/healthz`: the process is serving;
//! - `/readyz`: every model is loaded (the endpoint starts only after that),
//!   every worker has joined its group, and each one's bus answers.
//!
//! Served by hyper directly rather than `axum::serve`, which has neither of
//! the [`Limits`] that keep slow or numerous clients from holding it. There
//! is deliberately no whole-request timeout: later endpoints will long-poll.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::telemetry::{names, WorkerStats};

/// One worker's name and counters.
pub type Monitored = Vec<(String, Arc<WorkerStats>)>;

/// What one client, or many, may hold of the endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send a request line and headers, and
    /// how long a kept-alive connection may sit idle before its next
    /// request: a client trickling a byte at a time (slowloris) is cut off.
    pub header_read_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog
    /// until one closes.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        // A scraper sends its request at once and comes back every 15 s or
        // so; a few hundred connections is far more than any deployment scrapes with.
        Limits { header_read_timeout: Duration::from_secs(10), max_connections: 256 }
    }
}

/// Binds `addr` (so a taken port fails start-up) and serves until `shutdown`.
pub async fn serve(addr: SocketAddr, workers: Monitored, shutdown: CancellationToken) -> std::io::Result<SocketAddr> {
    serve_with(addr, workers, shutdown, Limits::default()).await
}

/// [`serve`] with explicit [`Limits`].
pub async fn serve_with(
    addr: SocketAddr,
    workers: Monitored,
    shutdown: CancellationToken,
    limits: Limits,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(accept_loop(listener, router(workers), shutdown, limits));
    tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
    Ok(bound)
}

fn router(workers: Monitored) -> Router {
    let workers = Arc::new(workers);
    let (m, r) = (workers.clone(), workers);
    Router::new()
        .route("/metrics", get(move || metrics(m.clone())))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(move || ready(r.clone())))
}

/// Accepts a connection only once there is a permit for it, so at most
/// `max_connections` are served and the rest wait in the kernel's backlog;
/// stops accepting at `shutdown`.
async fn accept_loop(listener: TcpListener, app: Router, shutdown: CancellationToken, limits: Limits) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, typically: give some back first.
                    tracing::warn!(error = %e, "http endpoint cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        tokio::spawn(serve_connection(stream, app.clone(), limits, shutdown.clone(), permit));
    }
}

/// Serves one connection's requests; at `shutdown` it finishes the request
/// in progress, if any, and closes. The permit is returned when it ends.
async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        // A client that timed out or went away: nothing the process must know.
        tracing::debug!(error = %e, "http connection ended");
    }
}

async fn ready(workers: Arc<Monitored>) -> impl IntoResponse {
    let waiting: Vec<String> = workers
        .iter()
        .filter(|(_, s)| !s.ready())
        .map(|(n, s)| match s.joined.load(Ordering::Relaxed) {
            false => format!("{n} (not joined yet)"),
            true => format!("{n} (bus unreachable)"),
        })
        .collect();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", waiting.join(", ")))
    }
}

async fn metrics(workers: Arc<Monitored>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], render(&workers))
}

/// Label values escaped as the text format requires.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A counter family: its name, its help text, and how to read it.
type Counter = (&'static str, &'static str, fn(&WorkerStats) -> u64);

pub fn render(workers: &[(String, Arc<WorkerStats>)]) -> String {
    let mut o = String::new();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let counters: [Counter; 7] = [
        (names::EVENTS_RECEIVED, "Events read from the bus.", |s| s.received.load(Ordering::Relaxed)),
        (names::RESULTS_EMITTED, "Results accepted by every sink.", |s| s.results.load(Ordering::Relaxed)),
        (names::DUPLICATES, "Inputs acknowledged without a result because dedup had seen them.", |s| {
            s.duplicates.load(Ordering::Relaxed)
        }),
        (names::BATCHES, "Inference batches run.", |s| s.batches.load(Ordering::Relaxed)),
        (names::PAUSES, "Times the bus consumer was paused because the in-flight limit was reached.", |s| {
            s.pauses.load(Ordering::Relaxed)
        }),
        (
            names::WITHOUT_TRACE,
            "Events that came without trace context; a trace id was derived from their identity.",
            |s| s.without_trace.load(Ordering::Relaxed),
        ),
        (names::WITHOUT_TIME, "Events that came without `time`; they are not in the latency figures.", |s| {
            s.without_time.load(Ordering::Relaxed)
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
    family(&mut o, names::READY, "gauge", "1 while the worker has joined its consumer group and its bus answers.");
    for (w, s) in workers {
        let _ = writeln!(o, "{}{{worker=\"{}\"}} {}", names::READY, esc(w), s.ready() as u8);
    }
    family(&mut o, names::RETRIES, "counter", "Transient failures retried, by stage and reason.");
    for (w, s) in workers {
        for ((stage, code), n) in s.retried.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                o,
                "{}{{worker=\"{}\",stage=\"{}\",reason=\"{}\"}} {n}",
                names::RETRIES,
                esc(w),
                esc(stage),
                esc(code)
            );
        }
    }
    family(&mut o, names::DEAD_LETTERS, "counter", "Events dead-lettered, by stage and reason.");
    for (w, s) in workers {
        for ((stage, code), n) in s.dead_letters.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                o,
                "{}{{worker=\"{}\",stage=\"{}\",reason=\"{}\"}} {n}",
                names::DEAD_LETTERS,
                esc(w),
                esc(stage),
                esc(code)
            );
        }
    }
    family(&mut o, names::CONSUMER_LAG, "gauge", "Committed offset behind the high watermark, per owned partition.");
    for (w, s) in workers {
        for ((topic, p), n) in s.lag.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                o,
                "{}{{worker=\"{}\",topic=\"{}\",partition=\"{p}\"}} {n}",
                names::CONSUMER_LAG,
                esc(w),
                esc(topic)
            );
        }
    }
    type BreakerGauge = (&'static str, &'static str, &'static str, fn(&crate::worker::breaker::BreakerStats) -> f64);
    let breaker_families: [BreakerGauge; 3] = [
        (names::BREAKER_OPEN, "gauge", "1 while the dependency's circuit breaker is open (consumption paused).", |b| {
            b.open.load(Ordering::Relaxed) as f64
        }),
        (names::BREAKER_OPENINGS, "counter", "Times the dependency's circuit breaker opened.", |b| {
            b.openings.load(Ordering::Relaxed) as f64
        }),
        (
            names::BREAKER_OPEN_SECONDS,
            "counter",
            "Time the dependency's circuit breaker spent open, spells that ended.",
            |b| b.open_ms.load(Ordering::Relaxed) as f64 / 1e3,
        ),
    ];
    for (name, kind, help, read) in breaker_families {
        family(&mut o, name, kind, help);
        for (w, s) in workers {
            for (dep, b) in s.breakers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                let _ = writeln!(o, "{name}{{worker=\"{}\",dependency=\"{}\"}} {}", esc(w), esc(dep), read(b));
            }
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
        assert!(
            text.contains("modelbus_dead_letters_total{worker=\"risk\",stage=\"decode\",reason=\"malformed_json\"} 1")
        );
        assert!(
            text.contains("modelbus_retries_total{worker=\"risk\",stage=\"features\",reason=\"store_unavailable\"} 1")
        );
        assert!(text.contains("modelbus_consumer_lag{worker=\"risk\",topic=\"claims.created\",partition=\"2\"} 42"));
        assert!(text.contains("# TYPE modelbus_consumer_lag gauge"));
    }

    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: Limits) -> (SocketAddr, CancellationToken) {
        let token = CancellationToken::new();
        let addr = serve_with("127.0.0.1:0".parse().unwrap(), Vec::new(), token.clone(), limits).await.unwrap();
        (addr, token)
    }

    /// Everything the server sends until it closes the connection.
    async fn read_to_close(stream: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
        read.expect("the server closed the connection").expect("read");
        String::from_utf8_lossy(&buf).into_owned()
    }

    async fn get_healthz(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        read_to_close(&mut s).await
    }

    const SHORT: Limits = Limits { header_read_timeout: Duration::from_millis(300), max_connections: 256 };

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_disconnected() {
        let (addr, token) = start(SHORT).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        let got = read_to_close(&mut slow).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(3), "{waited:?}");
        assert!(!got.contains("200 OK"), "{got}");

        let ok = get_healthz(addr).await;
        assert!(ok.starts_with("HTTP/1.1 200 OK") && ok.ends_with("ok\n"), "{ok}");
        token.cancel();
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_wait_for_one_to_close() {
        let (addr, token) = start(Limits { max_connections: 1, ..SHORT }).await;
        // Holds the only connection until the header timeout closes it.
        let _idle = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let ok = get_healthz(addr).await;
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
        assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
        token.cancel();
    }
}
