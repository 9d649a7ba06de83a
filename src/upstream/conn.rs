//! One live MCP client connection to an upstream: a stdio child or a streamable HTTP session.
//! Forwards requests with a timeout, cancels upstream what the client cancelled, caches the
//! upstream's lists until it says they changed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rmcp::model::{
    CancelledNotificationParam, ClientRequest, ProtocolVersion, RequestMetaObject,
    ServerNotification, ServerResult, SubscriptionFilter,
};
use rmcp::service::{
    serve_client_with_ct, serve_client_with_lifecycle_and_ct, ClientLifecycleMode,
    PeerRequestOptions, RequestHandle,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ErrorData, Peer, RoleClient, ServiceError};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use super::child::{self, report_stop, StdioChild, STOP_GRACE};
use super::direct::{DirectLink, Failed};
pub(crate) use super::http_client::http_client;
use super::pipe::PipeLink;

/// How long a closing connection waits for rmcp to finish the requests in flight before its
/// child is stopped regardless.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(3);
use super::bearer::{BearerClient, BearerSlot};
use super::config::{Transport, Upstream, IDENTITY_ENV, IDENTITY_HEADERS};
use super::relay::{Relay, Route, Routes};
use crate::identity::Identity;
use crate::mcp::provider::{Caller, HubSender, Items, RelayAnswer, Relayed};

/// Environment variables a stdio child keeps from the server's environment; everything else
/// (the server's own settings and secrets) is withheld.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER"];

/// Most items of one kind taken from an upstream's lists.
const MAX_ITEMS: usize = 10_000;

fn identity_values(who: &Identity) -> [&str; 4] {
    [&who.name, &who.role, &who.serial, &who.spiffe_id]
}

/// Removes a request's route when the request ends, however it ends.
struct RouteGuard<'a> {
    routes: &'a Routes,
    id: rmcp::model::RequestId,
    token: rmcp::model::ProgressToken,
    answered: bool,
}

impl Drop for RouteGuard<'_> {
    fn drop(&mut self) {
        self.routes.remove(&self.id, &self.token, self.answered);
    }
}

/// Tells the upstream to stop working on a relayed call.
type Canceller = Box<dyn FnOnce(&'static str) + Send>;

/// The canceller of a relayed call until it has ended.
struct Armed(Option<Canceller>);

impl Armed {
    fn fire(&mut self, reason: &'static str) {
        if let Some(cancel) = self.0.take() {
            cancel(reason);
        }
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        self.fire("cancelled by the client");
    }
}

/// Marks a relayed call on a child's pipes ended (answered or not) however it ends.
struct RelayedEnd<'a>(&'a Routes, bool);

impl Drop for RelayedEnd<'_> {
    fn drop(&mut self) {
        self.0.relayed_ended(self.1);
    }
}

/// One call counted in flight until it is dropped.
struct Inflight<'a>(&'a AtomicUsize);

