//! The client side of one upstream connection: what the upstream sends us (progress, log
//! messages, list changes, sampling/elicitation/roots requests) goes to the one client session
//! whose request caused it, never to another.
//!
//! Over streamable HTTP the upstream sends such messages on the response stream of our request,
//! so the origin is exact. Over stdio there is no such link: a server-to-client request is
//! routed only when exactly one client request is in flight on that upstream, and refused
//! otherwise (refusing is safe; guessing could hand one client's prompt to another).
// Sampling, roots and logging are deprecated by SEP-2577 but are what today's servers send.
#![allow(deprecated)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rmcp::model::{
    ClientCapabilities, ClientConfig, ClientResult, CreateMessageRequestParams,
    CreateMessageResult, ElicitRequestParams, ElicitResult, GetExtensions, Implementation,
    ListRootsResult, LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken,
    Request, RequestId, RequestNoParam, ResourceUpdatedNotificationParam, ServerRequest,
};
use rmcp::service::{
    InboundStreamOrigin, NotificationContext, OriginatingRequestId, RequestContext,
};
use rmcp::{ClientHandler, ErrorData, Peer, RoleClient, RoleServer};

use crate::mcp::provider::{Caller, HubEvent, HubSender};

/// Where to send what belongs to one forwarded request.
#[derive(Clone)]
pub struct Route {
    peer: Peer<RoleServer>,
    who: crate::identity::Identity,
    request_id: RequestId,
    progress_token: Option<ProgressToken>,
    progress: Arc<ProgressCount>,
    asker: Option<crate::mcp::provider::Asker>,
    /// The client's revision and log level: log messages go only where it asked for them.
    client: crate::mcp::provider::ClientSide,
}

/// Progress and log notifications of one request: seen, and still being forwarded. rmcp hands
/// each notification to its own task, so one sent just before the answer may still be on its
/// way when the answer arrives; the answer waits for it (the client's stream closes with the
/// answer, and a notification after it would be lost).
///
/// Because those tasks may run in any order, forwarding is serialized per request and a
/// notification whose progress is not above the last one forwarded is dropped: the client sees
/// progress only increase, as MCP requires, whatever order rmcp ran the tasks in.
#[derive(Default)]
pub struct ProgressCount {
    seen: AtomicUsize,
    active: AtomicUsize,
    last: tokio::sync::Mutex<Option<f64>>,
}

impl ProgressCount {
    /// Waits (200 ms at most) for progress and log notifications still being forwarded, if
    /// the request had any. `asked`: the client asked for progress or set a log level. An
    /// upstream may send its last notifications just before the answer (the log line "done",
    /// then the result); rmcp has then spawned their tasks but perhaps not run them yet, so a
    /// moment is given for them to start.
    pub async fn settle(&self, asked: bool) {
        if asked && self.seen.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        if self.seen.load(Ordering::SeqCst) == 0 {
            return;
        }
        for _ in 0..20 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            if self.active.load(Ordering::SeqCst) == 0 {
                return;
            }
        }
    }
}

impl Route {
    /// The route back to `caller`.
    pub fn of(caller: &Caller) -> Self {
        Route {
            peer: caller.peer.clone(),
            who: caller.identity.clone(),
            request_id: caller.request_id.clone(),
            progress_token: caller.progress_token.clone(),
            progress: Arc::default(),
            asker: caller.asker.clone(),
            client: caller.client.clone(),
        }
    }

    /// The request's progress counter.
    pub fn progress(&self) -> Arc<ProgressCount> {
        self.progress.clone()
    }
}

/// The requests in flight on one upstream connection, by our request id and progress token.
#[derive(Default)]
pub struct Routes {
    inflight: Mutex<HashMap<RequestId, Route>>,
    progress: Mutex<HashMap<ProgressToken, Route>>,
    /// Woken at each [`Routes::add`].
    added: tokio::sync::Notify,
    /// Set when a request ended without its answer (timeout, cancellation): the upstream may
    /// still be working on it, so "the only request in flight" no longer tells whose a
    /// message is. Cleared when nothing is in flight.
    abandoned: AtomicBool,
    /// Calls the native transport relays on the same pipes, outside rmcp: while any is in
    /// flight no message is "the only request's".
    relayed: AtomicUsize,
}

/// How long a message from the upstream may wait for the request it belongs to to be
/// recorded: the request is on the wire a moment before [`Routes::add`] runs, and a fast
/// upstream answers (progress, sampling) in that moment.
const ROUTE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

impl Routes {
    /// Records a request sent upstream.
    pub fn add(&self, id: RequestId, token: ProgressToken, route: Route) {
        lock(&self.progress).insert(token, route.clone());
        lock(&self.inflight).insert(id, route);
        self.added.notify_waiters();
    }

