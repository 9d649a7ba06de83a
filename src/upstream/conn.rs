//! One live MCP client connection to an upstream: a stdio child or a streamable HTTP session.
//! Forwards requests with a timeout, cancels upstream what the client cancelled, caches the
//! upstream's lists until it says they changed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
use super::direct::DirectLink;
pub(crate) use super::http_client::http_client;
use super::pipe::PipeLink;

/// How long a closing connection waits for rmcp to finish the requests in flight before its
/// child is stopped regardless.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(3);
use super::bearer::{BearerClient, BearerSlot};
use super::config::{Transport, Upstream, IDENTITY_ENV, IDENTITY_HEADERS};
use super::relay::{Relay, Route, Routes};
use crate::identity::Identity;
use crate::mcp::provider::{Caller, HubSender, Items};

mod direct_call;
mod open;

pub use open::connect;

/// Most items of one kind taken from an upstream's lists.
const MAX_ITEMS: usize = 10_000;

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
