//! The reference server of `scripts/bench.sh`: rmcp with nothing of mcp-zt around it. One tool,
//! `whoami`, answering a fixed identity of the size mcp-zt's own `whoami` answers, served with
//! mcp-zt's transport settings (legacy sessions on, JSON replies, rmcp's local session manager,
//! TCP_NODELAY on every accepted socket, hyper-util's HTTP/1.1 and HTTP/2 server) but without
//! client certificates, revocation checks, policy, audit or rate limits. What mcp-zt costs per
//! call above this is the price of those.
//!
//! Usage:
//!   bare_rmcp --listen 127.0.0.1:0 --tls CERT KEY   https (TLS 1.3, no client authentication)
//!   bare_rmcp --listen 127.0.0.1:0                  plain http (an upstream for the gateway)
//!   bare_rmcp --stdio                               the same tool over stdio
//!
//! The HTTP modes print `listening 127.0.0.1:PORT` on stdout once they accept connections.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: bare_rmcp --listen HOST:PORT [--tls CERT KEY] | bare_rmcp --stdio";

/// The one tool's handler; stateless, so one value serves every session.
#[derive(Clone)]
struct Bare {
    tools: Arc<Vec<Tool>>,
    /// The `whoami` answer, built once: the same name, role, serial, SPIFFE ID and expiry
    /// fields mcp-zt returns, with values of the same lengths.
    answer: Arc<Value>,
}

impl Bare {
    fn new() -> Bare {
        let schema: JsonObject = match json!({"type": "object", "properties": {}}) {
            Value::Object(m) => m,
            _ => JsonObject::new(),
        };
        let whoami = Tool::new(
            "whoami",
            "Your identity as the server sees it: name, role, certificate serial, SPIFFE ID.",
            Arc::new(schema),
        );
        let answer = json!({
            "name": "bench", "role": "viewer",
            "serial": "5f1c2a9e0b7d4c3a8e6f1029384756ab",
            "spiffe_id": "spiffe://mcp-zt.local/client/bench",
            "not_after": "2027-01-01T00:00:00Z",
        });
        Bare {
            tools: Arc::new(vec![whoami]),
            answer: Arc::new(answer),
        }
    }
}

impl ServerHandler for Bare {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("bare-rmcp", env!("CARGO_PKG_VERSION")))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name != "whoami" {
            return Err(ErrorData::invalid_params("tool not found", None));
        }
        let v = self.answer.as_ref().clone();
        let mut result = CallToolResult::success(vec![ContentBlock::text(v.to_string())]);
        result.structured_content = Some(v);
        Ok(result.into())
    }
}

enum Mode {
    Stdio,
    Http {
        listen: String,
        tls: Option<(PathBuf, PathBuf)>,
    },
}

fn parse_args() -> Result<Mode, String> {
    let mut args = std::env::args().skip(1);
    let mut listen = None;
    let mut tls = None;
    let mut stdio = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--stdio" => stdio = true,
            "--listen" => listen = Some(args.next().ok_or(USAGE)?),
            "--tls" => {
                let cert = args.next().ok_or(USAGE)?;
                let key = args.next().ok_or(USAGE)?;
                tls = Some((cert.into(), key.into()));
            }
            _ => return Err(USAGE.into()),
        }
    }
    match (stdio, listen) {
        (true, None) if tls.is_none() => Ok(Mode::Stdio),
        (false, Some(listen)) => Ok(Mode::Http { listen, tls }),
        _ => Err(USAGE.into()),
    }
}

/// TLS 1.3 with the given certificate chain and key, no client authentication, no session
/// resumption (as mcp-zt: every new connection is a full handshake).
fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> Result<TlsAcceptor, BoxError> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let certs = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e:?}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|e| format!("{}: {e:?}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn router() -> Router {
    let config = StreamableHttpServerConfig::default()
        // The load generator sends `Host: localhost`; the gateway's client sends the address.
        .with_allowed_hosts(["localhost", "127.0.0.1"])
        .with_legacy_session_mode(true)
        .with_json_response(true);
    let handler = Bare::new();
    let mcp = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new().nest_service("/mcp", mcp)
}

async fn serve_connection<IO>(io: IO, router: Router)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    // A connection error (the client went away) ends only that connection.
    let _ = builder
        .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(router))
        .await;
}

async fn serve_http(listen: String, tls: Option<(PathBuf, PathBuf)>) -> Result<(), BoxError> {
    let acceptor = match &tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("listen on {listen}: {e}"))?;
    println!("listening {}", listener.local_addr()?);
    let router = router();
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("bare_rmcp: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve_connection(tls, router).await;
                    }
                }
                None => serve_connection(tcp, router).await,
            }
        });
    }
}

async fn serve_stdio() -> Result<(), BoxError> {
    let running = Bare::new()
        .serve((tokio::io::stdin(), tokio::io::stdout()))
        .await?;
    running.waiting().await?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let mode = match parse_args() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bare_rmcp: runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match mode {
            Mode::Stdio => serve_stdio().await,
            Mode::Http { listen, tls } => serve_http(listen, tls).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare_rmcp: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
