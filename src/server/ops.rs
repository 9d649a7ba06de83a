//! The operations listener (`--ops-listen`): plain HTTP for monitoring and relying parties,
//! apart from the mTLS MCP port.
//!
//! - `/metrics`: Prometheus metrics (OpenMetrics text).
//! - `/healthz`: the process is up.
//! - `/readyz`: fully ready: the ledger is reachable and revocations are fresh.
//! - `/serving`: new handshakes are admitted (in sync, or the ledger lost for less than
//!   `--revocation-max-stale`): what a load balancer should check, so that a database outage
//!   does not take every replica out of rotation while they keep serving, and a replica that
//!   went stale does.
//! - `/crl`: the current CRL in DER, for relying parties that fetch it over HTTP (the URL
//!   `ca init --crl-url` names); `/crl/ID`: the CRL of intermediate ID, which is what the
//!   certificates it signed name as their CRL distribution point (`--crl-url` plus `/ID`).
//!
//! Nothing here needs a client certificate and nothing here is secret, but it tells who is
//! connected (names, roles in labels are policy roles only) and how busy the server is: it
//! binds to loopback unless `--ops-public` says otherwise.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::metrics::Snapshot;
use super::state::AppState;

/// Serves the operations endpoints on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/serving", get(serving))
        .route("/crl", get(crl))
        .route("/crl/{id}", get(crl_of))
        .with_state(state);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
}

/// The gauges as they are now.
pub fn snapshot(state: &AppState) -> Snapshot {
    let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    Snapshot {
        connections: n(state.conns.count()),
        sessions: n(state.sessions.len()),
        revoked: n(state.revoked.len()),
        ledger_up: i64::from(state.replica.ledger_up()),
        revocations_stale_ms: state.replica.stale_ms(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let body = state.metrics.render(snapshot(&state));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if !state.replica.fresh() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: revocations not synced for {} ms (ledger unreachable); new \
                 handshakes are refused\n",
                state.replica.stale_ms()
            ),
        )
            .into_response();
    }
    if !state.replica.ledger_up() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: the ledger is unreachable (serving with known revocations for {} ms)\n",
                state.replica.stale_ms()
            ),
        )
            .into_response();
    }
    "ready\n".into_response()
}

async fn serving(State(state): State<Arc<AppState>>) -> Response {
    if state.replica.fresh() {
        return "serving\n".into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "refusing new handshakes: revocations not synced for {} ms\n",
            state.replica.stale_ms()
        ),
    )
        .into_response()
}

async fn crl(State(state): State<Arc<AppState>>) -> Response {
    crl_file(&state.authority.home().crl()).await
}

/// The CRL of one intermediate, by its id (the serial its certificates name in their CRL
/// distribution point): served for as long as mcp-zt keeps publishing it, which is while the
/// intermediate's key is loaded (until it expires), retired intermediates included.
async fn crl_of(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let well_formed = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return (StatusCode::NOT_FOUND, "no such CRL\n").into_response();
    }
    let path = state.authority.home().intermediate_crl_of(&id);
    if !path.is_file() {
        return (StatusCode::NOT_FOUND, "no such CRL\n").into_response();
    }
    crl_file(&path).await
}

/// A PEM CRL file, served as DER.
async fn crl_file(path: &std::path::Path) -> Response {
    let pem = match tokio::fs::read(path).await {
        Ok(p) => p,
        Err(_) => {
            return (StatusCode::SERVICE_UNAVAILABLE, "no CRL published yet\n").into_response()
        }
    };
    use rustls::pki_types::pem::PemObject;
    match rustls::pki_types::CertificateRevocationListDer::from_pem_slice(&pem) {
        Ok(der) => (
            [(header::CONTENT_TYPE, "application/pkix-crl")],
            der.as_ref().to_vec(),
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the CRL file does not parse\n",
        )
            .into_response(),
    }
}
