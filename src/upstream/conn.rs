//! One live MCP client connection to an upstream: a stdio child or a streamable HTTP session.
//! Forwards requests with a timeout, cancels upstream what the client cancelled, caches the
//! upstream's lists until it says they changed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{CancelledNotificationParam, ClientRequest, ServerResult};
use rmcp::service::{serve_client_with_ct, PeerRequestOptions, RequestHandle};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ErrorData, Peer, RoleClient, ServiceError};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::config::{Transport, Upstream};
use super::relay::{Relay, Route, Routes};
use crate::identity::Identity;
use crate::mcp::provider::{Caller, HubSender, Items};

/// Environment variables a stdio child keeps from the server's environment; everything else
/// (the server's own settings and secrets) is withheld.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER"];

/// Identity headers sent to HTTP upstreams with `forward_identity = true`.
pub const IDENTITY_HEADERS: [&str; 4] = [
    "x-mcp-zt-name",
    "x-mcp-zt-role",
    "x-mcp-zt-serial",
    "x-mcp-zt-spiffe-id",
];

/// Identity environment variables of per-identity children.
pub const IDENTITY_ENV: [&str; 4] = [
    "MCP_ZT_NAME",
    "MCP_ZT_ROLE",
    "MCP_ZT_SERIAL",
    "MCP_ZT_SPIFFE_ID",
];

fn identity_values(who: &Identity) -> [&str; 4] {
    [&who.name, &who.role, &who.serial, &who.spiffe_id]
}

/// A connected upstream.
pub struct Instance {
    peer: Peer<RoleClient>,
    close: CancellationToken,
    routes: Arc<Routes>,
    stale: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
    catalog: tokio::sync::Mutex<Option<Arc<Items>>>,
    timeout: Duration,
    /// The child's process id (stdio).
    pub pid: Option<u32>,
}

/// Why a request could not be served; the `mcp_zt` data field is read by the audit.
pub fn failure(kind: &str, message: String) -> ErrorData {
    ErrorData::internal_error(message, Some(serde_json::json!({ "mcp_zt": kind })))
}

/// Connects (spawns the child or opens the HTTP session) and initializes. `who` is set for
/// per-identity connections: its identity goes into the child's environment or the headers.
/// The receiver fires when the connection ends.
pub async fn connect(
    cfg: &Upstream,
    who: Option<&Identity>,
    events: HubSender,
) -> Result<(Arc<Instance>, oneshot::Receiver<()>), String> {
    let routes = Arc::new(Routes::default());
    let stale = Arc::new(AtomicBool::new(true));
    let relay = Relay {
        upstream: cfg.name.clone(),
        routes: routes.clone(),
        events,
        stale: stale.clone(),
    };
    let close = CancellationToken::new();
    let (running, pid) = match &cfg.transport {
        Transport::Stdio {
            command,
            args,
            env,
            cwd,
        } => {
            let mut cmd = tokio::process::Command::new(command);
            cmd.args(args).env_clear();
            for k in INHERITED_ENV {
                if let Ok(v) = std::env::var(k) {
                    cmd.env(k, v);
                }
            }
            for (k, secret) in env {
                cmd.env(k, secret.resolve().map_err(|e| e.to_string())?);
            }
            if let Some(who) = who {
                for (k, v) in IDENTITY_ENV.iter().zip(identity_values(who)) {
                    cmd.env(k, v);
                }
            }
            if let Some(dir) = cwd {
                cmd.current_dir(dir);
            }
            let (child, _) = TokioChildProcess::builder(cmd)
                .stderr(std::process::Stdio::inherit())
                .spawn()
                .map_err(|e| format!("cannot start {command:?}: {e}"))?;
            let pid = child.id();
            let running = tokio::time::timeout(
                cfg.timeout,
                serve_client_with_ct(relay, child, close.clone()),
            )
            .await
            .map_err(|_| format!("no answer to initialize within {:?}", cfg.timeout))?
            .map_err(|e| format!("initialize failed: {e}"))?;
            (running, pid)
        }
        Transport::Http {
            url,
            headers,
            ca,
            client_cert,
        } => {
            let client = http_client(ca.as_deref(), client_cert.as_ref())?;
            let mut map = std::collections::HashMap::new();
            for (k, secret) in headers {
                let v = secret.resolve().map_err(|e| e.to_string())?;
                map.insert(header_name(k)?, header_value(&v, k)?);
            }
            if let Some(who) = who {
                for (k, v) in IDENTITY_HEADERS.iter().zip(identity_values(who)) {
                    map.insert(header_name(k)?, header_value(v, k)?);
                }
            }
            let config = rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(url.as_str())
                .custom_headers(map);
            let transport = StreamableHttpClientTransport::with_client(client, config);
            let running = tokio::time::timeout(
                cfg.timeout,
                serve_client_with_ct(relay, transport, close.clone()),
            )
            .await
            .map_err(|_| format!("no answer to initialize within {:?}", cfg.timeout))?
            .map_err(|e| format!("initialize failed: {e}"))?;
            (running, None)
        }
    };
    let closed = Arc::new(AtomicBool::new(false));
    let instance = Arc::new(Instance {
        peer: running.peer().clone(),
        close: close.clone(),
        routes,
        stale,
        closed: closed.clone(),
        catalog: tokio::sync::Mutex::new(None),
        timeout: cfg.timeout,
        pid,
    });
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let _ = running.waiting().await;
        closed.store(true, Ordering::SeqCst);
        let _ = tx.send(());
    });
    Ok((instance, rx))
}

