//! Load generator for `scripts/bench.sh`: mTLS handshakes, MCP tool calls on kept-alive
//! sessions, idle connections and revocation propagation, measured against any server (mcp-zt,
//! nginx, the TypeScript SDK, a bare rmcp server, npm mcp-proxy) with the server's own CPU time
//! read from /proc. `--plain` speaks HTTP without TLS, for servers and proxies that have none.
//!
//! Every loop is bounded by a duration or a count; every reply is checked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

mod args;

use args::{parse_args, usage, Args};

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// user + system CPU seconds of the given processes, from /proc/PID/stat (clock ticks of 1/100 s,
/// the Linux USER_HZ).
fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the command name, which is in parentheses and may contain spaces.
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .sum()
}

fn load_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    let pem = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    rustls::pki_types::pem::PemObject::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
}

/// TLS 1.3 without a client certificate (`--bearer`: the token says who the client is).
fn tls_connector_no_cert(a: &Args) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(&a.ca) {
        roots.add(c).expect("CA");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(cfg))
}

fn tls_connector(a: &Args, cert: &Path, key: &Path) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(&a.ca) {
        roots.add(c).expect("CA");
    }
    let key_pem = std::fs::read(key).expect("key");
    let key: PrivateKeyDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(&key_pem).expect("key PEM");
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots);
    let mut cfg = builder
        .with_client_auth_cert(load_certs(cert), key)
        .expect("client cert");
    // Every connection is a full handshake: that is what this measures.
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(cfg))
}

/// How connections are made: TLS 1.3 with a client certificate, or plain TCP (`--plain`).
#[derive(Clone)]
enum Dialer {
    Tls(TlsConnector),
    Plain,
}

impl Dialer {
    fn of(a: &Args) -> Dialer {
        if a.plain {
            Dialer::Plain
        } else if !a.bearer.is_empty() && a.cert.as_os_str().is_empty() {
            Dialer::Tls(tls_connector_no_cert(a))
        } else {
            Dialer::Tls(tls_connector(a, &a.cert, &a.key))
        }
    }
}

async fn connect(addr: SocketAddr, dialer: &Dialer) -> Result<Sender, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    match dialer {
        Dialer::Tls(tls) => {
            let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
            let stream = tls.connect(name, tcp).await.map_err(|e| e.to_string())?;
            http1(stream).await
        }
        Dialer::Plain => http1(tcp).await,
    }
}

async fn http1<IO>(io: IO) -> Result<Sender, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

struct Reply {
    status: u16,
    session: Option<String>,
    body: Vec<Value>,
}

/// POSTs a JSON-RPC message and reads the reply (JSON or an SSE stream).
async fn post(s: &mut Sender, body: &Value, headers: &[(&str, &str)]) -> Result<Reply, String> {
    let mut req = hyper::Request::post("/mcp")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    s.ready().await.map_err(|e| e.to_string())?;
    let resp = s.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let session = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    let body = if sse {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    } else {
        serde_json::from_str(&text)
            .map(|v| vec![v])
            .unwrap_or_default()
    };
    Ok(Reply {
        status,
        session,
        body,
    })
}

/// One session-less (MCP 2026-07-28) call of `tool`.
fn stateless_call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": tool, "arguments": {},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}})
}
fn stateless_headers(tool: &str) -> [(&str, &str); 3] {
    [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", tool),
    ]
}
/// One session-less request for servers that only speak the 2025 protocol (the TypeScript SDK).
fn legacy_call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": {}}})
}
const LEGACY_HEADERS: &[(&str, &str)] = &[("mcp-protocol-version", "2025-06-18")];