    /// Runs `find` until it finds a route or [`ROUTE_WAIT`] has passed, looking again after
    /// every new request.
    async fn wait_for(&self, find: impl Fn(&Routes) -> Option<Route>) -> Option<Route> {
        let deadline = tokio::time::Instant::now() + ROUTE_WAIT;
        loop {
            let added = self.added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            if let Some(r) = find(self) {
                return Some(r);
            }
            if tokio::time::timeout_at(deadline, added).await.is_err() {
                return None;
            }
        }
    }

    fn progress_route(&self, token: &ProgressToken) -> Option<Route> {
        lock(&self.progress).get(token).cloned()
    }

    /// Forgets a request that ended; `answered` is false when it ended without its answer.
    pub fn remove(&self, id: &RequestId, token: &ProgressToken, answered: bool) {
        let mut inflight = lock(&self.inflight);
        inflight.remove(id);
        lock(&self.progress).remove(token);
        if !answered {
            self.abandoned.store(true, Ordering::SeqCst);
        } else if inflight.is_empty() {
            self.abandoned.store(false, Ordering::SeqCst);
        }
    }

    /// A relayed call began.
    pub fn relayed_began(&self) {
        self.relayed.fetch_add(1, Ordering::SeqCst);
    }

    /// A relayed call ended; `answered` is false when it ended without its answer (the
    /// upstream may still be working on it).
    pub fn relayed_ended(&self, answered: bool) {
        self.relayed.fetch_sub(1, Ordering::SeqCst);
        if !answered {
            self.abandoned.store(true, Ordering::SeqCst);
        }
    }

    /// How many requests are in flight.
    pub fn count(&self) -> usize {
        lock(&self.inflight).len()
    }

