//! The built-in demo tools (whoami, the data store, certificate administration) as one
//! provider, gated like any upstream. Their names have no prefix.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use rmcp::model::{CallToolResult, ClientRequest, JsonObject, ServerResult};
use rmcp::ErrorData;

use super::provider::{Caller, Items, Provider};
use super::tools::{self, DemoStore};
use crate::identity::Identity;

/// What the built-in provider offers (the same to everyone; the policy filters).
pub fn items() -> Items {
    Items {
        tools: tools::all().to_vec(),
        ..Items::default()
    }
}

/// The demo tools over the server's own store and CA.
pub struct Builtin {
    state: Arc<dyn DemoStore>,
    items: Arc<Items>,
}

impl Builtin {
    /// The provider over the server's store.
    pub fn new(state: Arc<dyn DemoStore>) -> Self {
        Builtin {
            state,
            items: Arc::new(items()),
        }
    }
}

impl Builtin {
    async fn run(
        &self,
        who: &Identity,
        tool: &str,
        args: JsonObject,
    ) -> Result<CallToolResult, ErrorData> {
        if !tools::blocks(tool) {
            return tools::run(&*self.state, who, tool, &args);
        }
        let state = self.state.clone();
        let (who, tool) = (who.clone(), tool.to_string());
        // sled and the CA do blocking I/O (fsync): keep it off the async workers.
        tokio::task::spawn_blocking(move || tools::run(&*state, &who, &tool, &args))
            .await
            .map_err(|e| ErrorData::internal_error(format!("tool task failed: {e}"), None))?
    }
}

impl Provider for Builtin {
    fn name(&self) -> &str {
        "builtin"
    }

    fn prefix(&self) -> &str {
        ""
    }

    fn is_builtin(&self) -> bool {
        true
    }

    fn items<'a>(&'a self, _who: &'a Identity) -> BoxFuture<'a, Result<Arc<Items>, String>> {
        futures_util::future::ready(Ok(self.items.clone())).boxed()
    }

    fn request<'a>(
        &'a self,
        caller: &'a Caller,
        request: ClientRequest,
    ) -> BoxFuture<'a, Result<ServerResult, ErrorData>> {
        async move {
            let ClientRequest::CallToolRequest(req) = request else {
                return Err(ErrorData::method_not_found::<
                    rmcp::model::GetPromptRequestMethod,
                >());
            };
            let tool = req.params.name.to_string();
            let args = req.params.arguments.unwrap_or_default();
            self.run(&caller.identity, &tool, args)
                .await
                .map(ServerResult::CallToolResult)
        }
        .boxed()
    }

    fn answers_directly(&self) -> bool {
        true
    }

    fn call_direct<'a>(
        &'a self,
        who: &'a Identity,
        tool: &'a str,
        args: JsonObject,
    ) -> Option<BoxFuture<'a, Result<CallToolResult, ErrorData>>> {
        // No built-in tool talks to the client mid-call.
        Some(self.run(who, tool, args).boxed())
    }
}
