//! What serves MCP items. The built-in demo tools and every upstream MCP server are providers
//! behind this one trait, so the handler gates all of them the same way and never needs to know
//! which kind answers.
//!
//! Providers speak in their own (inner) names; the handler adds and strips the prefix, checks
//! the policy and writes the audit log before a provider sees a request.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use rmcp::model::{
    ClientCapabilities, ClientRequest, ProgressToken, Prompt, RequestId, RequestMetaObject,
    Resource, ResourceTemplate, ServerResult, Tool,
};
use rmcp::{ErrorData, Peer, RoleServer};
use tokio_util::sync::CancellationToken;

use crate::identity::Identity;

/// Everything one provider offers to one identity, in its own names.
#[derive(Debug, Default, Clone)]
pub struct Items {
    /// Tools.
    pub tools: Vec<Tool>,
    /// Prompts.
    pub prompts: Vec<Prompt>,
    /// Concrete resources (URIs are never renamed).
    pub resources: Vec<Resource>,
    /// Resource templates.
    pub templates: Vec<ResourceTemplate>,
}

/// The client request being served: who asked, on which session, and how to reach it back
/// (progress, sampling, elicitation go to this session and no other).
#[derive(Clone)]
pub struct Caller {
    /// The verified identity of the certificate.
    pub identity: Identity,
    /// The client session's peer: server-to-client messages for this request go here.
    pub peer: Peer<RoleServer>,
    /// The client's id of this request.
    pub request_id: RequestId,
    /// The client's progress token, if it asked for progress.
    pub progress_token: Option<ProgressToken>,
    /// Cancelled when the client cancels the request or its certificate is revoked.
    pub ct: CancellationToken,
    /// What the client said about itself for this request.
    pub client: ClientSide,
    /// Set for a 2026-07-28 client: a server-to-client request an older upstream makes
    /// during this call goes here (it becomes an `input_required` answer) instead of to the
    /// client's session, which has no way to take it.
    pub asker: Option<Asker>,
}

/// One question an upstream asks the client (sampling, elicitation, roots) during a call,
/// with where its answer goes.
pub struct Question {
    /// The upstream's request, as a client of an older revision would receive it.
    pub request: rmcp::model::ServerRequest,
    /// The client's answer, or why there is none.
    pub answer: tokio::sync::oneshot::Sender<Result<rmcp::model::ClientResult, ErrorData>>,
}

/// Where a call's questions go (see [`Caller::asker`]).
pub type Asker = tokio::sync::mpsc::Sender<Question>;

/// The client's protocol era, capabilities and log level, as this request states them (MCP
/// 2026-07-28: in its `_meta`) or as its session declared them (older revisions).
#[derive(Clone, Debug, Default)]
pub struct ClientSide {
    /// Speaks 2026-07-28 or later: no server-to-client requests on its calls (a provider
    /// that needs input answers `input_required` instead), no log messages unless it set a
    /// log level on the request.
    pub modern: bool,
    /// The capabilities it declared (none known: treat as none declared).
    pub capabilities: Option<ClientCapabilities>,
    /// Lowest level of log messages it wants: from the request's `_meta` (modern) or its
    /// session's `logging/setLevel` (older).
    #[allow(deprecated)]
    pub log_level: Option<rmcp::model::LoggingLevel>,
    /// The request's own `_meta` as the client sent it (forwarded to modern upstreams).
    pub meta: RequestMetaObject,
}

impl ClientSide {
    /// Whether a log message at `level` may be sent to this client now: a modern client only
    /// gets those at or above the level it set on the request; an older one those at or
    /// above its session's level (all of them if it set none).
    #[allow(deprecated)]
    pub fn wants_log(&self, level: rmcp::model::LoggingLevel) -> bool {
        match self.log_level {
            Some(min) => log_rank(level) >= log_rank(min),
            None => !self.modern,
        }
    }

    /// Whether the client declared sampling, elicitation (`elicitation.url`: its URL mode)
    /// or roots.
    pub fn declared(&self, capability: &str) -> bool {
        let Some(c) = &self.capabilities else {
            return false;
        };
        match capability {
            "sampling" => c.sampling.is_some(),
            "elicitation" => c.elicitation.is_some(),
            "elicitation.url" => c.elicitation.as_ref().is_some_and(|e| e.url.is_some()),
            "roots" => c.roots.is_some(),
            _ => false,
        }
    }
}

/// Severity order of log levels (debug lowest).
#[allow(deprecated)]
pub fn log_rank(level: rmcp::model::LoggingLevel) -> u8 {
    use rmcp::model::LoggingLevel as L;
    match level {
        L::Debug => 0,
        L::Info => 1,
        L::Notice => 2,
        L::Warning => 3,
        L::Error => 4,
        L::Critical => 5,
        L::Alert => 6,
        L::Emergency => 7,
    }
}