    /// The client request an upstream message belongs to. Over HTTP: the request whose
    /// response stream carried it, and nothing else (a message on the standalone stream is
    /// tied to no request). Over stdio (no origin at all): the only request in flight, unless
    /// a request was abandoned since the connection was last idle.
    fn origin(&self, origin: Option<&InboundStreamOrigin>) -> Option<Route> {
        let inflight = lock(&self.inflight);
        match origin {
            Some(InboundStreamOrigin::OutboundRequest(id)) => inflight.get(id).cloned(),
            Some(InboundStreamOrigin::Unassociated) => None,
            None if inflight.len() == 1
                && self.relayed.load(Ordering::SeqCst) == 0
                && !self.abandoned.load(Ordering::SeqCst) =>
            {
                inflight.values().next().cloned()
            }
            None => None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The handler of one upstream connection.
pub struct Relay {
    /// The upstream's name, for messages.
    pub upstream: String,
    /// Requests in flight.
    pub routes: Arc<Routes>,
    /// Where list changes and resource updates go.
    pub events: HubSender,
    /// Set when the upstream's lists changed: the cached catalog must be fetched again.
    pub stale: Arc<AtomicBool>,
    /// The certificate of a per-identity connection (its resource updates go to that
    /// certificate's sessions only).
    pub serial: Option<String>,
    /// How long a client may take to answer a sampling, elicitation or roots request.
    pub timeout: std::time::Duration,
    /// Where relayed and refused server-to-client requests are recorded (none for the
    /// one-off connections of `upstream check`).
    pub audit: Option<Arc<crate::audit::Audit>>,
}

impl Relay {
    async fn route(
        &self,
        ctx: &RequestContext<RoleClient>,
        what: &str,
    ) -> Result<Route, ErrorData> {
        let origin = ctx.extensions.get::<InboundStreamOrigin>();
        let route = self.routes.wait_for(|r| r.origin(origin)).await;
        let event =
            |kind: &str| crate::audit::Event::new(kind).item(format!("upstream:{}", self.upstream));
        match route {
            Some(route) => {
                if let Some(audit) = &self.audit {
                    audit.log(
                        event("upstream_request_relayed")
                            .who(&route.who)
                            .reason(format!(
                                "{what} relayed to the session of request {}",
                                route.request_id
                            )),
                    );
                }
                Ok(route)
            }
            None => {
                if let Some(audit) = &self.audit {
                    audit.log(
                        event("upstream_request_refused")
                            .reason(format!("{what}: not tied to exactly one client request")),
                    );
                }
                Err(ErrorData::invalid_request(
                    format!(
                        "mcp-zt: {what} from upstream {} refused: it cannot be tied to one client request",
                        self.upstream
                    ),
                    None,
                ))
            }
        }
    }

    /// Sends a server-to-client request to the client of `route`, on the response stream of
    /// its request.
    async fn ask_client(
        &self,
        route: &Route,
        mut req: ServerRequest,
        ct: tokio_util::sync::CancellationToken,
    ) -> Result<ClientResult, ErrorData> {
        let timeout = self.timeout;
        if let Some(asker) = &route.asker {
            // A 2026-07-28 client: the question becomes part of an `input_required` answer.
            let (tx, rx) = tokio::sync::oneshot::channel();
            let question = crate::mcp::provider::Question {
                request: req,
                answer: tx,
            };
            // The held call takes few questions at a time: an upstream that floods them waits
            // no longer than the client would have.
            if !matches!(
                tokio::time::timeout(timeout, asker.send(question)).await,
                Ok(Ok(()))
            ) {
                return Err(ErrorData::internal_error(
                    "the client request has ended",
                    None,
                ));
            }
            return tokio::select! {
                r = tokio::time::timeout(timeout, rx) => match r {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(_)) => Err(ErrorData::internal_error("the client request has ended", None)),
                    Err(_) => Err(ErrorData::internal_error("the client did not answer in time", None)),
                },
                _ = ct.cancelled() => Err(ErrorData::internal_error("cancelled by the upstream", None)),
            };
        }
        req.extensions_mut()
            .insert(OriginatingRequestId(route.request_id.clone()));
        let peer = route.peer.clone();
        // A task of its own: inside this handler rmcp's task-local request id (the upstream's)
        // would replace the client request id set above, and the request would miss the
        // client's stream.
        let asked = tokio::spawn(async move {
            tokio::select! {
                r = tokio::time::timeout(timeout, peer.send_request(req)) => match r {
                    Ok(Ok(r)) => Ok(r),
                    Ok(Err(rmcp::ServiceError::McpError(e))) => Err(e),
                    Ok(Err(other)) => Err(ErrorData::internal_error(format!("client unreachable: {other}"), None)),
                    Err(_) => Err(ErrorData::internal_error("the client did not answer in time", None)),
                },
                _ = ct.cancelled() => Err(ErrorData::internal_error("cancelled by the upstream", None)),
            }
        });
        asked
            .await
            .map_err(|e| ErrorData::internal_error(format!("relay task failed: {e}"), None))?
    }
}

fn unexpected() -> ErrorData {
    ErrorData::internal_error("the client answered a different method", None)
}

impl ClientHandler for Relay {
    fn get_info(&self) -> ClientConfig {
        let caps = ClientCapabilities::builder()
            .enable_roots()
            .enable_sampling()
            .enable_elicitation()
            .build();
        ClientConfig::new(
            caps,
            Implementation::new("mcp-zt-gateway", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let route = self.route(&context, "sampling request").await?;
        let req = ServerRequest::CreateMessageRequest(Request::new(params));
        match self.ask_client(&route, req, context.ct.clone()).await? {
            ClientResult::CreateMessageResult(r) => Ok(*r),
            _ => Err(unexpected()),
        }
    }

    async fn list_roots(
        &self,
        context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        let route = self.route(&context, "roots/list request").await?;
        let req = ServerRequest::ListRootsRequest(RequestNoParam::default());
        match self.ask_client(&route, req, context.ct.clone()).await? {
            ClientResult::ListRootsResult(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let route = self.route(&context, "elicitation request").await?;
        let req = ServerRequest::ElicitRequest(Request::new(request));
        match self.ask_client(&route, req, context.ct.clone()).await? {
            ClientResult::ElicitResult(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let token = params.progress_token.clone();
        let route = self.routes.wait_for(|r| r.progress_route(&token)).await;
        let Some(route) = route else { return };
        let Some(token) = route.progress_token.clone() else {
            return;
        };
        route.progress.seen.fetch_add(1, Ordering::SeqCst);
        route.progress.active.fetch_add(1, Ordering::SeqCst);
        let mut p = params;
        p.progress_token = token;
        {
            // Held across the send: one notification of this request at a time, in order.
            let mut last = route.progress.last.lock().await;
            if last.is_none_or(|l| p.progress > l) {
                *last = Some(p.progress);
                let _ = route.peer.notify_progress(p).await;
            }
        }
        route.progress.active.fetch_sub(1, Ordering::SeqCst);
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        context: NotificationContext<RoleClient>,
    ) {
        let origin = context.extensions.get::<InboundStreamOrigin>();
        if let Some(route) = self.routes.wait_for(|r| r.origin(origin)).await {
            if route.client.wants_log(params.level) {
                // Counted like progress: an answer that arrives meanwhile waits for it.
                route.progress.seen.fetch_add(1, Ordering::SeqCst);
                route.progress.active.fetch_add(1, Ordering::SeqCst);
                let _ = route.peer.notify_logging_message(params).await;
                route.progress.active.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.events.try_send(HubEvent::ResourceUpdated {
            upstream: self.upstream.clone(),
            serial: self.serial.clone(),
            uri: params.uri,
        });
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.changed();
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.changed();
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.changed();
    }
}

impl Relay {
    fn changed(&self) {
        self.stale.store(true, Ordering::SeqCst);
        let _ = self.events.try_send(HubEvent::Changed);
    }
}
