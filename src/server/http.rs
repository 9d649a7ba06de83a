//! The HTTP layer: `/mcp` served by rmcp behind a guard that re-checks revocation, validates
//! Origin and binds MCP sessions to the certificate that created them.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{header, Method, StatusCode};
use http_body_util::BodyExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::state::{AppState, ConnInfo};
use crate::audit::Event;
use crate::mcp::ZtMcp;

const SESSION_HEADER: &str = "mcp-session-id";

/// Router settings.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Host names (and host:port) accepted in the `Host` header.
    pub allowed_hosts: Vec<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Cancelled at shutdown: ends every MCP session and stream.
    pub shutdown: CancellationToken,
    /// rmcp's session store, shared with the sweep that forgets bindings of expired sessions.
    pub session_manager: Arc<LocalSessionManager>,
    /// Which transport serves `/mcp`.
    pub transport: super::native::Transport,
}

/// Builds the router: `/mcp` (MCP) and `/renew` (certificate renewal).
pub fn router(state: Arc<AppState>, hub: Arc<crate::mcp::hub::Hub>, s: &HttpSettings) -> Router {
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(s.allowed_hosts.clone())
        .with_max_request_body_bytes(s.max_body_bytes)
        .with_legacy_session_mode(true)
        // Stateless (2026-07-28) requests get plain JSON replies when nothing streams.
        .with_json_response(true)
        .with_cancellation_token(s.shutdown.child_token());
    let direct_hub = hub.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(ZtMcp::new(hub.clone())),
        s.session_manager.clone(),
        config,
    );
    let app = match s.transport {
        super::native::Transport::Rmcp => Router::new().nest_service("/mcp", mcp),
        super::native::Transport::Native => Router::new().nest_service(
            "/mcp",
            super::native::NativeMcp::new(
                direct_hub,
                state.clone(),
                s.session_manager.clone(),
                s.allowed_hosts.clone(),
                mcp,
            ),
        ),
    };
    let mut app = app
        .route("/renew", axum::routing::post(renew))
        .layer(middleware::from_fn_with_state(state.clone(), guard));
    if state.oauth.is_some() {
        // Outside the guard: a request without a certificate gets its identity from its
        // access token here, before anything but its headers was read. Without OAuth every
        // connection has a certificate and the tool call does not pass through this layer.
        app = app
            .layer(middleware::from_fn_with_state(
                state.clone(),
                super::oauth::bearer,
            ))
            .merge(super::oauth::router());
    }
    if state.console.is_some() {
        // Outside the guard: the console checks the certificate of each request itself and
        // answers with pages, not MCP errors.
        app = app.merge(crate::console::router());
    }
    if state.linker.is_some() {
        // Outside the guard and the bearer layer: each handler checks the certificate itself
        // (linking is for certificates, never tokens), and the client document is public.
        app = app.merge(super::link::router());
    }
    app.layer(middleware::from_fn_with_state(state.clone(), timed))
        .with_state(state)
}

/// Measures every request on the MCP port, refusals included.
async fn timed(State(state): State<Arc<AppState>>, req: Request<Body>, next: Next) -> Response {
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    state.metrics.request(started.elapsed());
    response
}

/// Largest CSR accepted by `/renew`.
const MAX_CSR_BYTES: usize = 16 * 1024;

