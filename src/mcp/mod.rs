//! The MCP server handler: every list and every use of a tool, prompt or resource passes the
//! gate first, whichever provider (built-in or upstream) serves it.
//!
//! An item the caller's role may not use is invisible in its list and answers exactly like an
//! item that does not exist, per method; the real reason goes to the audit log.

pub mod builtin;
pub mod diagnostics;
pub mod direct;
pub mod envelope;
pub mod gate;
pub mod hub;
pub mod mrtr;
pub mod provider;
pub mod ratelimit;
mod resume;
pub mod state;
pub mod template;
pub mod tools;
mod uri;

use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, ClientRequest, CompleteRequestParams,
    CompleteResult, GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, Reference, Request, ServerCapabilities,
    ServerConfig, ServerResult, SubscribeRequestParams, SubscriptionFilter,
    UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};

use self::gate::Outcome;
use self::hub::{Hub, ListKind, SessionSlot, View};
use self::provider::{Caller, ClientSide};
use self::resume::provider_state;
use self::template::template_matches;
use self::uri::resource_owner;
use crate::identity::ConnInfo;
use crate::policy::rules::Kind;

/// The error for both unknown and forbidden tools: identical on the wire.
pub fn tool_not_found() -> ErrorData {
    ErrorData::invalid_params("tool not found", None)
}

/// The error for both unknown and forbidden prompts.
pub fn prompt_not_found() -> ErrorData {
    ErrorData::invalid_params("prompt not found", None)
}

/// The error for both unknown and forbidden resources.
pub fn resource_not_found(uri: &str) -> ErrorData {
    ErrorData::resource_not_found(
        "resource not found",
        Some(serde_json::json!({ "uri": uri })),
    )
}

/// Most resource URIs one `subscriptions/listen` stream follows.
pub const MAX_LISTEN_URIS: usize = 64;

/// Items per page of a list answer.
pub const PAGE: usize = 200;

/// One handler instance per MCP session (or per stateless request).
#[derive(Clone)]
pub struct ZtMcp {
    hub: Arc<Hub>,
    slot: Arc<SessionSlot>,
}

struct Ask {
    conn: Arc<ConnInfo>,
    peer: String,
    /// Taken before anything awaits: a revocation from then on cancels this request.
    ct: tokio_util::sync::CancellationToken,
}

impl ZtMcp {
    /// A handler for one session.
    pub fn new(hub: Arc<Hub>) -> Self {
        let slot = hub.session();
        ZtMcp { hub, slot }
    }