/// Whether `v` is the successful answer to call `id`: a result with a non-empty content array,
/// not a tool error (a gateway answers an unreachable upstream with one).
fn call_succeeded(v: &Value, id: u64) -> bool {
    v["id"] == id
        && v["result"]["content"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
        && v["result"]["isError"] != true
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

fn report(a: &Args, ops: u64, errors: u64, wall: f64, cpu: f64, lat: Option<Vec<u64>>) {
    let mut out = json!({
        "mode": a.mode, "concurrency": a.concurrency, "ops": ops, "errors": errors,
        "wall_secs": wall, "server_cpu_secs": cpu,
        "ops_per_sec": ops as f64 / wall,
        "ops_per_server_cpu_sec": if cpu > 0.0 { ops as f64 / cpu } else { 0.0 },
    });
    if let Some(mut l) = lat {
        l.sort_unstable();
        out["p50_ms"] = json!(percentile(&l, 0.50));
        out["p99_ms"] = json!(percentile(&l, 0.99));
    }
    println!("{out}");
}

async fn handshakes(a: Args) {
    let addr: SocketAddr = a.addr.parse().expect("--addr");
    let dialer = Dialer::of(&a);
    let ops = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(a.duration);
    let cpu0 = cpu_seconds(&a.pids);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..a.concurrency {
        let (dialer, ops, errors, static_reply, legacy, tool) = (
            dialer.clone(),
            ops.clone(),
            errors.clone(),
            a.static_reply,
            a.legacy,
            a.tool.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut id = (w as u64) << 32;
            let stateless = stateless_headers(&tool);
            while Instant::now() < deadline {
                id += 1;
                let (body, headers) = if legacy {
                    (legacy_call(id, &tool), LEGACY_HEADERS)
                } else {
                    (stateless_call(id, &tool), &stateless[..])
                };
                let ok = match connect(addr, &dialer).await {
                    Ok(mut s) => match post(&mut s, &body, headers).await {
                        // Any HTTP status proves the handshake was accepted; a 200 with the
                        // call's result is required.
                        Ok(r) => {
                            r.status == 200
                                && (static_reply || r.body.iter().any(|v| call_succeeded(v, id)))
                        }
                        Err(_) => false,
                    },
                    Err(_) => false,
                };
                if ok {
                    ops.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&a.pids) - cpu0;
    report(
        &a,
        ops.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        wall,
        cpu,
        None,
    );
}

async fn calls(a: Args) {
    let addr: SocketAddr = a.addr.parse().expect("--addr");
    let dialer = Dialer::of(&a);
    let errors = Arc::new(AtomicU64::new(0));
    // Sessions are set up before the measured window.
    let mut senders = Vec::new();
    let auth: Vec<(String, String)> = if a.bearer.is_empty() {
        Vec::new()
    } else {
        vec![("authorization".into(), format!("Bearer {}", a.bearer))]
    };
    for _ in 0..a.concurrency {
        let mut s = connect(addr, &dialer).await.expect("connect");
        if a.stateless {
            let mut hdrs: Vec<(String, String)> = stateless_headers(&a.tool)
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            hdrs.extend(auth.iter().cloned());
            senders.push((s, hdrs));
            continue;
        }
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "loadgen", "version": "1"}}});
        let h0: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = post(&mut s, &init, &h0).await.expect("initialize");
        assert_eq!(r.status, 200, "initialize failed");
        let session = r.session.clone();
        let mut hdrs: Vec<(String, String)> =
            vec![("mcp-protocol-version".into(), "2025-06-18".into())];
        hdrs.extend(auth.iter().cloned());
        if let Some(sid) = &session {
            hdrs.push(("mcp-session-id".into(), sid.clone()));
            let h: Vec<(&str, &str)> = hdrs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
            post(&mut s, &note, &h).await.expect("initialized");
        }
        senders.push((s, hdrs));
    }
    let deadline = Instant::now() + Duration::from_secs_f64(a.duration);
    let cpu0 = cpu_seconds(&a.pids);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (w, (mut s, hdrs)) in senders.into_iter().enumerate() {
        let errors = errors.clone();
        let static_reply = a.static_reply;
        let tool = a.tool.clone();
        let stateless = a.stateless;
        tasks.push(tokio::spawn(async move {
            let h: Vec<(&str, &str)> = hdrs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut lat = Vec::new();
            let mut id = ((w as u64) << 32) + 1;
            while Instant::now() < deadline {
                id += 1;
                let call = if stateless {
                    stateless_call(id, &tool)
                } else {
                    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                        "params": {"name": tool, "arguments": {}}})
                };
                let t = Instant::now();
                let ok = match post(&mut s, &call, &h).await {
                    Ok(r) => {
                        r.status == 200
                            && (static_reply || r.body.iter().any(|v| call_succeeded(v, id)))
                    }
                    Err(_) => false,
                };
                if ok {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(l) = t.await {
            all.extend(l);
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&a.pids) - cpu0;
    report(
        &a,
        all.len() as u64,
        errors.load(Ordering::Relaxed),
        wall,
        cpu,
        Some(all),
    );
}

async fn idle(a: Args) {
    let addr: SocketAddr = a.addr.parse().expect("--addr");
    let dialer = Dialer::of(&a);
    let mut held = Vec::new();
    let mut errors = 0u64;
    for chunk in 0..a.count.div_ceil(64) {
        let mut batch = Vec::new();
        for i in 0..64.min(a.count - chunk * 64) {
            let (dialer, tool) = (dialer.clone(), a.tool.clone());
            let id = (chunk * 64 + i) as u64;
            batch.push(tokio::spawn(async move {
                let mut s = connect(addr, &dialer).await?;
                let r = post(
                    &mut s,
                    &stateless_call(id, &tool),
                    &stateless_headers(&tool),
                )
                .await?;
                if r.status == 200 {
                    Ok(s)
                } else {
                    Err(format!("status {}", r.status))
                }
            }));
        }
        for t in batch {
            match t.await {
                Ok(Ok(s)) => held.push(s),
                _ => errors += 1,
            }
        }
    }
    println!(
        "{}",
        json!({"mode": "idle", "open": held.len(), "errors": errors})
    );
    // The script reads the server's RSS now.
    tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
    drop(held);
}

async fn revocation(a: Args) {
    let addr: SocketAddr = a.addr.parse().expect("--addr");
    let headers = stateless_headers(&a.tool);
    let mut samples = Vec::new();
    let mut errors = 0u64;
    for i in 0..a.trials {
        let name = format!("{}{i}", a.prefix);
        let dir = a.home.join("clients");
        let tls = Dialer::Tls(tls_connector(
            &a,
            &dir.join(format!("{name}.crt")),
            &dir.join(format!("{name}.key")),
        ));
        let Ok(mut s) = connect(addr, &tls).await else {
            errors += 1;
            continue;
        };
        if post(&mut s, &stateless_call(1, &a.tool), &headers)
            .await
            .map(|r| r.status)
            != Ok(200)
        {
            errors += 1;
            continue;
        }
        let status = tokio::process::Command::new(&a.mcp_zt)
            .arg("--home")
            .arg(&a.home)
            .args(["revoke", &name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await;
        let t0 = Instant::now();
        if !status.map(|s| s.success()).unwrap_or(false) {
            errors += 1;
            continue;
        }
        // The open connection must be closed by the server ...
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            while s.ready().await.is_ok() {
                if post(&mut s, &stateless_call(2, &a.tool), &headers)
                    .await
                    .is_err()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        })
        .await
        .is_ok();
        // ... and a new handshake refused.
        let refused = match connect(addr, &tls).await {
            Err(_) => true,
            Ok(mut s2) => post(&mut s2, &stateless_call(3, &a.tool), &headers)
                .await
                .is_err(),
        };
        if closed && refused {
            samples.push(t0.elapsed().as_micros() as u64);
        } else {
            errors += 1;
        }
    }
    samples.sort_unstable();
    println!(
        "{}",
        json!({"mode": "revocation", "trials": a.trials, "ok": samples.len(), "errors": errors,
               "p50_ms": percentile(&samples, 0.5), "p99_ms": percentile(&samples, 0.99),
               "max_ms": percentile(&samples, 1.0)})
    );
}

/// Who a soak worker is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Valid all along: every call must succeed.
    Valid,
    /// Valid, then revoked during the run: calls started after the revocation must fail.
    RevokedMidRun,
    /// Revoked, expired or from another CA: every attempt must be refused.
    Invalid,
}

async fn soak(a: Args) {
    let addr: SocketAddr = a.addr.parse().expect("--addr");
    let clients = a.home.join("clients");
    let rogue = a.ca.parent().map(|p| p.join("rogue")).unwrap_or_default();
    // (kind, cert, key) per identity; workers take them round-robin.
    let mut ids: Vec<(Kind, PathBuf, PathBuf)> = Vec::new();
    let mut add = |kind: Kind, dir: &Path, name: &str| {
        ids.push((
            kind,
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        ))
    };
    // Interleaved so that any 8 or more workers cover every kind.
    add(Kind::Valid, &clients, "admin0");
    add(Kind::Invalid, &clients, "revoked0");
    add(Kind::Valid, &clients, "editor0");
    add(Kind::Invalid, &clients, "expired0");
    add(Kind::Valid, &clients, "viewer0");
    add(Kind::Invalid, &rogue, "admin0");
    add(Kind::RevokedMidRun, &clients, "mid0");
    add(Kind::Valid, &clients, "admin1");
    add(Kind::Valid, &clients, "editor1");
    add(Kind::Valid, &clients, "viewer1");
    add(Kind::RevokedMidRun, &clients, "mid1");
    let revoked_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::new(std::sync::Mutex::new(None));
    let counters: Arc<[AtomicU64; 6]> = Arc::new(Default::default());
    const VALID_OK: usize = 0;
    const VALID_ERR: usize = 1;
    const INVALID_REFUSED: usize = 2;
    const INVALID_ACCEPTED: usize = 3;
    const MID_BEFORE_OK: usize = 4;
    const MID_AFTER_ACCEPTED: usize = 5;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.duration);
    let mut tasks = Vec::new();
    for w in 0..a.concurrency {
        let (kind, cert, key) = ids[w % ids.len()].clone();
        let tls = Dialer::Tls(tls_connector(&a, &cert, &key));
        let tool = a.tool.clone();
        let counters = counters.clone();
        let revoked_at = revoked_at.clone();
        tasks.push(tokio::spawn(async move {
            let mut id = (w as u64) << 32;
            while Instant::now() < deadline {
                let began = Instant::now();
                let after_revocation = revoked_at
                    .lock()
                    .map(|g| g.is_some_and(|t| began > t))
                    .unwrap_or(false);
                // A connection serves up to 20 calls, then a new full handshake.
                let mut ok_calls = 0u64;
                let mut failed = false;
                match connect(addr, &tls).await {
                    Ok(mut s) => {
                        for _ in 0..20 {
                            id += 1;
                            let call = stateless_call(id, &tool);
                            match post(&mut s, &call, &stateless_headers(&tool)).await {
                                Ok(r)
                                    if r.status == 200 && r.body.iter().any(|v| v["id"] == id) =>
                                {
                                    ok_calls += 1
                                }
                                _ => {
                                    failed = true;
                                    break;
                                }
                            }
                            if Instant::now() >= deadline {
                                break;
                            }
                        }
                    }
                    Err(_) => failed = true,
                }
                let c = &counters;
                match kind {
                    Kind::Valid => {
                        c[VALID_OK].fetch_add(ok_calls, Ordering::Relaxed);
                        if failed && Instant::now() < deadline {
                            c[VALID_ERR].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Kind::Invalid => {
                        c[INVALID_ACCEPTED].fetch_add(ok_calls, Ordering::Relaxed);
                        c[INVALID_REFUSED].fetch_add(u64::from(failed), Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Kind::RevokedMidRun => {
                        if after_revocation {
                            c[MID_AFTER_ACCEPTED].fetch_add(ok_calls, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        } else {
                            c[MID_BEFORE_OK].fetch_add(ok_calls, Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }
    // Revocations during the run, from another process, at a third of the time.
    tokio::time::sleep(Duration::from_secs_f64(a.duration / 3.0)).await;
    for name in ["mid0", "mid1"] {
        let ok = tokio::process::Command::new(&a.mcp_zt)
            .arg("--home")
            .arg(&a.home)
            .args(["revoke", name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "revoke {name} failed");
    }
    if let Ok(mut g) = revoked_at.lock() {
        *g = Some(Instant::now());
    }
    for t in tasks {
        let _ = t.await;
    }
    let c = |i: usize| counters[i].load(Ordering::Relaxed);
    println!(
        "{}",
        json!({"mode": "soak", "seconds": start.elapsed().as_secs_f64(), "clients": a.concurrency,
               "valid_calls_ok": c(VALID_OK), "valid_errors": c(VALID_ERR),
               "invalid_refused": c(INVALID_REFUSED), "invalid_accepted": c(INVALID_ACCEPTED),
               "revoked_mid_run_calls_before": c(MID_BEFORE_OK),
               "revoked_mid_run_accepted_after": c(MID_AFTER_ACCEPTED)})
    );
}

fn main() {
    let a = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        match a.mode.as_str() {
            "handshake" => handshakes(a).await,
            "calls" => calls(a).await,
            "idle" => idle(a).await,
            "revocation" => revocation(a).await,
            "soak" => soak(a).await,
            _ => usage(),
        }
    });
}