/// `POST /renew`: the body is a PEM CSR for a new key; the caller's verified certificate says
/// who is renewing. Answers the new certificate (PEM).
async fn renew(
    State(state): State<Arc<AppState>>,
    axum::Extension(conn): axum::Extension<Arc<ConnInfo>>,
    body: Bytes,
) -> Response {
    let who = conn.identity.clone();
    let audit = |kind: &str| Event::new(kind).peer(conn.peer).who(&who);
    if who.oauth.is_some() {
        // Renewal needs the certificate itself (the bearer layer refuses it already).
        return plain(StatusCode::FORBIDDEN, "Forbidden");
    }
    if let Some(trust) = &who.trust {
        state.audit.log(audit("renewal_refused").reason(format!(
            "certificate of foreign trust {trust:?}: its own CA renews it"
        )));
        return plain(
            StatusCode::FORBIDDEN,
            "this certificate was issued by another CA (a foreign trust): renew it there",
        );
    }
    if body.len() > MAX_CSR_BYTES {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large");
    }
    let Ok(csr) = String::from_utf8(body.to_vec()) else {
        return plain(StatusCode::BAD_REQUEST, "the body must be a PEM CSR");
    };
    let now = crate::pki::now().unix_timestamp();
    // Reserve this holder's renewal slot before signing, so concurrent renewals of one name
    // (from different certificates) cannot all pass the rate limit; given back if this one
    // does not issue a new certificate.
    let last = {
        let mut m = state.last_renewal.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(who.name.clone(), now)
    };
    let give_back = |state: &AppState| {
        let mut m = state.last_renewal.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(&who.name) == Some(&now) {
            match last {
                Some(prev) => m.insert(who.name.clone(), prev),
                None => m.remove(&who.name),
            };
        }
    };
    let st = state.clone();
    let serial = who.serial.clone();
    let policy = state.renewal_policy;
    let result = tokio::task::spawn_blocking(move || {
        st.authority
            .renew(&st.signer(), &serial, &csr, &policy, last)
    })
    .await;
    match result {
        Ok(Ok(renewal)) => {
            let rec = renewal.record;
            if renewal.replayed {
                give_back(&state);
                state.audit.log(
                    audit("certificate_renewed")
                        .reason(format!("new serial {} (answer sent again)", rec.serial)),
                );
            } else {
                state
                    .audit
                    .log(audit("certificate_renewed").reason(format!("new serial {}", rec.serial)));
                let mut p = state
                    .pending_renewals
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                p.insert(
                    rec.serial.clone(),
                    (
                        who.serial.clone(),
                        rec.issued_at + crate::ca::RENEWAL_GRACE_SECS,
                    ),
                );
            }
            // The renewed certificate, then its intermediate (none for a single CA).
            let chain = state
                .signer()
                .find(rec.issuer.as_deref())
                .map(|ca| ca.chain_pem().to_string())
                .unwrap_or_default();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
                format!("{}{chain}", rec.cert_pem),
            )
                .into_response()
        }
        Ok(Err(e)) => {
            give_back(&state);
            state
                .audit
                .log(audit("renewal_refused").reason(e.to_string()));
            let status = match e {
                crate::ca::CaError::NotRenewable(_) => StatusCode::CONFLICT,
                crate::ca::CaError::RenewalRateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, e.to_string()).into_response()
        }
        Err(_) => {
            give_back(&state);
            plain(StatusCode::INTERNAL_SERVER_ERROR, "renewal failed")
        }
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    (status, body).into_response()
}

/// An answer of a session being sent; its drop (the body sent or abandoned) ends it.
struct Active {
    state: Arc<AppState>,
    session: String,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.state.sessions.end(&self.session);
    }
}