    fn ask(&self, ctx: &RequestContext<RoleServer>) -> Result<Ask, ErrorData> {
        let conn = ctx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<Arc<ConnInfo>>())
            .cloned()
            // Unreachable behind the TLS accept loop; refuse rather than guess an identity.
            .ok_or_else(|| {
                ErrorData::internal_error("no verified identity on this request", None)
            })?;
        self.slot.attach(&ctx.peer, &conn.identity);
        let ct = self.hub.request_token(&conn.identity.serial);
        if ct.is_cancelled() {
            return Err(ErrorData::invalid_request("certificate revoked", None));
        }
        Ok(Ask {
            peer: conn.peer.to_string(),
            conn,
            ct,
        })
    }

    fn caller(&self, ask: &Ask, ctx: &RequestContext<RoleServer>) -> Caller {
        Caller {
            identity: ask.conn.identity.clone(),
            peer: ctx.peer.clone(),
            request_id: ctx.id.clone(),
            progress_token: ctx.meta.get_progress_token(),
            ct: ask.ct.clone(),
            client: self.client_side(ctx),
            asker: None,
        }
    }

    /// What the client says about itself on this request.
    fn client_side(&self, ctx: &RequestContext<RoleServer>) -> ClientSide {
        let modern = ctx
            .meta
            .protocol_version()
            .is_some_and(|v| !v.has_initialize());
        ClientSide {
            modern,
            capabilities: ctx.client_capabilities(),
            log_level: if modern {
                ctx.meta.log_level()
            } else {
                self.slot.log_level()
            },
            meta: ctx.meta.clone(),
        }
    }

    /// Runs `request` on provider `idx`; a client cancellation reaches the provider (which
    /// cancels upstream) and the forwarded call is audited.
    async fn forward(
        &self,
        provider: &provider::SharedProvider,
        ask: &Ask,
        ctx: &RequestContext<RoleServer>,
        item: &str,
        request: ClientRequest,
        resume: Option<String>,
    ) -> Result<ServerResult, ErrorData> {
        let provider = provider.clone();
        let caller = self.caller(ask, ctx);
        let started = Instant::now();
        let mut request = request;
        let mut rounds = 0;
        // Only these methods can answer input_required.
        let askable = matches!(
            request,
            ClientRequest::CallToolRequest(_)
                | ClientRequest::GetPromptRequest(_)
                | ClientRequest::ReadResourceRequest(_)
        );
        let translating = caller.client.modern && askable && !provider.is_builtin();
        // A retry naming a held call: it must still be held, for this certificate.
        let held = match resume {
            Some(id) => {
                let taken = translating
                    .then(|| {
                        self.hub
                            .pending
                            .take(&id, &caller.identity.serial, self.hub.sealer.ttl())
                    })
                    .flatten();
                if taken.is_none() {
                    self.hub.gate.request_state_refused(
                        &caller.identity,
                        &ask.peer,
                        "resume",
                        item,
                        &state::StateError::NotHeld,
                    );
                    return Err(ErrorData::invalid_params(
                        "this request can no longer be continued (expired, answered or cancelled): start it over",
                        None,
                    ));
                }
                taken
            }
            None => None,
        };
        let result = if translating {
            self.translated(provider.clone(), caller.clone(), request, ctx, held)
                .await
        } else {
            loop {
                let result = {
                    let fut = provider.request(&caller, request.clone());
                    tokio::pin!(fut);
                    tokio::select! {
                        r = &mut fut => r,
                        _ = ctx.ct.cancelled() => {
                            caller.ct.cancel();
                            fut.await
                        }
                    }
                };
                // A client of an older revision cannot take `input_required`: ask it the classic
                // way and retry with its answers.
                match result {
                    Ok(ServerResult::InputRequiredResult(asked))
                        if !caller.client.modern && rounds < mrtr::MAX_ROUNDS =>
                    {
                        rounds += 1;
                        let asked_for: Vec<String> = asked
                            .input_requests
                            .iter()
                            .flatten()
                            .map(|(_, q)| mrtr::method_of(q))
                            .collect();
                        self.hub.gate.asked_classic(
                            &caller.identity,
                            &ask.peer,
                            provider.name(),
                            item,
                            &asked_for,
                        );
                        let answers = tokio::select! {
                            a = mrtr::ask_classic(&ctx.peer, &asked) => a,
                            _ = caller.ct.cancelled() => Err(ErrorData::invalid_request("request cancelled", None)),
                            _ = ctx.ct.cancelled() => Err(ErrorData::invalid_request("request cancelled", None)),
                        };
                        match answers
                            .and_then(|a| mrtr::retry_with(&request, a, asked.request_state))
                        {
                            Ok(next) => request = next,
                            Err(e) => break Err(e),
                        }
                    }
                    Ok(ServerResult::InputRequiredResult(_)) if !caller.client.modern => {
                        break Err(ErrorData::internal_error(
                            "the provider kept asking for input",
                            None,
                        ))
                    }
                    Ok(mut r) => {
                        if caller.client.modern {
                            mrtr::mark_complete(&mut r);
                            provider_state(&mut r);
                        }
                        break Ok(r);
                    }
                    Err(e) => break Err(e),
                }
            }
        };
        if !provider.is_builtin() {
            let (outcome, detail) = match &result {
                Ok(ServerResult::CallToolResult(r)) if r.is_error == Some(true) => {
                    (Outcome::ToolError, None)
                }
                Ok(_) => (Outcome::Ok, None),
                Err(e) => (outcome_of(e), Some(audit_detail(e))),
            };
            self.hub.gate.forwarded(
                &ask.conn.identity,
                &ask.peer,
                provider.name(),
                item,
                outcome,
                started.elapsed(),
                detail,
            );
        }
        result.map_err(without_failure_detail)
    }
}

/// The detail of the gateway's own failures is for the audit log, not the client.
fn without_failure_detail(mut e: ErrorData) -> ErrorData {
    if let Some(serde_json::Value::Object(data)) = e.data.as_mut() {
        if data.contains_key(provider::FAILURE_MARK) {
            data.remove("detail");
        }
    }
    e
}

