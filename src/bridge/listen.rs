//! `connect --listen`: the bridge as a local streamable HTTP endpoint, for clients that speak
//! HTTP but cannot present a client certificate. Loopback only: anything that can reach this
//! port acts with the user's certificate, so it must never face a network.
//!
//! Loopback is not enough on its own: every local process (other users, containers sharing the
//! network namespace) can reach it. So the endpoint lives at a per-launch secret path,
//! `/<secret>/mcp`, with 256 random bits that only whoever reads the printed URL (or the
//! `--url-file`, mode 0600) knows. Every other path gets the same bare 404.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::StreamExt;
use http::{header, HeaderName, StatusCode};
use tokio::net::TcpListener;

use super::sse::EventLimit;
use super::{BridgeError, Credentials, EXIT_CERT_REFUSED, MAX_BODY};
use crate::fsutil;

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

/// Random bytes in the secret path segment.
const SECRET_BYTES: usize = 32;

/// The local endpoint's path: `/<secret>/mcp`, with a fresh secret for every launch.
#[derive(Clone)]
pub struct SecretPath(String);

impl SecretPath {
    /// A new path with 32 bytes from the CSPRNG, base64url without padding.
    pub fn generate() -> Result<SecretPath, BridgeError> {
        use base64::Engine;
        let mut secret = zeroize::Zeroizing::new([0u8; SECRET_BYTES]);
        crate::pki::fill_random(secret.as_mut())
            .map_err(|e| BridgeError::Setup(format!("random secret: {e}")))?;
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.as_ref());
        Ok(SecretPath(format!("/{encoded}/mcp")))
    }

    /// Whether a request path is this one. Compares every byte whatever the first difference,
    /// so the answer time does not tell an attacker how much of a guess was right.
    pub fn matches(&self, path: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), path.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
        std::hint::black_box(diff) == 0
    }

    /// The full URL for clients.
    pub fn url(&self, local: &SocketAddr) -> String {
        format!("http://{local}{}", self.0)
    }
}

impl std::fmt::Debug for SecretPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretPath(..)")
    }
}

struct Proxy {
    client: std::sync::RwLock<reqwest::Client>,
    url: String,
    path: SecretPath,
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
    // Before anything else: without the secret a request learns nothing, not even whether its
    // Host or Origin would have passed.
    if !p.path.matches(req.uri().path()) {
        return StatusCode::NOT_FOUND.into_response();
    }
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
        Ok(r) if r.status().is_redirection() => {
            let err = super::redirect_error(&r);
            eprintln!("mcp-zt connect: {err}");
            return gateway_error(&err);
        }
        Ok(r) => r,
        Err(e) => {
            let err = BridgeError::from_reqwest(&e);
            if err.is_fatal() {
                eprintln!("mcp-zt connect: {err} [{}]", p.who);
                let _ = p.exit.send(EXIT_CERT_REFUSED).await;
            }
            return gateway_error(&err);
        }
    };
    let mut out = Response::builder().status(resp.status().as_u16());
    for name in FORWARD_RESPONSE {
        if let Some(v) = resp.headers().get(*name) {
            out = out.header(HeaderName::from_static(name), v.clone());
        }
    }
    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    out.body(Body::from_stream(capped(resp, is_sse)))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

/// A JSON-RPC error for the client, as a 502.
fn gateway_error(err: &BridgeError) -> Response {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": null,
        "error": {"code": -32001, "message": format!("mcp-zt: {err}")}});
    (StatusCode::BAD_GATEWAY, axum::Json(body)).into_response()
}

/// The server's body, passed through as it arrives but cut off (the client sees the response
/// end in an error) once an event passes [`super::sse::MAX_EVENT`] or another body passes [`MAX_BODY`].
fn capped(
    resp: reqwest::Response,
    is_sse: bool,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    let mut events = EventLimit::default();
    let mut total = 0usize;
    resp.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        let over = if is_sse {
            events.feed(&chunk).err().map(|e| e.to_string())
        } else {
            total += chunk.len();
            (total > MAX_BODY)
                .then(|| format!("the server's answer is larger than {MAX_BODY} bytes"))
        };
        match over {
            Some(why) => {
                eprintln!("mcp-zt connect: {why}; response cut off");
                Err(std::io::Error::other(why))
            }
            None => Ok(chunk),
        }
    })
}

/// Where the listener is and how clients reach it.
pub struct ListenOptions {
    /// The loopback address to bind (port 0: a free one).
    pub addr: SocketAddr,
    /// Also write the full URL, secret included, to this file (mode 0600).
    pub url_file: Option<PathBuf>,
}

/// Removes the URL file at exit, unless another launch has replaced it with its own URL.
struct UrlFile {
    path: PathBuf,
    url: String,
}

