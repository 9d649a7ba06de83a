//! A running `mcp-zt serve` for tests, and MCP/HTTP clients that present certificates.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};

use crate::common::{bin, Env};

/// A server process, killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    /// The operations listener's address, when started with `--ops-listen`.
    pub ops: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `serve` on a free port with `extra` arguments and waits until it listens.
    pub fn start(env: &Env, extra: &[&str]) -> Server {
        Server::start_on(env, 0, extra)
    }

    /// Starts `serve` on `port` (0: a free one).
    pub fn start_on(env: &Env, port: u16, extra: &[&str]) -> Server {
        Server::start_with(env, port, extra, Stdio::null())
    }

    /// Starts `serve` on a free port with its stderr written to `file`.
    pub fn start_logging(env: &Env, extra: &[&str], file: &Path) -> Server {
        let log = std::fs::File::create(file).expect("stderr file");
        Server::start_with(env, 0, extra, Stdio::from(log))
    }

    fn start_with(env: &Env, port: u16, extra: &[&str], stderr: Stdio) -> Server {
        let mut child = Command::new(bin())
            .arg("--home")
            .arg(&env.home)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let ops = std::sync::Arc::new(std::sync::Mutex::new(None));
        let ops_seen = ops.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("ops ") {
                    *ops_seen.lock().expect("ops") = Some(addr.to_string());
                }
                if let Some(addr) = line.strip_prefix("listening ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("server did not start listening");
        // Printed before "listening".
        let ops = ops.lock().expect("ops").clone();
        let port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        Server { child, port, ops }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}/mcp", self.port)
    }
}

/// A rustls connector trusting only HOME's CA and presenting `name`'s certificate, for
/// connections driven by hand.
pub fn tls_connector(env: &Env, name: &str) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(env.home.join("ca.crt")).expect("ca"))
        .expect("root");
    let dir = env.home.join("clients");
    let certs = CertificateDer::pem_file_iter(dir.join(format!("{name}.crt")))
        .expect("cert")
        .collect::<Result<Vec<_>, _>>()
        .expect("cert");
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).expect("key");
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .expect("client cert");
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// The server name the test server's certificate carries.
pub fn localhost() -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::try_from("localhost").expect("name")
}

/// A reqwest client trusting only the CA, presenting `name`'s certificate (if any).
pub fn http_client(env: &Env, cert_key: Option<(&Path, &Path)>) -> reqwest::Client {
    let ca = std::fs::read(env.home.join("ca.crt")).expect("ca");
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca pem")])
        .timeout(Duration::from_secs(10));
    if let Some((cert, key)) = cert_key {
        let mut pem = std::fs::read(cert).expect("cert");
        pem.extend(std::fs::read(key).expect("key"));
        b = b.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    b.build().expect("client")
}

/// A client of `name` from HOME/clients.
pub fn client_of(env: &Env, name: &str) -> reqwest::Client {
    let dir = env.home.join("clients");
    http_client(
        env,
        Some((
            &dir.join(format!("{name}.crt")),
            &dir.join(format!("{name}.key")),
        )),
    )
}

/// An rmcp client session over mTLS.
pub async fn mcp(
    env: &Env,
    server: &Server,
    name: &str,
) -> Result<RunningService<RoleClient, ()>, String> {
    let transport = StreamableHttpClientTransport::with_client(
        client_of(env, name),
        StreamableHttpClientTransportConfig::with_uri(server.url()),
    );
    ().serve(transport).await.map_err(|e| e.to_string())
}

/// Polls the audit log until a line satisfies `pred` (5 s at most).
pub fn wait_audit(env: &Env, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    wait_audit_after(env, 0, pred)
}

/// Size of the audit log now: pass it to [`wait_audit_after`] to look at later lines only.
pub fn audit_len(env: &Env) -> usize {
    std::fs::read(env.home.join("audit.log")).map_or(0, |b| b.len())
}

/// Like [`wait_audit`], looking only at lines written after byte `offset`. Waits up to 15 s:
/// repeated refusals are coalesced and their `count` line comes when a 10 s window closes.
pub fn wait_audit_after(
    env: &Env,
    offset: usize,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let all = std::fs::read(env.home.join("audit.log")).unwrap_or_default();
        let text = String::from_utf8_lossy(all.get(offset..).unwrap_or_default()).into_owned();
        if let Some(v) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| pred(v))
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "audit line not found in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A raw JSON-RPC POST (no session).
pub async fn post(
    client: &reqwest::Client,
    server: &Server,
    body: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(server.url())
        .header("Accept", "application/json, text/event-stream")
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
}

/// A JSON-RPC POST with one extra header (a hostile Host or Origin, say).
pub async fn post_with_header(
    client: &reqwest::Client,
    server: &Server,
    header: (&str, &str),
    body: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(server.url())
        .header(header.0, header.1)
        .header("Accept", "application/json, text/event-stream")
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
}

pub const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#;