/// A tool that could not run (upstream down, timeout) answers a tool error the user can read;
/// the audit line already says why. Other errors stay JSON-RPC errors.
fn tool_answer(result: Result<ServerResult, ErrorData>) -> Result<ServerResult, ErrorData> {
    match result {
        Err(e) if outcome_of(&e) != Outcome::Error => Ok(ServerResult::CallToolResult(
            rmcp::model::CallToolResult::error(vec![rmcp::model::ContentBlock::text(
                e.message.to_string(),
            )]),
        )),
        other => other,
    }
}

/// What the audit line says of a failed forwarded request: the message, and the gateway's own
/// detail of a failure (never sent to the client).
fn audit_detail(e: &ErrorData) -> String {
    e.data
        .as_ref()
        .and_then(|d| d.get("detail"))
        .and_then(|d| d.as_str())
        .map_or_else(|| e.message.to_string(), |d| format!("{}: {d}", e.message))
}

/// The outcome word for an error a provider answered.
fn outcome_of(e: &ErrorData) -> Outcome {
    match e
        .data
        .as_ref()
        .and_then(|d| d.get("mcp_zt"))
        .and_then(|v| v.as_str())
    {
        Some("timeout") => Outcome::Timeout,
        Some("unavailable") => Outcome::Unavailable,
        Some("cancelled") => Outcome::Cancelled,
        _ => Outcome::Error,
    }
}

/// Opaque cursors over the merged list: the offset, encoded so clients do not rely on it.
fn page<T>(items: Vec<T>, cursor: Option<&str>) -> Result<(Vec<T>, Option<String>), ErrorData> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let start = match cursor {
        None => 0,
        Some(c) => b64
            .decode(c)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.strip_prefix("mcp-zt/")
                    .and_then(|n| n.parse::<usize>().ok())
            })
            .filter(|n| *n <= items.len())
            .ok_or_else(|| ErrorData::invalid_params("invalid cursor", None))?,
    };
    let end = (start + PAGE).min(items.len());
    let next = (end < items.len()).then(|| b64.encode(format!("mcp-zt/{end}")));
    Ok((
        items.into_iter().skip(start).take(end - start).collect(),
        next,
    ))
}

fn cursor(p: &Option<PaginatedRequestParams>) -> Option<&str> {
    p.as_ref().and_then(|p| p.cursor.as_deref())
}