impl<'a> Inflight<'a> {
    fn count(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Inflight(n)
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One MCP client connection to the upstream, in one protocol revision.
struct Link {
    peer: Peer<RoleClient>,
    routes: Arc<Routes>,
    /// Speaks MCP 2026-07-28 or later (no session: each request carries the caller's
    /// capabilities; `input_required` instead of server-to-client requests).
    modern: bool,
}

/// A connected upstream. An HTTP upstream that speaks both revisions gets two links, so each
/// client is served in the revision it speaks: sessions, resources/subscribe, classic
/// sampling and log levels for older clients; `input_required` and per-request capabilities
/// for 2026-07-28 clients.
pub struct Instance {
    /// The first link lists the items.
    links: Vec<Link>,
    close: CancellationToken,
    /// Cancelled when the connection has ended and its child (stdio) is stopped.
    done: CancellationToken,
    stale: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
    catalog: std::sync::RwLock<Option<Arc<Items>>>,
    /// Held while the lists are fetched: one fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    timeout: Duration,
    /// The child's process id (stdio).
    pub pid: Option<u32>,
    /// When a request last used it.
    last_used: std::sync::Mutex<std::time::Instant>,
    /// For a per-identity connection: the name and role it was started with (and passed on
    /// to the upstream). A certificate whose role changed since (a foreign trust's rules were
    /// edited) gets a new connection.
    pub started_as: Option<(String, String)>,
    /// A per-holder OAuth connection's token slot.
    pub bearer: Option<Arc<BearerSlot>>,
    /// A shared HTTP connection to an upstream of 2026-07-28: the native transport's relay.
    direct: Option<Arc<DirectLink>>,
    /// A shared stdio child's pipes: the native transport's relay.
    pipe: Option<Arc<PipeLink>>,
    /// Calls on the direct link in flight.
    direct_inflight: AtomicUsize,
}

/// The key marking the gateway's own failure reports in an error's data.
pub const MARK: &str = crate::mcp::provider::FAILURE_MARK;

/// A failure of the gateway's own (not the upstream's answer): `kind` is timeout,
/// unavailable or cancelled; `message` is what the client reads; `detail` (never sent to the
/// client) goes to the audit log.
pub fn failure(kind: &str, message: String, detail: Option<String>) -> ErrorData {
    let mut data = serde_json::Map::new();
    data.insert(MARK.into(), kind.into());
    if let Some(d) = detail {
        data.insert("detail".into(), d.into());
    }
    ErrorData::internal_error(message, Some(serde_json::Value::Object(data)))
}

/// Whether `e` is the gateway's own failure of `kind`.
pub fn is_failure(e: &ErrorData, kind: &str) -> bool {
    e.data
        .as_ref()
        .and_then(|d| d.get(MARK))
        .is_some_and(|v| v == kind)
}

fn cancelled() -> ErrorData {
    failure("cancelled", "request cancelled".to_string(), None)
}

/// What a holder's own connection carries beyond their identity: their upstream token (a
/// per-holder OAuth upstream) and their static secrets (headers, or a child's environment).
#[derive(Default)]
pub struct HolderExtras {
    /// The token slot the connection's requests read.
    pub bearer: Option<Arc<BearerSlot>>,
    /// Extra environment variables of a per-identity child.
    pub env: Vec<(String, Zeroizing<String>)>,
    /// Extra headers of a per-holder HTTP connection.
    pub headers: Vec<(String, Zeroizing<String>)>,
}

/// Connects (spawns the child or opens the HTTP session) and initializes. `who` is set for
/// per-identity connections: its identity goes into the child's environment or the headers,
/// with `extras`. The receiver fires when the connection ends.
pub async fn connect(
    cfg: &Upstream,
    who: Option<&Identity>,
    events: HubSender,
    audit: Option<Arc<crate::audit::Audit>>,
    extras: HolderExtras,
) -> Result<(Arc<Instance>, oneshot::Receiver<()>), String> {
    let stale = Arc::new(AtomicBool::new(true));
    let close = CancellationToken::new();
    let relay = |routes: &Arc<Routes>| Relay {
        upstream: cfg.name.clone(),
        routes: routes.clone(),
        events: events.clone(),
        stale: stale.clone(),
        serial: who.map(|w| w.serial.clone()),
        timeout: cfg.timeout,
        audit: audit.clone(),
    };
    let mut running = Vec::new();
    let mut stdio_child: Option<StdioChild> = None;
    let mut direct_http = None;
    let mut pipe_link = None;
    let pid = match &cfg.transport {
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
            for (k, v) in &extras.env {
                cmd.env(k, v.as_str());
            }
            if let Some(who) = who {
                for (k, v) in IDENTITY_ENV.iter().zip(identity_values(who)) {
                    cmd.env(k, v);
                }
            }
            if let Some(dir) = cwd {
                cmd.current_dir(dir);
            }
            // mcp-zt keeps the child and gives rmcp only its pipes, to stop it as the MCP
            // specification says (see [`child`]).
            let (child, (stdout, stdin)) = child::spawn(cmd, tokio::io::stderr())
                .map_err(|e| format!("cannot start {command:?}: {e}"))?;
            let pid = child.id();
            // rmcp reads and writes through the pipe pumps; a shared child's pipes also carry
            // the native transport's relayed calls.
            let (pipe, transport) = super::pipe::split(stdout, stdin);
            if who.is_none() {
                pipe_link = Some(pipe);
            }
            let routes = Arc::new(Routes::default());
            let client = tokio::time::timeout(
                cfg.timeout,
                serve_client_with_ct(relay(&routes), transport, close.clone()),
            )
            .await
            .map_err(|_| format!("no answer to initialize within {:?}", cfg.timeout))
            .and_then(|r| r.map_err(|e| format!("initialize failed: {e}")));
            let client = match client {
                Ok(client) => client,
                Err(e) => {
                    // Waited for, so a failed start leaves no child behind.
                    report_stop(&cfg.name, pid, child.stop(STOP_GRACE).await);
                    return Err(e);
                }
            };
            running.push((client, routes));
            stdio_child = Some(child);
            pid
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
            for (k, v) in &extras.headers {
                map.insert(header_name(k)?, header_value(v, k)?);
            }
            if let (Some(who), true) = (who, cfg.forward_identity) {
                for (k, v) in IDENTITY_HEADERS.iter().zip(identity_values(who)) {
                    map.insert(header_name(k)?, header_value(v, k)?);
                }
            }
            // Only a connection every caller shares, without a holder's token, is relayed
            // directly (its headers are the file's alone).
            if who.is_none() && extras.bearer.is_none() {
                direct_http = Some((client.clone(), url.clone(), map.clone()));
            }
            let client = BearerClient {
                inner: client,
                slot: extras.bearer.clone(),
            };
            let transport = || {
                let config = rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .custom_headers(map.clone());
                StreamableHttpClientTransport::with_client(client.clone(), config)
            };
            // The newest revision if the server speaks it (server/discover), else the
            // initialize handshake of 2025-11-25 and older.
            let lifecycle = ClientLifecycleMode::Auto {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                legacy_version: Some(ProtocolVersion::V_2025_11_25),
            };
            let routes = Arc::new(Routes::default());
            let first = tokio::time::timeout(
                cfg.timeout,
                serve_client_with_lifecycle_and_ct(
                    relay(&routes),
                    transport(),
                    lifecycle,
                    close.clone(),
                ),
            )
            .await
            .map_err(|_| {
                format!(
                    "no answer to discover or initialize within {:?}",
                    cfg.timeout
                )
            })?
            .map_err(|e| format!("discover and initialize failed: {e}"))?;
            let modern = is_modern(first.peer());
            running.push((first, routes));
            if modern {
                // A session of the older revision too, for older clients, if it still
                // speaks it.
                let routes = Arc::new(Routes::default());
                let legacy = tokio::time::timeout(
                    cfg.timeout,
                    serve_client_with_lifecycle_and_ct(
                        relay(&routes),
                        transport(),
                        ClientLifecycleMode::Initialize,
                        close.clone(),
                    ),
                )
                .await;
                if let Ok(Ok(legacy)) = legacy {
                    running.push((legacy, routes));
                }
            }
            None
        }
    };
    let closed = Arc::new(AtomicBool::new(false));
    let mut links = Vec::new();
    for (client, routes) in &running {
        let modern = is_modern(client.peer());
        if modern {
            let caps = client
                .peer()
                .peer_info()
                .map(|i| i.capabilities.clone())
                .unwrap_or_default();
            tokio::spawn(watch_lists(
                client.peer().clone(),
                caps,
                stale.clone(),
                events.clone(),
                close.clone(),
            ));
        }
        links.push(Link {
            peer: client.peer().clone(),
            routes: routes.clone(),
            modern,
        });
    }
    let done = CancellationToken::new();
    let direct = direct_http
        .filter(|_| links.first().is_some_and(|l| l.modern))
        .map(|(client, url, headers)| Arc::new(DirectLink::new(client, &url, &headers)));
    let instance = Arc::new(Instance {
        links,
        close: close.clone(),
        done: done.clone(),
        stale,
        closed: closed.clone(),
        catalog: std::sync::RwLock::new(None),
        fetching: tokio::sync::Mutex::new(()),
        timeout: cfg.timeout,
        pid,
        last_used: std::sync::Mutex::new(std::time::Instant::now()),
        started_as: who.map(|w| (w.name.clone(), w.role.clone())),
        bearer: extras.bearer,
        direct,
        pipe: pipe_link,
        direct_inflight: AtomicUsize::new(0),
    });
    let (tx, rx) = oneshot::channel();
    // The connection ends when any of its links ends; a child is stopped before the end is
    // reported (the supervisor then connects anew: never two children at once).
    let name = cfg.name.clone();
    tokio::spawn(async move {
        let waits = running
            .into_iter()
            .map(|(client, _)| Box::pin(async move { client.waiting().await }));
        let mut links_ended = futures_util::future::select_all(waits);
        tokio::select! {
            _ = &mut links_ended => {}
            // Asked to close: rmcp gets a bounded time to finish what is in flight, then the
            // child is stopped whatever rmcp is doing (a child that stopped reading its stdin
            // can leave rmcp's writer waiting for ever; the stop ends that too).
            () = close.cancelled() => {
                let _ = tokio::time::timeout(DRAIN, &mut links_ended).await;
            }
        }
        drop(links_ended);
        closed.store(true, Ordering::SeqCst);
        close.cancel();
        if let Some(child) = stdio_child {
            report_stop(&name, pid, child.stop(STOP_GRACE).await);
        }
        done.cancel();
        let _ = tx.send(());
    });
    Ok((instance, rx))
}

/// Whether a connection speaks MCP 2026-07-28 or later.
fn is_modern(peer: &Peer<RoleClient>) -> bool {
    peer.peer_info()
        .is_some_and(|i| !i.protocol_version.has_initialize())
}

/// A modern upstream has no session to send list_changed on: a `subscriptions/listen` stream
/// for its lists takes its place, and each change marks the cached lists stale. If the
/// stream ends, the lists are fetched again on every use until the connection is replaced.
async fn watch_lists(
    peer: Peer<RoleClient>,
    caps: rmcp::model::ServerCapabilities,
    stale: Arc<AtomicBool>,
    events: HubSender,
    close: CancellationToken,
) {
    let mut filter = SubscriptionFilter::new();
    if caps
        .tools
        .as_ref()
        .is_some_and(|t| t.list_changed == Some(true))
    {
        filter.tools_list_changed = Some(true);
    }
    if caps
        .prompts
        .as_ref()
        .is_some_and(|t| t.list_changed == Some(true))
    {
        filter.prompts_list_changed = Some(true);
    }
    if caps
        .resources
        .as_ref()
        .is_some_and(|t| t.list_changed == Some(true))
    {
        filter.resources_list_changed = Some(true);
    }
    if filter == SubscriptionFilter::new() {
        return;
    }
    let changed = || {
        stale.store(true, Ordering::SeqCst);
        let _ = events.try_send(crate::mcp::provider::HubEvent::Changed);
    };
    let Ok(mut sub) = peer.listen(filter).await else {
        return;
    };
    loop {
        let next = tokio::select! {
            n = sub.next() => n,
            _ = close.cancelled() => return,
        };
        match next {
            Ok(Some(
                ServerNotification::ToolListChangedNotification(_)
                | ServerNotification::PromptListChangedNotification(_)
                | ServerNotification::ResourceListChangedNotification(_),
            )) => changed(),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                changed();
                return;
            }
        }
    }
}

