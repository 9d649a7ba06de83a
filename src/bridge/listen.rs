//! `connect --listen`: the bridge as a local streamable HTTP endpoint, for clients that speak
//! HTTP but cannot present a client certificate. Loopback only: anything that can reach this
//! port acts with the user's certificate, so it must never face a network.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::TryStreamExt;
use http::{header, HeaderName, StatusCode};
use tokio::net::TcpListener;

use super::{BridgeError, Credentials, EXIT_CERT_REFUSED};

/// Request headers passed to the server.
const FORWARD_REQUEST: &[&str] = &[
    "accept",
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "mcp-method",
    "mcp-name",
];
/// Response headers passed back.
const FORWARD_RESPONSE: &[&str] = &[
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "cache-control",
];

struct Proxy {
    client: std::sync::RwLock<reqwest::Client>,
    url: String,
    local: SocketAddr,
    who: String,
    exit: tokio::sync::mpsc::Sender<i32>,
}

/// Refuses addresses that are not loopback.
pub fn check_loopback(addr: &SocketAddr) -> Result<(), BridgeError> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(BridgeError::Setup(format!(
            "--listen {addr}: only loopback addresses (127.0.0.1, ::1) are allowed; whoever reaches this port uses your certificate"
        )))
    }
}

/// Whether `value` names this bridge's own loopback address (`prefix` is "" for a Host header,
/// "http://" for an Origin).
fn is_local(p: &Proxy, prefix: &str, value: &str) -> bool {
    let port = p.local.port();
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .any(|h| value.eq_ignore_ascii_case(&format!("{prefix}{h}:{port}")))
}

fn host_ok(p: &Proxy, host: Option<&str>) -> bool {
    host.is_some_and(|h| is_local(p, "", h))
}

/// No Origin (a non-browser client) is fine; a browser page must be served from here.
fn origin_ok(p: &Proxy, origin: Option<&str>) -> bool {
    origin.is_none_or(|o| is_local(p, "http://", o))
}

async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !host_ok(&p, host) {
        return (StatusCode::FORBIDDEN, "Forbidden: Host not allowed").into_response();
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !origin_ok(&p, origin) {
        return (StatusCode::FORBIDDEN, "Forbidden: Origin not allowed").into_response();
    }
    let client = p.client.read().unwrap_or_else(|e| e.into_inner()).clone();
    let mut rb = client.request(req.method().clone(), &p.url);
    for name in FORWARD_REQUEST {
        for v in headers.get_all(*name) {
            rb = rb.header(*name, v.clone());
        }
    }
    let body = match axum::body::to_bytes(req.into_body(), 16 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large").into_response(),
    };
    let resp = match rb.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            let err = BridgeError::from_reqwest(&e);
            let body = serde_json::json!({"jsonrpc": "2.0", "id": null,
                "error": {"code": -32001, "message": format!("mcp-zt: {err}")}});
            if err.is_fatal() {
                eprintln!("mcp-zt connect: {err} [{}]", p.who);
                let _ = p.exit.send(EXIT_CERT_REFUSED).await;
            }
            return (StatusCode::BAD_GATEWAY, axum::Json(body)).into_response();
        }
    };
    let mut out = Response::builder().status(resp.status().as_u16());
    for name in FORWARD_RESPONSE {
        if let Some(v) = resp.headers().get(*name) {
            out = out.header(HeaderName::from_static(name), v.clone());
        }
    }
    let stream = resp.bytes_stream().map_err(std::io::Error::other);
    out.body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

/// Serves the local endpoint until the certificate is refused (exit 3) or a signal (exit 0).
pub async fn run(
    addr: SocketAddr,
    url: String,
    creds: &Credentials,
    auto_renew: bool,
) -> Result<i32, BridgeError> {
    check_loopback(&addr)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| BridgeError::Setup(format!("listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| BridgeError::Setup(e.to_string()))?;
    let (exit_tx, mut exit_rx) = tokio::sync::mpsc::channel(4);
    let proxy = Arc::new(Proxy {
        client: std::sync::RwLock::new(creds.client()?),
        url: url.clone(),
        local,
        who: creds.describe(),
        exit: exit_tx,
    });
    if auto_renew {
        let p = proxy.clone();
        tokio::spawn(super::renew::renew_loop(creds.clone(), url, move |c| {
            *p.client.write().unwrap_or_else(|e| e.into_inner()) = c.client()?;
            Ok(())
        }));
    }
    let app = Router::new()
        .route("/mcp", axum::routing::any(forward))
        .with_state(proxy);
    eprintln!("mcp-zt connect: local MCP endpoint http://{local}/mcp (loopback only)");
    println!("listening {local}");
    let server = axum::serve(listener, app);
    tokio::select! {
        r = server => r.map(|_| 0).map_err(|e| BridgeError::Setup(e.to_string())),
        code = exit_rx.recv() => Ok(code.unwrap_or(EXIT_CERT_REFUSED)),
        _ = tokio::signal::ctrl_c() => Ok(0),
    }
}
