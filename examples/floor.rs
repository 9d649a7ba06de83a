//! The floor server of `scripts/bench.sh`: the cost of this stack with no MCP at all. hyper and
//! rustls with mcp-zt's TLS settings (TLS 1.3 and 1.2, aws-lc-rs, no session resumption,
//! h2 and http/1.1, TCP_NODELAY) and a client certificate required and verified against the
//! CA, answering every POST, whatever it holds, with one fixed JSON-RPC result of the size of
//! mcp-zt's `whoami` answer. What mcp-zt costs per call above this is the price of MCP and of
//! everything mcp-zt does with it.
//!
//! Usage: floor --listen 127.0.0.1:0 --tls CERT KEY --client-ca CA
//! Prints `listening 127.0.0.1:PORT` once it accepts connections.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: floor --listen HOST:PORT --tls CERT KEY --client-ca CA";

/// Largest body read (as mcp-zt's default).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// A `tools/call` result of the size mcp-zt's `whoami` answers (the id does not follow the
/// request: `loadgen calls --static` accepts any 200).
const ANSWER: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"{\"name\":\"bench\",\"role\":\"viewer\",\"serial\":\"5a0c1d2e3f405162738495a6b7c8d9e0\",\"spiffe_id\":\"spiffe://mcp-zt.local/client/bench\",\"not_after\":\"2026-12-31T23:59:59Z\"}"}],"isError":false}}"#;

struct Args {
    listen: String,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut listen, mut cert, mut key, mut ca) = (None, None, None, None);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--listen" => listen = it.next(),
            "--tls" => {
                cert = it.next().map(PathBuf::from);
                key = it.next().map(PathBuf::from);
            }
            "--client-ca" => ca = it.next().map(PathBuf::from),
            _ => return Err(USAGE.into()),
        }
    }
    match (listen, cert, key, ca) {
        (Some(listen), Some(cert), Some(key), Some(ca)) => Ok(Args {
            listen,
            cert,
            key,
            ca,
        }),
        _ => Err(USAGE.into()),
    }
}

fn acceptor(a: &Args) -> Result<TlsAcceptor, BoxError> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let certs = CertificateDer::pem_slice_iter(&read(&a.cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e:?}", a.cert.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&read(&a.key)?)
        .map_err(|e| format!("{}: {e:?}", a.key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&read(&a.ca)?) {
        roots.add(ca.map_err(|e| format!("{}: {e:?}", a.ca.display()))?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let status = if req.method() == hyper::Method::POST {
        // The body is read whole, as a server must before it answers.
        match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(_) => StatusCode::OK,
            Err(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    } else {
        StatusCode::METHOD_NOT_ALLOWED
    };
    let body = if status == StatusCode::OK { ANSWER } else { "" };
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

async fn serve(a: Args) -> Result<(), BoxError> {
    let acceptor = acceptor(&a)?;
    let listener = TcpListener::bind(&a.listen)
        .await
        .map_err(|e| format!("listen on {}: {e}", a.listen))?;
    println!("listening {}", listener.local_addr()?);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("floor: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            if let Ok(tls) = acceptor.accept(tcp).await {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), hyper::service::service_fn(answer))
                    .await;
            }
        });
    }
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("floor: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