/// Runs before rmcp on every request.
async fn guard(State(state): State<Arc<AppState>>, req: Request<Body>, next: Next) -> Response {
    let Some(conn) = req.extensions().get::<Arc<ConnInfo>>().cloned() else {
        return plain(StatusCode::FORBIDDEN, "Forbidden");
    };
    let who = &conn.identity;
    let audit = |kind: &str| Event::new(kind).peer(conn.peer).who(who);

    // Every request is checked against its connection's certificate, not just the handshake.
    if state.revoked.contains(&who.serial) {
        state
            .audit
            .log(audit("request_rejected").reason("certificate revoked"));
        state.conns.cut(&who.serial);
        return plain(StatusCode::FORBIDDEN, "Forbidden");
    }
    // A foreign identity holds only while its trust is configured and its CRL fresh.
    if let Some(trust) = &who.trust {
        if let Err(why) = state
            .verifier
            .foreign_in_force(trust, crate::pki::now().unix_timestamp())
        {
            state.audit.log(audit("request_rejected").reason(why));
            state.conns.cut(&who.serial);
            return plain(StatusCode::FORBIDDEN, "Forbidden");
        }
    }
    if crate::pki::now().unix_timestamp() > who.not_after {
        state
            .audit
            .log(audit("request_rejected").reason("certificate expired"));
        return plain(StatusCode::FORBIDDEN, "Forbidden");
    }

    // MCP transport spec: an invalid Origin gets 403 (DNS rebinding, browser pages).
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .is_ok_and(|o| state.allowed_origins.iter().any(|a| a == o));
        if !ok {
            state.audit.log(audit("request_rejected").reason(format!(
                "origin {:?} not allowed",
                origin.to_str().unwrap_or("?")
            )));
            return plain(StatusCode::FORBIDDEN, "Forbidden: Origin not allowed");
        }
    }

    // A session id is valid only with the certificate that created it.
    let session = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(sid) = &session {
        if !state.sessions.owned_by(sid, &who.serial) {
            state.audit.log(
                audit("session_rejected")
                    .reason("session id unknown or created by another certificate"),
            );
            // Same answer as for a session that does not exist.
            return plain(StatusCode::NOT_FOUND, "Not Found: Session not found");
        }
        state.sessions.touch(sid);
    }

    let method = req.method().clone();
    // A POST body that passed only the quick check, kept (a reference count) for the full one.
    let mut posted: Option<Bytes> = None;
    // POST bodies are read here, within the limit, so that oversized ones get 413 after the body
    // was consumed (clients see the status, not a reset stream) and malformed JSON-RPC gets a
    // JSON-RPC error instead of a transport error.
    let req = if method == Method::POST && req.uri().path().starts_with("/mcp") {
        let (parts, body) = req.into_parts();
        let bytes = match read_limited(body, state.max_body_bytes).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                state
                    .audit
                    .log(audit("request_rejected").reason("request body too large"));
                return plain(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large");
            }
            Err(BodyError::Read) => return plain(StatusCode::BAD_REQUEST, "Bad Request"),
        };
        // The common case pays one cheap pass here; rmcp parses the message fully once.
        let plausible = plausible_jsonrpc(&bytes);
        if !plausible {
            if let Err(resp) = check_jsonrpc(&bytes) {
                state
                    .audit
                    .log(audit("request_rejected").reason("malformed JSON-RPC"));
                return *resp;
            }
        }
        posted = plausible.then(|| bytes.clone());
        Request::from_parts(parts, Body::from(bytes))
    } else {
        req
    };
    // With mcp-zt keeping the sessions' idle time, an answer still being sent (a long call, an
    // open event stream) keeps its session alive until it ends.
    let active = match &session {
        Some(sid) if state.sessions.tracking() => {
            state.sessions.begin(sid);
            Some(Active {
                state: state.clone(),
                session: sid.clone(),
            })
        }
        _ => None,
    };
    let mut response = next.run(req).await;
    if let Some(active) = active {
        let (parts, body) = response.into_parts();
        let body = body.into_data_stream().map(move |chunk| {
            let _ = &active;
            chunk
        });
        response = Response::from_parts(parts, Body::from_stream(body));
    }
    // rmcp refuses a body it cannot parse with 415 and plain text, and checks Host, Accept and
    // the session before parsing: a malformed body that rmcp refused for any reason gets the
    // JSON-RPC error of the full check, as when that check ran first.
    if response.status().is_client_error() {
        if let Some(Err(resp)) = posted.as_deref().map(check_jsonrpc) {
            state
                .audit
                .log(audit("request_rejected").reason("malformed JSON-RPC"));
            return *resp;
        }
    }

    if session.is_none() {
        if let Some(new) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            if !state.sessions.bind(new, &who.serial) {
                // Unbound, the new session is unusable; rmcp expires it on its own.
                state.audit.log(audit("request_rejected").reason(format!(
                    "session limit reached ({} in all, {} per certificate)",
                    crate::server::state::MAX_SESSIONS,
                    crate::server::state::MAX_SESSIONS_PER_CERT
                )));
                return plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
            }
            state.audit.log(audit("session_created"));
        }
    }
    if method == Method::DELETE && response.status().is_success() {
        if let Some(sid) = &session {
            state.sessions.unbind(sid);
        }
        // The session is gone and there is nothing more to say: 204, the status clients expect
        // for a completed DELETE (rmcp answers 202, which the Python SDK logs as a failure).
        if response.status() == StatusCode::ACCEPTED {
            *response.status_mut() = StatusCode::NO_CONTENT;
        }
    }
    response
}

enum BodyError {
    TooLarge,
    Read,
}

/// Reads a body of at most `limit` bytes. A larger one is drained (up to 16 times the limit, so
/// the client gets to read the 413) and refused.
async fn read_limited(mut body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Read)?;
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            if total > limit.saturating_mul(16) {
                return Err(BodyError::TooLarge);
            }
            if total <= limit {
                buf.extend_from_slice(&data);
            }
        }
    }
    if total > limit {
        return Err(BodyError::TooLarge);
    }
    Ok(buf.freeze())
}

fn jsonrpc_error(code: i64, message: &str, id: serde_json::Value) -> Box<Response> {
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}
    });
    Box::new((StatusCode::BAD_REQUEST, axum::Json(body)).into_response())
}

/// The envelope every JSON-RPC 2.0 message from a client has; parameters and results are
/// skipped, not built.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: &'a str,
    method: Option<serde::de::IgnoredAny>,
    result: Option<serde::de::IgnoredAny>,
    error: Option<serde::de::IgnoredAny>,
}

