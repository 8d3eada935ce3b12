//! The HTTP surface besides the WebSocket: liveness, readiness, metrics.

use crate::gateway::Gateway;
use crate::readiness::Readiness;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use sqlx::PgPool;
use std::sync::OnceLock;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// `None` on a consumers-only node.
    pub gateway: Option<Gateway>,
    pub metrics: PrometheusHandle,
    pub readiness: Readiness,
}

/// The process-wide Prometheus recorder (installed once, however many hubs
/// a test process starts).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            for (name, buckets) in lad_consumers::metrics::HISTOGRAM_BUCKETS {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
                    .expect("bucket lists are not empty");
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Histogram samples wait in the recorder until they are folded
            // into buckets; without a scrape they would pile up, so fold
            // them on a clock (what the exporter's own install does).
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                })
                .expect("a thread for metrics upkeep");
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            lad_consumers::metrics::describe();
            handle
        })
        .clone()
}

pub fn router(state: AppState) -> Router {
    let base = Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state.clone())
        .merge(crate::dashboard::router());
    match &state.gateway {
        Some(g) => base.merge(g.router()),
        None => base,
    }
}

/// 200 when every check passes, else 503; the body names each check and
/// why it failed (see `readiness.rs`). `/healthz` stays a liveness check:
/// a node that is not ready must not be restarted for it.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let live_reader = state.gateway.as_ref().map(Gateway::is_ready);
    let report = state.readiness.check(&state.pool, live_reader).await;
    let ready = report.ready();
    metrics::gauge!(lad_consumers::metrics::READY).set(if ready { 1.0 } else { 0.0 });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report.to_json()))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}

/// Whether the hub at `addr` answers `GET /readyz` with 200: what tests,
/// benchmarks and deploy scripts wait for before they produce.
pub async fn probe_ready(addr: std::net::SocketAddr) -> bool {
    matches!(fetch(addr, "/readyz").await, Some((200, _)))
}

/// A bare `GET` of one of these endpoints (no HTTP client dependency for a
/// probe): the status and the body, or `None` if the hub did not answer.
pub async fn fetch(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// `lad-hub health`: whether the hub listening on `args.http_addr` is ready.
/// An unspecified listen address (`0.0.0.0`, `[::]`) is probed on loopback,
/// which is where a container's health check runs.
pub async fn health(args: &crate::config::HealthArgs) -> bool {
    let mut addr = args.http_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let wait = std::time::Duration::from_secs(args.timeout_secs.max(1));
    tokio::time::timeout(wait, probe_ready(addr))
        .await
        .unwrap_or(false)
}