/// Something changed behind a provider that sessions may need to hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    /// A provider's lists changed (or it went down or came back): views are recomputed and
    /// list_changed sent to the sessions whose view changed.
    Changed,
    /// A subscribed resource changed: sent to the sessions that subscribed to this URI
    /// through this provider (and, for a per-identity connection, hold that certificate).
    ResourceUpdated {
        /// The provider's name.
        upstream: String,
        /// The certificate of a per-identity connection.
        serial: Option<String>,
        /// The resource.
        uri: String,
    },
}

/// A sender of [`HubEvent`]s, handed to providers.
pub type HubSender = tokio::sync::mpsc::Sender<HubEvent>;

/// Events queued for the hub at most. Senders never wait: past this, events are dropped (a
/// list change already queued covers a dropped one; resource updates are best effort), so
/// an upstream that floods notifications cannot grow the server's memory.
pub const HUB_QUEUE: usize = 1024;

/// One source of tools, prompts and resources.
pub trait Provider: Send + Sync {
    /// The name used in audit lines: `builtin` or the upstream's name.
    fn name(&self) -> &str;
    /// Prepended to tool and prompt names to make the exposed names.
    fn prefix(&self) -> &str;
    /// What this provider offers to `who`, or why it cannot say now (an upstream that is
    /// down): its items then leave every list.
    fn items<'a>(&'a self, who: &'a Identity) -> BoxFuture<'a, Result<Arc<Items>, String>>;
    /// Serves one request (tools/call, prompts/get, resources/read, resources/subscribe,
    /// resources/unsubscribe, completion/complete) with inner names. The handler has already
    /// checked that the caller may use the item.
    fn request<'a>(
        &'a self,
        caller: &'a Caller,
        request: ClientRequest,
    ) -> BoxFuture<'a, Result<ServerResult, ErrorData>>;
    /// The certificate `serial` was revoked: end everything held for it (sessions upstream,
    /// per-identity children). Called from the revocation path; must not block.
    fn revoked(&self, _serial: &str) {}
    /// The holder's own credentials for this provider changed: end their connections (the
    /// next request starts one with the new values). Must not block.
    fn holder_changed(&self, _holder: &str) {}
    /// Whether each certificate gets a connection of its own (listing it for a caller may
    /// start a child).
    fn identity_bound(&self) -> bool {
        false
    }
    /// Whether this is the built-in provider (its calls are audited as tool calls, not as
    /// forwarded requests).
    fn is_builtin(&self) -> bool {
        false
    }
    /// Whether looking a name up here has no effect beyond the lists (it starts no child, no
    /// connection and no login), so the native transport's direct path may look names up
    /// here before it knows whether it takes the call.
    fn answers_directly(&self) -> bool {
        false
    }
    /// Tool `tool` (inner name) run for `who` without a client session: for a provider whose
    /// calls never send progress, logs or questions to the client, so the native transport
    /// can answer them directly. `None`: only through [`Provider::request`].
    fn call_direct<'a>(
        &'a self,
        _who: &'a Identity,
        _tool: &'a str,
        _args: rmcp::model::JsonObject,
    ) -> Option<BoxFuture<'a, Result<rmcp::model::CallToolResult, ErrorData>>> {
        None
    }
    /// A 2026-07-28 call relayed to this provider without a client session and without rmcp's
    /// client, for a caller that asked for no progress and no log messages. `None` (decided
    /// at once, with no effect) where this provider cannot: only through
    /// [`Provider::request`].
    fn relay_direct<'a>(
        &'a self,
        _call: Relayed<'a>,
    ) -> Option<BoxFuture<'a, Result<RelayAnswer, ErrorData>>> {
        None
    }
}

/// One call for [`Provider::relay_direct`].
pub struct Relayed<'a> {
    /// `tools/call`.
    pub method: &'a str,
    /// The item's inner name.
    pub inner: &'a str,
    /// The arguments as the client sent them.
    pub arguments: Option<&'a serde_json::value::RawValue>,
    /// The calling client's capabilities (its request's `_meta`).
    pub capabilities: &'a ClientCapabilities,
    /// Cancelled when the caller's certificate is revoked.
    pub ct: CancellationToken,
}

/// What a provider answered a relayed call.
#[derive(Debug)]
pub enum RelayAnswer {
    /// The `result` as the provider sent it.
    Result(Box<serde_json::value::RawValue>),
    /// The provider's own error (never one marked as the gateway's own failure).
    Error(ErrorData),
}

/// A shared provider.
pub type SharedProvider = Arc<dyn Provider>;

/// Longest exposed name a client is shown; longer ones are left out.
pub const MAX_EXPOSED: usize = 128;

/// Whether an exposed tool or prompt name keeps to `[A-Za-z0-9_.-]{1,128}`.
pub fn valid_exposed(name: &str) -> bool {
    (1..=MAX_EXPOSED).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The key marking, in an error's data, a failure of the gateway itself (not an upstream's
/// answer): `timeout`, `unavailable` or `cancelled`, with an optional `detail` for the audit
/// log that is removed before the client sees the error.
pub const FAILURE_MARK: &str = "mcp_zt";