fn header_name(k: &str) -> Result<http::HeaderName, String> {
    http::HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("invalid header name {k:?}"))
}

fn header_value(v: &str, k: &str) -> Result<http::HeaderValue, String> {
    http::HeaderValue::from_str(v).map_err(|_| format!("invalid value for header {k:?}"))
}

fn http_client(
    ca: Option<&std::path::Path>,
    client_cert: Option<&(std::path::PathBuf, std::path::PathBuf)>,
) -> Result<reqwest::Client, String> {
    let read =
        |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("read {}: {e}", p.display()));
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10));
    if let Some(ca) = ca {
        let certs = reqwest::Certificate::from_pem_bundle(&read(ca)?)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
        b = b.tls_certs_only(certs);
    }
    if let Some((cert, key)) = client_cert {
        crate::pki::keyfile::check_permissions(key).map_err(|e| e.to_string())?;
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend(read(key)?);
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|e| format!("{}: not a PEM certificate and key: {e}", cert.display()))?;
        b = b.identity(id);
    }
    b.build().map_err(|e| format!("HTTP client: {e}"))
}

impl Instance {
    /// Whether the connection ended.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Ends the connection: an HTTP session is deleted, a child is stopped.
    pub fn close(&self) {
        self.close.cancel();
    }

    /// Requests in flight.
    pub fn inflight(&self) -> usize {
        self.routes.len()
    }

    /// The upstream's tools, prompts, resources and templates (cached until it reports a
    /// change).
    pub async fn items(&self) -> Result<Arc<Items>, String> {
        let mut cache = self.catalog.lock().await;
        if let Some(items) = cache.as_ref() {
            if !self.stale.load(Ordering::SeqCst) {
                return Ok(items.clone());
            }
        }
        self.stale.store(false, Ordering::SeqCst);
        let fetched = tokio::time::timeout(self.timeout, self.fetch()).await;
        match fetched {
            Ok(Ok(items)) => {
                let items = Arc::new(items);
                *cache = Some(items.clone());
                Ok(items)
            }
            Ok(Err(e)) => {
                self.stale.store(true, Ordering::SeqCst);
                Err(e)
            }
            Err(_) => {
                self.stale.store(true, Ordering::SeqCst);
                Err(format!("no list answer within {:?}", self.timeout))
            }
        }
    }

    async fn fetch(&self) -> Result<Items, String> {
        let caps = self
            .peer
            .peer_info()
            .map(|i| i.capabilities.clone())
            .unwrap_or_default();
        let e = |e: ServiceError| e.to_string();
        let mut items = Items::default();
        if caps.tools.is_some() {
            items.tools = self.peer.list_all_tools().await.map_err(e)?;
        }
        if caps.prompts.is_some() {
            items.prompts = self.peer.list_all_prompts().await.map_err(e)?;
        }
        if caps.resources.is_some() {
            items.resources = self.peer.list_all_resources().await.map_err(e)?;
            items.templates = self.peer.list_all_resource_templates().await.map_err(e)?;
        }
        Ok(items)
    }

    /// Forwards one request for `caller`; gives up at the timeout or when the caller's token
    /// is cancelled, telling the upstream to cancel in both cases.
    pub async fn request(
        &self,
        upstream: &str,
        caller: &Caller,
        request: ClientRequest,
    ) -> Result<ServerResult, ErrorData> {
        let handle = self
            .peer
            .send_request_with_option(request, PeerRequestOptions::no_options())
            .await
            .map_err(|e| self.transport_failed(upstream, e))?;
        let route = Route::of(caller);
        let progress = route.progress();
        let RequestHandle {
            rx,
            id,
            progress_token,
            ..
        } = handle;
        self.routes.add(id.clone(), progress_token.clone(), route);
        let cancel = |reason: &str| {
            let peer = self.peer.clone();
            let param = CancelledNotificationParam::new(Some(id.clone()), Some(reason.to_string()));
            async move {
                let _ = peer.notify_cancelled(param).await;
            }
        };
        let result = tokio::select! {
            r = rx => match r {
                Ok(Ok(result)) => Ok(result),
                Ok(Err(ServiceError::McpError(e))) => Err(e),
                Ok(Err(e)) => Err(self.transport_failed(upstream, e)),
                Err(_) => Err(self.transport_failed(upstream, ServiceError::TransportClosed)),
            },
            _ = tokio::time::sleep(self.timeout) => {
                cancel("mcp-zt: timeout").await;
                Err(failure("timeout", format!(
                    "upstream {upstream} did not answer within {} s", self.timeout.as_secs()
                )))
            }
            _ = caller.ct.cancelled() => {
                cancel("cancelled by the client").await;
                Err(failure("cancelled", "request cancelled".to_string()))
            }
        };
        progress.settle().await;
        self.routes.remove(&id, &progress_token);
        result
    }

    /// A transport failure ends this connection (the supervisor reconnects with backoff).
    fn transport_failed(&self, upstream: &str, e: ServiceError) -> ErrorData {
        self.close();
        failure(
            "unavailable",
            format!("upstream {upstream} is unavailable: {e}"),
        )
    }

    /// Checks that the upstream still answers.
    pub async fn ping(&self) -> bool {
        let req = ClientRequest::PingRequest(Default::default());
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.peer.send_request(req)).await,
            Ok(Ok(_))
        )
    }
}