/// The `_meta` a modern upstream gets with a request: the calling client's own capabilities
/// (so the upstream asks only for input the client can give) and log level.
fn caller_meta(caller: &Caller) -> RequestMetaObject {
    let mut meta = RequestMetaObject::new();
    meta.set_client_capabilities(caller.client.capabilities.clone().unwrap_or_default());
    // An older client that set no level gets every message, as its revision had it.
    #[allow(deprecated)]
    let level = match caller.client.log_level {
        None if !caller.client.modern => Some(rmcp::model::LoggingLevel::Debug),
        other => other,
    };
    if let Some(level) = level {
        #[allow(deprecated)]
        meta.set_log_level(level);
    }
    meta
}

fn header_name(k: &str) -> Result<http::HeaderName, String> {
    http::HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("invalid header name {k:?}"))
}

fn header_value(v: &str, k: &str) -> Result<http::HeaderValue, String> {
    http::HeaderValue::from_str(v).map_err(|_| format!("invalid value for header {k:?}"))
}

impl Instance {
    /// Whether the connection ended.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Ends the connection: an HTTP session is deleted, a child is stopped (in the background:
    /// [`Instance::stopped`] waits for it).
    pub fn close(&self) {
        self.close.cancel();
    }

    /// Waits until the connection has ended and its child, if any, has exited: at most about
    /// [`DRAIN`] plus twice [`STOP_GRACE`] after [`Instance::close`].
    pub async fn stopped(&self) {
        self.done.cancelled().await;
    }