impl ServerHandler for ZtMcp {
    #[allow(deprecated)]
    fn get_info(&self) -> ServerConfig {
        let caps = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_resources()
            .enable_tools()
            .enable_prompts_list_changed()
            .enable_resources_list_changed()
            .enable_resources_subscribe()
            .enable_tool_list_changed()
            .build();
        ServerConfig::new(caps)
            .with_server_info(Implementation::new("mcp-zt", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "mcp-zt: tools, prompts and resources are gated by the role in your client certificate; call whoami to see it.",
            )
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let ask = self.ask(&context)?;
        let view = self.hub.view(&ask.conn.identity).await;
        self.slot
            .shown(ListKind::Tools, view.digest(ListKind::Tools));
        let (items, next) = page(view.tools(), cursor(&request))?;
        let mut result = ListToolsResult::with_all_items(items);
        result.next_cursor = next;
        // The list depends on who asks: never let a shared cache hand it to someone else.
        Ok(result.with_cache_scope(CacheScope::Private))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let ask = self.ask(&context)?;
        let who = &ask.conn.identity;
        let name = request.name.to_string();
        let found = match self.hub.find_tool(who, &name).await {
            hub::Lookup::Found(found) => Some(found),
            hub::Lookup::Missing => None,
            // Offered twice: the whole view decides (and audits the clash).
            hub::Lookup::Clash => {
                let view = self.hub.view(who).await;
                let entry = view.tools.iter().find(|e| e.item.name == name);
                entry.map(|e| hub::Found {
                    provider: view.providers[e.provider].clone(),
                    inner: e.inner.clone(),
                    visible: e.visible,
                })
            }
        };
        let Some(entry) = found else {
            self.hub
                .gate
                .denied(who, &ask.peer, "tool", &name, "no such tool".into());
            return Err(tool_not_found());
        };
        if !entry.visible {
            let why = format!("role {:?} may not call {name:?}", who.role);
            self.hub.gate.denied(who, &ask.peer, "tool", &name, why);
            return Err(tool_not_found());
        }
        self.hub.gate.rate(who, &name, &ask.peer)?;
        // Checked again at the decision: a revocation applied while the lookup awaited wins.
        if ask.ct.is_cancelled() {
            return Err(ErrorData::invalid_request("certificate revoked", None));
        }
        self.hub.gate.allowed(who, &ask.peer, &name);
        let mut inner = request;
        inner.name = entry.inner.clone().into();
        let item = format!("tool:{name}");
        let served_by = entry.provider.name().to_string();
        let to = ("tools/call", name.as_str(), served_by.as_str());
        let resume = self.unseal(&ask, to, &mut inner.request_state)?;
        let req = ClientRequest::CallToolRequest(Request::new(inner));
        let result = self
            .forward(&entry.provider, &ask, &context, &item, req, resume)
            .await;
        let mut result = tool_answer(result)?;
        self.seal(&ask, to, &mut result);
        match result {
            ServerResult::CallToolResult(r) => Ok(r.into()),
            ServerResult::InputRequiredResult(r) => Ok(r.into()),
            _ => Err(ErrorData::internal_error(
                "the provider answered a different method",
                None,
            )),
        }
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let ask = self.ask(&context)?;
        let view = self.hub.view(&ask.conn.identity).await;
        self.slot
            .shown(ListKind::Prompts, view.digest(ListKind::Prompts));
        let (items, next) = page(view.prompts(), cursor(&request))?;
        let mut result = ListPromptsResult::with_all_items(items);
        result.next_cursor = next;
        Ok(result.with_cache_scope(CacheScope::Private))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let ask = self.ask(&context)?;
        let who = &ask.conn.identity;
        let name = request.name.clone();
        let view = self.hub.view(who).await;
        let entry = view.prompts.iter().find(|e| e.item.name == name);
        let Some(entry) = entry.filter(|e| e.visible) else {
            let why = match entry {
                None => "no such prompt".to_string(),
                Some(_) => format!("role {:?} may not get {name:?}", who.role),
            };
            self.hub.gate.denied(who, &ask.peer, "prompt", &name, why);
            return Err(prompt_not_found());
        };
        let mut inner = request;
        inner.name = entry.inner.clone();
        let (idx, item) = (entry.provider, format!("prompt:{name}"));
        let served_by = view.providers[idx].name().to_string();
        let to = ("prompts/get", name.as_str(), served_by.as_str());
        let resume = self.unseal(&ask, to, &mut inner.request_state)?;
        let req = ClientRequest::GetPromptRequest(Request::new(inner));
        let mut result = self
            .forward(&view.providers[idx], &ask, &context, &item, req, resume)
            .await?;
        self.seal(&ask, to, &mut result);
        match result {
            ServerResult::GetPromptResult(r) => Ok(r.into()),
            ServerResult::InputRequiredResult(r) => Ok(r.into()),
            _ => Err(ErrorData::internal_error(
                "the provider answered a different method",
                None,
            )),
        }
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let ask = self.ask(&context)?;
        let view = self.hub.view(&ask.conn.identity).await;
        self.slot
            .shown(ListKind::Resources, view.digest(ListKind::Resources));
        let (items, next) = page(view.resources(), cursor(&request))?;
        let mut result = ListResourcesResult::with_all_items(items);
        result.next_cursor = next;
        Ok(result.with_cache_scope(CacheScope::Private))
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let ask = self.ask(&context)?;
        let view = self.hub.view(&ask.conn.identity).await;
        self.slot
            .shown(ListKind::Resources, view.digest(ListKind::Resources));
        let (items, next) = page(view.templates(), cursor(&request))?;
        let mut result = ListResourceTemplatesResult::with_all_items(items);
        result.next_cursor = next;
        Ok(result.with_cache_scope(CacheScope::Private))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let ask = self.ask(&context)?;
        let uri = request.uri.clone();
        let (view, idx) = self.resolve_uri(&ask, &uri, "read").await?;
        let mut request = request;
        let served_by = view.providers[idx].name().to_string();
        let to = ("resources/read", uri.as_str(), served_by.as_str());
        let resume = self.unseal(&ask, to, &mut request.request_state)?;
        let req = ClientRequest::ReadResourceRequest(Request::new(request));
        let item = format!("resource:{uri}");
        let mut result = self
            .forward(&view.providers[idx], &ask, &context, &item, req, resume)
            .await?;
        self.seal(&ask, to, &mut result);
        match result {
            ServerResult::ReadResourceResult(r) => Ok(r.into()),
            ServerResult::InputRequiredResult(r) => Ok(r.into()),
            _ => Err(ErrorData::internal_error(
                "the provider answered a different method",
                None,
            )),
        }
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let ask = self.ask(&context)?;
        let uri = request.uri.clone();
        let (view, idx) = self.resolve_uri(&ask, &uri, "subscribe to").await?;
        let req = ClientRequest::SubscribeRequest(Request::new(request));
        let item = format!("resource:{uri}");
        let provider = view.providers[idx].name().to_string();
        if !self.slot.subscribe(&provider, &uri, true) {
            return Err(ErrorData::invalid_request(
                format!(
                    "too many subscriptions (at most {})",
                    hub::MAX_SUBSCRIPTIONS
                ),
                None,
            ));
        }
        if let Err(e) = self
            .forward(&view.providers[idx], &ask, &context, &item, req, None)
            .await
        {
            self.slot.subscribe(&provider, &uri, false);
            return Err(e);
        }
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let ask = self.ask(&context)?;
        let uri = request.uri.clone();
        let (view, idx) = self.resolve_uri(&ask, &uri, "unsubscribe from").await?;
        self.slot.subscribe(view.providers[idx].name(), &uri, false);
        let req = ClientRequest::UnsubscribeRequest(Request::new(request));
        let item = format!("resource:{uri}");
        self.forward(&view.providers[idx], &ask, &context, &item, req, None)
            .await?;
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let ask = self.ask(&context)?;
        let who = &ask.conn.identity;
        let view = self.hub.view(who).await;
        let mut inner = request;
        let (idx, item) = match &mut inner.r#ref {
            Reference::Prompt(p) => {
                let name = p.name.clone();
                let entry = view.prompts.iter().find(|e| e.item.name == name);
                let Some(entry) = entry.filter(|e| e.visible) else {
                    let why = format!("completion for a prompt {:?} may not see", who.role);
                    self.hub.gate.denied(who, &ask.peer, "prompt", &name, why);
                    return Err(prompt_not_found());
                };
                p.name = entry.inner.clone();
                (entry.provider, format!("prompt:{name}"))
            }
            Reference::Resource(r) => {
                let uri = r.uri.clone();
                let entry = view
                    .templates
                    .iter()
                    .find(|e| e.visible && e.item.uri_template == uri)
                    .map(|e| e.provider)
                    .or_else(|| {
                        view.resources
                            .iter()
                            .find(|e| e.visible && e.item.uri == uri)
                            .map(|e| e.provider)
                    });
                let Some(idx) = entry else {
                    let why = format!("completion for a resource {:?} may not see", who.role);
                    self.hub.gate.denied(who, &ask.peer, "resource", &uri, why);
                    return Err(resource_not_found(&uri));
                };
                (idx, format!("resource:{uri}"))
            }
            _ => {
                return Err(ErrorData::invalid_params(
                    "unknown completion reference",
                    None,
                ))
            }
        };
        // For a resource template, a value is kept only if the URI it completes (the template
        // fully expanded, RFC 6570, with the context's values for the other variables) is
        // canonical and one the role may read: completion must not list what the policy hides.
        let template = match &inner.r#ref {
            Reference::Resource(r) => {
                let others = inner
                    .context
                    .as_ref()
                    .and_then(|c| c.arguments.clone())
                    .unwrap_or_default();
                Some((r.uri.clone(), inner.argument.name.clone(), others))
            }
            _ => None,
        };
        let req = ClientRequest::CompleteRequest(Request::new(inner));
        match self
            .forward(&view.providers[idx], &ask, &context, &item, req, None)
            .await?
        {
            ServerResult::CompleteResult(mut r) => {
                if let Some((uri, arg, others)) = template {
                    let policy = self.hub.gate.policy();
                    let before = r.completion.values.len();
                    r.completion.values.retain(|v| {
                        template::completion_permitted(&uri, &arg, v, &others, |concrete| {
                            policy.permits(&who.role, Kind::Resource, concrete)
                        })
                    });
                    if r.completion.values.len() != before {
                        r.completion.total = None;
                    }
                }
                Ok(r)
            }
            _ => Err(ErrorData::internal_error(
                "the provider answered a different method",
                None,
            )),
        }
    }

    #[allow(deprecated)]
    async fn set_level(
        &self,
        request: rmcp::model::SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Log messages reach only the session whose request caused them, at or above the
        // level it set.
        self.ask(&context)?;
        self.slot.set_log_level(request.level);
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // Everything may be asked for; resource URIs the role may not read are dropped in
        // `listen`, where the caller is known.
        Some(requested.clone())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let ctx = context.request_context();
        let ask = self.ask(ctx)?;
        let who = &ask.conn.identity;
        let view = self.hub.view(who).await;
        let digests =
            [ListKind::Tools, ListKind::Prompts, ListKind::Resources].map(|k| view.digest(k));
        let uris = context
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default();
        let policy = self.hub.gate.policy();
        // Each URI may mean a subscription upstream: a bounded number per stream.
        for uri in uris.iter().take(MAX_LISTEN_URIS) {
            let allowed = policy.permits(&who.role, Kind::Resource, uri);
            let Some(idx) = resource_owner(&view, allowed, uri) else {
                let why = format!(
                    "subscriptions/listen: role {:?} may not read {uri:?}, or it does not exist",
                    who.role
                );
                self.hub.gate.denied(who, &ask.peer, "resource", uri, why);
                continue;
            };
            let provider = view.providers[idx].clone();
            self.slot.subscribe(provider.name(), uri, true);
            if !provider.is_builtin() {
                // The upstream keeps sending updates for this URI; the hub routes them here.
                let req = ClientRequest::SubscribeRequest(Request::new(
                    SubscribeRequestParams::new(uri.clone()),
                ));
                let item = format!("resource:{uri}");
                let _ = self
                    .forward(&view.providers[idx], &ask, ctx, &item, req, None)
                    .await;
            }
        }
        self.slot.listen(context.sink().clone(), digests);
        self.hub.gate.listening(who, &ask.peer, context.accepted());
        tokio::select! {
            _ = context.cancelled() => {}
            _ = ask.ct.cancelled() => {}
        }
        Ok(())
    }
}

