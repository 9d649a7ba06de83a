//! The MCP server handler: every tools/list and tools/call passes the policy first.
//!
//! A tool the caller's role may not use is invisible in tools/list and answers tools/call exactly
//! like a tool that does not exist; the real reason goes to the audit log.

pub mod ratelimit;
pub mod tools;

use std::sync::Arc;
use std::time::Instant;

use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};

use crate::audit::Event;
use crate::server::state::{AppState, ConnInfo};
use crate::tls::verifier::current_policy;

/// The error for both unknown and forbidden tools: identical on the wire.
pub fn tool_not_found() -> ErrorData {
    ErrorData::invalid_params("tool not found", None)
}

/// One handler instance per MCP session (or per stateless request).
#[derive(Clone)]
pub struct ZtMcp {
    state: Arc<AppState>,
}

impl ZtMcp {
    /// A handler over the server state.
    pub fn new(state: Arc<AppState>) -> Self {
        ZtMcp { state }
    }

    fn conn(ctx: &RequestContext<RoleServer>) -> Result<Arc<ConnInfo>, ErrorData> {
        ctx.extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<Arc<ConnInfo>>())
            .cloned()
            // Unreachable behind the TLS accept loop; refuse rather than guess an identity.
            .ok_or_else(|| ErrorData::internal_error("no verified identity on this request", None))
    }
}

impl ServerHandler for ZtMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mcp-zt", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "mcp-zt: tools are gated by the role in your client certificate; call whoami to see it.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let conn = Self::conn(&context)?;
        let policy = current_policy(&self.state.policy);
        let visible: Vec<_> = tools::all()
            .iter()
            .filter(|t| policy.allows(&conn.identity.role, &t.name))
            .cloned()
            .collect();
        // The list depends on who asks: never let a shared cache hand it to someone else.
        Ok(ListToolsResult::with_all_items(visible).with_cache_scope(CacheScope::Private))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let conn = Self::conn(&context)?;
        let who = &conn.identity;
        let tool = request.name.as_ref();
        let audit = |kind: &str| Event::new(kind).peer(conn.peer).who(who).tool(tool);
        let policy = current_policy(&self.state.policy);
        let implemented = tools::exists(tool);
        if !implemented || !policy.allows(&who.role, tool) {
            let reason = if implemented {
                format!("role {:?} may not call {tool:?}", who.role)
            } else {
                "no such tool".to_string()
            };
            self.state.audit.log(audit("tool_denied").reason(reason));
            return Err(tool_not_found());
        }
        if let Some(limit) = policy.tool(tool).and_then(|r| r.rate_per_minute) {
            if let Err(wait) = self
                .state
                .limiter
                .check(&who.serial, tool, limit, Instant::now())
            {
                let secs = wait.as_secs() + 1;
                self.state.audit.log(
                    audit("rate_limited").reason(format!("{limit}/min exceeded, retry in {secs}s")),
                );
                return Err(ErrorData::new(
                    rmcp::model::ErrorCode(-32029),
                    format!("rate limit of {limit} calls per minute for {tool} exceeded: retry after {secs} s"),
                    Some(serde_json::json!({"retry_after_secs": secs})),
                ));
            }
        }
        self.state.audit.log(audit("tool_allowed"));
        let args = request.arguments.unwrap_or_default();
        if !tools::blocks(tool) {
            return Ok(tools::run(&self.state, who, tool, &args)?.into());
        }
        let state = self.state.clone();
        let who = who.clone();
        let name = tool.to_string();
        // sled and the CA do blocking I/O (fsync): keep it off the async workers.
        let result = tokio::task::spawn_blocking(move || tools::run(&state, &who, &name, &args))
            .await
            .map_err(|e| ErrorData::internal_error(format!("tool task failed: {e}"), None))??;
        Ok(result.into())
    }
}