/// One pass over the bytes, building nothing: whether they look like a single JSON-RPC 2.0
/// request, notification or response. `false` sends the body to [`check_jsonrpc`] at once
/// (batches, escaped member names and every malformed body); `true` lets rmcp parse it, and a
/// body rmcp then cannot parse gets [`check_jsonrpc`]'s answer after all.
pub fn plausible_jsonrpc(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Envelope>(bytes).is_ok_and(|e| {
        e.jsonrpc == "2.0" && (e.method.is_some() || e.result.is_some() || e.error.is_some())
    })
}

/// Refuses bytes that are not one JSON-RPC message (or batch) a client may send: -32700 for
/// bytes that are not JSON (invalid UTF-8 included), -32600 for JSON that is not JSON-RPC.
///
/// Valid messages are parsed once, straight into rmcp's type; only a refused one is parsed again
/// as plain JSON, to tell the two errors apart and to echo its id.
pub fn check_jsonrpc(bytes: &[u8]) -> Result<(), Box<Response>> {
    if serde_json::from_slice::<rmcp::model::ClientJsonRpcMessage>(bytes).is_ok() {
        return Ok(());
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|_| jsonrpc_error(-32700, "Parse error", serde_json::Value::Null))?;
    let id = value.get("id").cloned().unwrap_or(serde_json::Value::Null);
    Err(jsonrpc_error(-32600, "Invalid Request", id))
}

/// Every `every`: forgets the bindings of sessions rmcp no longer has (it closes a session idle
/// for its keep-alive, 5 minutes, and has no hook to say so), so the bindings stay bounded by the
/// live sessions. With `own_idle` (the native transport, where rmcp does not see the calls
/// answered directly and so keeps no idle timer), this sweep ends sessions without a request for
/// that long itself.
pub async fn sweep_sessions(
    state: Arc<AppState>,
    manager: Arc<LocalSessionManager>,
    every: std::time::Duration,
    own_idle: Option<std::time::Duration>,
    shutdown: CancellationToken,
) {
    let mut orphans = std::collections::HashSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Some(idle) = own_idle {
            for session in state.sessions.take_idle(idle) {
                close(&manager, &session).await;
            }
        }
        // Bound first, live second: a session bound in between is in both.
        let bound = state.sessions.sessions();
        let live: std::collections::HashSet<String> = manager
            .sessions
            .read()
            .await
            .keys()
            .map(|id| id.to_string())
            .collect();
        for session in bound.iter().filter(|s| !live.contains(*s)) {
            state.sessions.unbind(session);
        }
        if own_idle.is_some() {
            // rmcp keeps no idle timer here: a session it holds that no certificate owns (its
            // binding refused at the session limit, or dropped at revocation) is closed once it
            // was seen unbound on two sweeps in a row (a session just created is bound within
            // its first request).
            let bound: std::collections::HashSet<String> =
                state.sessions.sessions().into_iter().collect();
            let unbound: std::collections::HashSet<String> =
                live.into_iter().filter(|s| !bound.contains(s)).collect();
            for session in unbound.intersection(&orphans) {
                close(&manager, session).await;
            }
            orphans = unbound;
        }
    }
}

/// Closes rmcp's session `id`, giving up after a few seconds (a worker stuck on a client that
/// stopped reading must not stall the sweep).
async fn close(manager: &LocalSessionManager, id: &str) {
    use rmcp::transport::streamable_http_server::SessionManager;
    let id = id.into();
    let closing = manager.close_session(&id);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), closing).await;
}

#[cfg(test)]
mod tests {
    use super::{check_jsonrpc, plausible_jsonrpc};

    #[test]
    fn the_quick_check_passes_messages_and_leaves_the_rest_to_the_full_one() {
        for ok in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":"a","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":2,"error":{"code":-1,"message":"x"}}"#,
        ] {
            assert!(plausible_jsonrpc(ok.as_bytes()), "{ok}");
            assert!(check_jsonrpc(ok.as_bytes()).is_ok(), "{ok}");
        }
        for not in [
            r#"{"jsonrpc":"#,
            r#"{"hello":"world"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
        ] {
            assert!(!plausible_jsonrpc(not.as_bytes()), "{not}");
        }
        assert!(!plausible_jsonrpc(b"\"\xff\""), "invalid UTF-8");
        // Invalid UTF-8 inside a skipped value passes the quick check; the full one refuses it.
        let bad = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"a\":\"\xff\"}}";
        if plausible_jsonrpc(bad) {
            assert!(check_jsonrpc(bad).is_err());
        }
        // Plausible but not a message rmcp can take: the full check (run after rmcp's 415)
        // refuses it.
        let odd = r#"{"jsonrpc":"2.0","id":1,"method":5}"#;
        assert!(plausible_jsonrpc(odd.as_bytes()));
        assert!(check_jsonrpc(odd.as_bytes()).is_err());
    }
}