    /// Requests in flight.
    pub fn inflight(&self) -> usize {
        self.links.iter().map(|l| l.routes.count()).sum::<usize>()
            + self.direct_inflight.load(Ordering::SeqCst)
    }

    /// Whether calls can be relayed on the direct link now.
    pub fn relays_directly(&self) -> bool {
        (self.direct.is_some() || self.pipe.is_some()) && !self.is_closed()
    }

    /// The lists as last fetched, if they are current (no fetch, no wait).
    pub fn current_items(&self) -> Option<Arc<Items>> {
        if self.stale.load(Ordering::SeqCst) {
            return None;
        }
        self.catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Relays one 2026-07-28 call on the direct link (HTTP) or the pipes (stdio), with the
    /// same timeout, cancellation and failure handling as [`Instance::request`]: a transport
    /// failure ends the connection, a timeout or a revocation tells the upstream to cancel.
    pub async fn relay(&self, upstream: &str, call: Relayed<'_>) -> Result<RelayAnswer, ErrorData> {
        self.touch();
        // Counted while in flight however it ends (the client may go away mid-call).
        let _inflight = Inflight::count(&self.direct_inflight);
        let (sent, cancel): (BoxFuture<'_, Result<RelayAnswer, Failed>>, Canceller) =
            if let Some(link) = &self.direct {
                let id = link.next_id();
                let sent = link.send(
                    id,
                    call.method,
                    call.inner,
                    call.arguments,
                    call.capabilities,
                );
                let link = link.clone();
                let cancel: Canceller = Box::new(move |reason| {
                    tokio::spawn(async move { link.cancel(id, reason).await });
                });
                (Box::pin(sent), cancel)
            } else if let (Some(pipe), Some(first)) = (&self.pipe, self.links.first()) {
                // Relayed calls on a child's pipes count for its routing (see [`Routes`]).
                let routes = first.routes.clone();
                let id = pipe.next_id();
                let sent = {
                    let (pipe, id) = (pipe.clone(), id.clone());
                    let (method, inner, args) = (call.method, call.inner, call.arguments);
                    async move {
                        routes.relayed_began();
                        let mut ended = RelayedEnd(&routes, false);
                        let r = pipe.send(&id, method, inner, args).await;
                        ended.1 = r.is_ok();
                        r
                    }
                };
                // Dropping the call (timeout, revocation, the client gone) cancels it at the
                // child (see `PipeLink::send`).
                let cancel: Canceller = Box::new(|_| {});
                (Box::pin(sent), cancel)
            } else {
                return Err(self.transport_failed(upstream, ServiceError::TransportClosed));
            };
        // Armed until the call ends here: dropped earlier (the client went away), it tells the
        // upstream to cancel.
        let mut armed = Armed(Some(cancel));
        let result = tokio::select! {
            r = sent => match r {
                Ok(RelayAnswer::Error(mut e)) => {
                    // An upstream cannot pose as the gateway's own failure reports.
                    if let Some(serde_json::Value::Object(data)) = e.data.as_mut() {
                        data.remove(MARK);
                    }
                    Ok(RelayAnswer::Error(e))
                }
                Ok(answer) => Ok(answer),
                Err(failed) => {
                    let detail = match failed {
                        Failed::Broken(detail) => {
                            self.close();
                            detail
                        }
                        Failed::Call(detail) => detail,
                    };
                    Err(failure(
                        "unavailable",
                        format!("upstream {upstream} is unavailable"),
                        Some(detail),
                    ))
                }
            },
            () = tokio::time::sleep(self.timeout) => {
                armed.fire("mcp-zt: timeout");
                Err(self.timed_out(upstream))
            }
            () = call.ct.cancelled() => {
                armed.fire("cancelled by the client");
                Err(cancelled())
            }
        };
        armed.0 = None;
        self.touch();
        result
    }

    /// Whether nothing used it for `idle` and nothing is in flight.
    pub fn idle_for(&self, idle: Duration) -> bool {
        self.inflight() == 0
            && self
                .last_used
                .lock()
                .map(|t| t.elapsed() >= idle)
                .unwrap_or(false)
    }

    /// The link that serves `caller`: one of its own revision if there is one.
    /// `resources/subscribe` and `unsubscribe` exist only in the older revision: they take the
    /// older link whoever asks (updates come back on that session and the hub routes them).
    fn link(&self, caller: &Caller, request: &ClientRequest) -> Option<&Link> {
        let modern = caller.client.modern
            && !matches!(
                request,
                ClientRequest::SubscribeRequest(_) | ClientRequest::UnsubscribeRequest(_)
            );
        self.links
            .iter()
            .find(|l| l.modern == modern)
            .or_else(|| self.links.first())
    }

    fn options(link: &Link, caller: &Caller) -> PeerRequestOptions {
        let mut options = PeerRequestOptions::no_options();
        if link.modern {
            options.meta = Some(caller_meta(caller));
        }
        options
    }

    fn touch(&self) {
        if let Ok(mut t) = self.last_used.lock() {
            *t = std::time::Instant::now();
        }
    }

    /// The upstream's tools, prompts, resources and templates (cached until it reports a
    /// change).
    pub async fn items(&self) -> Result<Arc<Items>, String> {
        let cached = || {
            self.catalog
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        };
        let fresh =
            |c: &Option<Arc<Items>>| c.clone().filter(|_| !self.stale.load(Ordering::SeqCst));
        if let Some(items) = fresh(&cached()) {
            return Ok(items);
        }
        // One fetch at a time; while it runs, others get the previous lists rather than wait
        // on a slow upstream.
        let _fetching = match self.fetching.try_lock() {
            Ok(g) => g,
            Err(_) => match cached() {
                Some(items) => return Ok(items),
                None => self.fetching.lock().await,
            },
        };
        if let Some(items) = fresh(&cached()) {
            return Ok(items);
        }
        self.stale.store(false, Ordering::SeqCst);
        let failed = match tokio::time::timeout(self.timeout, self.fetch()).await {
            Ok(Ok(items)) => {
                let items = Arc::new(items);
                *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = Some(items.clone());
                return Ok(items);
            }
            Ok(Err(e)) => e,
            Err(_) => format!("no list answer within {:?}", self.timeout),
        };
        self.stale.store(true, Ordering::SeqCst);
        // A connection that is up but failed one fetch keeps its previous lists.
        cached().ok_or(failed)
    }

    async fn fetch(&self) -> Result<Items, String> {
        let Some(peer) = self.links.first().map(|l| &l.peer) else {
            return Err("no connection".into());
        };
        let caps = peer
            .peer_info()
            .map(|i| i.capabilities.clone())
            .unwrap_or_default();
        let e = |e: ServiceError| e.to_string();
        let mut items = Items::default();
        if caps.tools.is_some() {
            items.tools = peer.list_all_tools().await.map_err(e)?;
        }
        if caps.prompts.is_some() {
            items.prompts = peer.list_all_prompts().await.map_err(e)?;
        }
        if caps.resources.is_some() {
            items.resources = peer.list_all_resources().await.map_err(e)?;
            items.templates = peer.list_all_resource_templates().await.map_err(e)?;
        }
        items.tools.truncate(MAX_ITEMS);
        items.prompts.truncate(MAX_ITEMS);
        items.resources.truncate(MAX_ITEMS);
        items.templates.truncate(MAX_ITEMS);
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
        self.touch();
        let Some(link) = self.link(caller, &request) else {
            return Err(self.transport_failed(upstream, ServiceError::TransportClosed));
        };
        let timeout = tokio::time::sleep(self.timeout);
        tokio::pin!(timeout);
        // Even queueing the request may wait (a child that stopped reading): bounded too.
        let handle = tokio::select! {
            h = link.peer.send_request_with_option(request, Self::options(link, caller)) => {
                h.map_err(|e| self.transport_failed(upstream, e))?
            }
            _ = &mut timeout => return Err(self.timed_out(upstream)),
            _ = caller.ct.cancelled() => return Err(cancelled()),
        };
        let route = Route::of(caller);
        let progress = route.progress();
        let RequestHandle {
            rx,
            id,
            progress_token,
            ..
        } = handle;
        link.routes.add(id.clone(), progress_token.clone(), route);
        // If this future is dropped (the client went away), the route still goes, marked
        // abandoned: the upstream may still be working on it.
        let mut guard = RouteGuard {
            routes: &link.routes,
            id: id.clone(),
            token: progress_token.clone(),
            answered: false,
        };
        let cancel = |reason: &str| {
            let peer = link.peer.clone();
            let param = CancelledNotificationParam::new(Some(id.clone()), Some(reason.to_string()));
            // Never wait on an upstream that stopped reading.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), peer.notify_cancelled(param))
                    .await;
            });
        };
        let result = tokio::select! {
            r = rx => match r {
                Ok(Ok(result)) => Ok(result),
                Ok(Err(ServiceError::McpError(mut e))) => {
                    // An upstream cannot pose as the gateway's own failure reports.
                    if let Some(serde_json::Value::Object(data)) = e.data.as_mut() {
                        data.remove(MARK);
                    }
                    Err(e)
                }
                Ok(Err(e)) => Err(self.transport_failed(upstream, e)),
                Err(_) => Err(self.transport_failed(upstream, ServiceError::TransportClosed)),
            },
            _ = &mut timeout => {
                cancel("mcp-zt: timeout");
                Err(self.timed_out(upstream))
            }
            _ = caller.ct.cancelled() => {
                cancel("cancelled by the client");
                Err(cancelled())
            }
        };
        let answered =
            !matches!(&result, Err(e) if is_failure(e, "timeout") || is_failure(e, "cancelled"));
        let asked = caller.progress_token.is_some() || caller.client.log_level.is_some();
        progress.settle(asked).await;
        guard.answered = answered;
        drop(guard);
        self.touch();
        result
    }

    fn timed_out(&self, upstream: &str) -> ErrorData {
        failure(
            "timeout",
            format!(
                "upstream {upstream} did not answer within {} s",
                self.timeout.as_secs()
            ),
            None,
        )
    }

    /// A transport failure ends this connection (the supervisor reconnects with backoff).
    fn transport_failed(&self, upstream: &str, e: ServiceError) -> ErrorData {
        self.close();
        failure(
            "unavailable",
            format!("upstream {upstream} is unavailable"),
            Some(e.to_string()),
        )
    }

    /// Checks that the upstream still answers (on every link; an error answer is an answer:
    /// 2026-07-28 removed ping).
    pub async fn ping(&self) -> bool {
        for link in &self.links {
            let req = ClientRequest::PingRequest(Default::default());
            if !matches!(
                tokio::time::timeout(Duration::from_secs(5), link.peer.send_request(req)).await,
                Ok(Ok(_) | Err(ServiceError::McpError(_)))
            ) {
                return false;
            }
        }
        true
    }
}