impl ZtMcp {
    /// The provider serving `uri` for this caller, or the answer for a missing resource
    /// (also when the role may not see it; the reason is audited).
    async fn resolve_uri(
        &self,
        ask: &Ask,
        uri: &str,
        verb: &str,
    ) -> Result<(View, usize), ErrorData> {
        let who = &ask.conn.identity;
        let view = self.hub.view(who).await;
        let allowed = self
            .hub
            .gate
            .policy()
            .permits(&who.role, Kind::Resource, uri);
        match resource_owner(&view, allowed, uri) {
            Some(idx) => Ok((view, idx)),
            None => {
                // For the audit line only: listed, or the shape of a template (visible or not).
                let exists = view.resources.iter().any(|e| e.item.uri == uri)
                    || view
                        .templates
                        .iter()
                        .any(|e| template_matches(&e.item.uri_template, uri));
                let why = if exists {
                    format!("role {:?} may not {verb} {uri:?}", who.role)
                } else {
                    "no such resource".to_string()
                };
                self.hub.gate.denied(who, &ask.peer, "resource", uri, why);
                Err(resource_not_found(uri))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_walk_the_whole_list_and_refuse_garbage() {
        let items: Vec<usize> = (0..PAGE * 2 + 3).collect();
        let (first, next) = page(items.clone(), None).unwrap();
        assert_eq!(first.len(), PAGE);
        let (second, next) = page(items.clone(), next.as_deref()).unwrap();
        assert_eq!(second[0], PAGE);
        let (third, next) = page(items.clone(), next.as_deref()).unwrap();
        assert_eq!((third.len(), next), (3, None));
        assert!(page(items.clone(), Some("bogus")).is_err());
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        assert!(page(items, Some(&b64.encode("mcp-zt/99999"))).is_err());
    }
}