impl UrlFile {
    fn write(path: &Path, url: &str) -> Result<UrlFile, BridgeError> {
        fsutil::write_atomic(path, format!("{url}\n").as_bytes(), fsutil::SECRET_MODE)
            .map_err(|e| BridgeError::Setup(format!("--url-file: {e}")))?;
        Ok(UrlFile {
            path: path.to_path_buf(),
            url: url.to_string(),
        })
    }
}

impl Drop for UrlFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path).is_ok_and(|t| t.trim_end() == self.url);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Ends on SIGTERM as on Ctrl-C, so the URL file is removed either way.
#[cfg(unix)]
async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

/// Ends on Ctrl-Break or when the console closes, as on Ctrl-C, so the URL file is removed
/// either way (Windows has no SIGTERM).
#[cfg(windows)]
async fn terminated() {
    use tokio::signal::windows::{ctrl_break, ctrl_close};
    match (ctrl_break(), ctrl_close()) {
        (Ok(mut brk), Ok(mut close)) => {
            tokio::select! {
                _ = brk.recv() => {}
                _ = close.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// Serves the local endpoint until the certificate is refused (exit 3) or a signal (exit 0).
pub async fn run(
    opts: ListenOptions,
    url: String,
    creds: &Credentials,
    auto_renew: bool,
) -> Result<i32, BridgeError> {
    let addr = opts.addr;
    check_loopback(&addr)?;
    let path = SecretPath::generate()?;
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
        path: path.clone(),
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
    // One handler for every path: a wrong secret and an unknown path get the same answer.
    let app = Router::new().fallback(forward).with_state(proxy);
    let local_url = path.url(&local);
    // Written before the listener answers, so whoever waits for the file can use it at once.
    let _url_file = match &opts.url_file {
        Some(f) => Some(UrlFile::write(f, &local_url)?),
        None => None,
    };
    eprintln!("mcp-zt connect: MCP clients connect to {local_url}");
    println!("listening {local}");
    let server = axum::serve(listener, app);
    tokio::select! {
        r = server => r.map(|_| 0).map_err(|e| BridgeError::Setup(e.to_string())),
        code = exit_rx.recv() => Ok(code.unwrap_or(EXIT_CERT_REFUSED)),
        _ = tokio::signal::ctrl_c() => Ok(0),
        _ = terminated() => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn event_stream(body: Vec<u8>, sse: bool) -> Vec<Result<bytes::Bytes, std::io::Error>> {
        let ct = if sse {
            "text/event-stream"
        } else {
            "application/json"
        };
        let resp = http::Response::builder()
            .header("content-type", ct)
            .body(body)
            .expect("response");
        let stream = capped(reqwest::Response::from(resp), sse);
        stream.collect::<Vec<_>>().await
    }

    #[tokio::test]
    async fn passed_through_bodies_are_cut_off_at_the_caps() {
        let max_event = super::super::sse::MAX_EVENT;
        let mut big = b"data: ".to_vec();
        big.extend(vec![b'x'; max_event]);
        let out = event_stream(big, true).await;
        assert!(out.last().expect("an item").is_err());
        // The same bytes split into events under the cap pass.
        let mut ok = Vec::new();
        for _ in 0..3 {
            ok.extend(b"data: ");
            ok.extend(vec![b'y'; max_event / 2]);
            ok.extend(b"\n\n");
        }
        assert!(event_stream(ok, true).await.iter().all(Result::is_ok));
        assert!(event_stream(vec![b' '; MAX_BODY], false)
            .await
            .iter()
            .all(Result::is_ok));
        let out = event_stream(vec![b' '; MAX_BODY + 1], false).await;
        assert!(out.last().expect("an item").is_err());
    }

    #[test]
    fn secret_paths_are_fresh_and_match_only_themselves() {
        let a = SecretPath::generate().expect("secret");
        let b = SecretPath::generate().expect("secret");
        assert_ne!(a.0, b.0);
        // 32 bytes in unpadded base64url: 43 characters between "/" and "/mcp".
        let secret = a.0.strip_prefix('/').and_then(|s| s.strip_suffix("/mcp"));
        let secret = secret.expect("shape /<secret>/mcp");
        assert_eq!(secret.len(), 43);
        assert!(secret
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert!(a.matches(&a.0));
        assert!(!a.matches(&b.0));
        assert!(!a.matches("/mcp"));
        assert!(!a.matches(&format!("{}/", a.0)));
        assert!(!format!("{a:?}").contains(secret));
        let local: SocketAddr = "127.0.0.1:7070".parse().expect("addr");
        assert_eq!(a.url(&local), format!("http://127.0.0.1:7070{}", a.0));
    }
}
