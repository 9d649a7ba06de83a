//! Diagnostic tools for protocol checks (`serve --diagnostic-tools`, off by default): small
//! tools whose only job is to make mcp-zt's own protocol machinery observable to an outside
//! checker such as the official MCP conformance suite. They are gated by the policy like any
//! tool (names `test_*`), and every path they take is the real one: the capability check
//! (`-32021`), `input_required` with a sealed `requestState` for 2026-07-28 clients and a
//! classic server-to-client request for older ones, log messages only at the level the client
//! asked for, and list changes delivered through the hub to `subscriptions/listen` streams.

use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientRequest, ContentBlock,
    GetPromptResult, InputRequiredResult, Prompt, PromptMessage, Role, ServerRequest, ServerResult,
    Tool,
};
use rmcp::ErrorData;
use serde_json::{json, Value};

use super::provider::{Caller, HubEvent, HubSender, Items, Provider};
use crate::identity::Identity;

/// The tool that appears and disappears with `test_trigger_tool_change`.
const DYNAMIC_TOOL: &str = "test_dynamic_tool";
/// The prompt that appears and disappears with `test_trigger_prompt_change`.
const DYNAMIC_PROMPT: &str = "test_dynamic_prompt";

/// The diagnostic provider.
pub struct Diagnostics {
    items: Mutex<Arc<Items>>,
    events: HubSender,
}

fn tool(name: &str, description: &str) -> Tool {
    let schema = Arc::new(
        json!({ "type": "object", "properties": {} })
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    Tool::new(name.to_string(), description.to_string(), schema)
}

fn base_items() -> Items {
    Items {
        tools: vec![
            tool(
                "test_missing_capability",
                "Needs the client's sampling capability: -32021 without it, else asks for one sample.",
            ),
            tool(
                "test_streaming_elicitation",
                "Asks the client one question (elicitation) before answering.",
            ),
            tool(
                "test_logging_tool",
                "Sends three log messages (debug, info, warning), each only if the client's log level allows it.",
            ),
            tool(
                "test_trigger_tool_change",
                "Adds or removes the tool test_dynamic_tool (a tools list_changed follows).",
            ),
            tool(
                "test_trigger_prompt_change",
                "Adds or removes the prompt test_dynamic_prompt (a prompts list_changed follows).",
            ),
        ],
        ..Items::default()
    }
}

impl Diagnostics {
    /// The provider; `events` is the hub's queue (list changes).
    pub fn new(events: HubSender) -> Self {
        Diagnostics {
            items: Mutex::new(Arc::new(base_items())),
            events,
        }
    }

    fn toggle(&self, tools: bool) -> bool {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = (**items).clone();
        let added = if tools {
            let had = next.tools.iter().any(|t| t.name == DYNAMIC_TOOL);
            if had {
                next.tools.retain(|t| t.name != DYNAMIC_TOOL);
            } else {
                next.tools.push(tool(
                    DYNAMIC_TOOL,
                    "Present between two test_trigger_tool_change calls.",
                ));
            }
            !had
        } else {
            let had = next.prompts.iter().any(|p| p.name == DYNAMIC_PROMPT);
            if had {
                next.prompts.retain(|p| p.name != DYNAMIC_PROMPT);
            } else {
                next.prompts.push(Prompt::new(
                    DYNAMIC_PROMPT,
                    Some("Present between two test_trigger_prompt_change calls."),
                    None,
                ));
            }
            !had
        };
        *items = Arc::new(next);
        let _ = self.events.try_send(HubEvent::Changed);
        added
    }
}

fn text(s: impl Into<String>) -> ServerResult {
    ServerResult::CallToolResult(CallToolResult::success(vec![ContentBlock::text(s)]))
}

fn missing(capability: &str) -> ErrorData {
    let caps: ClientCapabilities =
        serde_json::from_value(json!({ capability: {} })).unwrap_or_default();
    ErrorData::missing_required_client_capability(caps)
}

/// One question to the client, asked the way its protocol revision allows: `Ok(Ok(answer))`
/// when the answer is at hand, `Ok(Err(result))` when a 2026-07-28 client must be sent
/// `input_required` and retry.
async fn ask(
    caller: &Caller,
    req: &CallToolRequestParams,
    state: &str,
    key: &str,
    question: Value,
) -> Result<Result<Value, ServerResult>, ErrorData> {
    if caller.client.modern {
        if let Some(answer) = req.input_responses.as_ref().and_then(|r| r.get(key)) {
            // Our own state must have come back (sealed by the handler, opened for us).
            if req.request_state.as_deref() != Some(state) {
                return Err(ErrorData::invalid_params(
                    "answer without the requestState it belongs to",
                    None,
                ));
            }
            return Ok(Ok(answer.clone()));
        }
        let result: InputRequiredResult = serde_json::from_value(json!({
            "resultType": "input_required",
            "inputRequests": { key: question },
            "requestState": state,
        }))
        .map_err(|e| ErrorData::internal_error(format!("input request: {e}"), None))?;
        return Ok(Err(ServerResult::InputRequiredResult(result)));
    }
    let request: ServerRequest = serde_json::from_value(question)
        .map_err(|e| ErrorData::internal_error(format!("input request: {e}"), None))?;
    let answer =
        caller.peer.send_request(request).await.map_err(|e| {
            ErrorData::internal_error(format!("the client did not answer: {e}"), None)
        })?;
    serde_json::to_value(answer)
        .map(Ok)
        .map_err(|e| ErrorData::internal_error(format!("answer: {e}"), None))
}

impl Diagnostics {
    async fn call(
        &self,
        caller: &Caller,
        req: CallToolRequestParams,
    ) -> Result<ServerResult, ErrorData> {
        match req.name.as_ref() {
            "test_missing_capability" => {
                if !caller.client.declared("sampling") {
                    return Err(missing("sampling"));
                }
                let question = json!({
                    "method": "sampling/createMessage",
                    "params": {
                        "messages": [{ "role": "user", "content": { "type": "text", "text": "Say hello." } }],
                        "maxTokens": 32
                    }
                });
                match ask(caller, &req, "sample/1", "sample", question).await? {
                    Ok(answer) => {
                        let said = answer
                            .pointer("/content/text")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        Ok(text(format!("Success: the client sampled {said:?}")))
                    }
                    Err(input) => Ok(input),
                }
            }
            "test_streaming_elicitation" => {
                if !caller.client.declared("elicitation") {
                    return Err(missing("elicitation"));
                }
                let question = json!({
                    "method": "elicitation/create",
                    "params": {
                        "message": "Proceed?",
                        "requestedSchema": {
                            "type": "object",
                            "properties": { "ok": { "type": "boolean" } },
                            "required": ["ok"]
                        }
                    }
                });
                match ask(caller, &req, "confirm/1", "confirm", question).await? {
                    Ok(answer) => {
                        let action = answer.get("action").and_then(Value::as_str).unwrap_or("?");
                        Ok(text(format!("the client answered: {action}")))
                    }
                    Err(input) => Ok(input),
                }
            }
            "test_logging_tool" => {
                #[allow(deprecated)]
                use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam};
                let mut sent = 0;
                #[allow(deprecated)]
                for level in [
                    LoggingLevel::Debug,
                    LoggingLevel::Info,
                    LoggingLevel::Warning,
                ] {
                    if !caller.client.wants_log(level) {
                        continue;
                    }
                    let note = LoggingMessageNotificationParam::new(
                        level,
                        json!(format!("diagnostic message at {level:?}")),
                    )
                    .with_logger("mcp-zt");
                    #[allow(deprecated)]
                    if caller.peer.notify_logging_message(note).await.is_ok() {
                        sent += 1;
                    }
                }
                Ok(text(format!("sent {sent} log message(s)")))
            }
            "test_trigger_tool_change" => {
                let added = self.toggle(true);
                Ok(text(format!(
                    "{DYNAMIC_TOOL} {}",
                    if added { "added" } else { "removed" }
                )))
            }
            "test_trigger_prompt_change" => {
                let added = self.toggle(false);
                Ok(text(format!(
                    "{DYNAMIC_PROMPT} {}",
                    if added { "added" } else { "removed" }
                )))
            }
            DYNAMIC_TOOL => Ok(text("present")),
            _ => Err(super::tool_not_found()),
        }
    }
}

impl Provider for Diagnostics {
    fn name(&self) -> &str {
        "diagnostics"
    }

    fn prefix(&self) -> &str {
        ""
    }

    fn is_builtin(&self) -> bool {
        true
    }

    fn items<'a>(&'a self, _who: &'a Identity) -> BoxFuture<'a, Result<Arc<Items>, String>> {
        let items = self.items.lock().unwrap_or_else(|e| e.into_inner()).clone();
        futures_util::future::ready(Ok(items)).boxed()
    }

    fn request<'a>(
        &'a self,
        caller: &'a Caller,
        request: ClientRequest,
    ) -> BoxFuture<'a, Result<ServerResult, ErrorData>> {
        async move {
            match request {
                ClientRequest::CallToolRequest(req) => self.call(caller, req.params).await,
                ClientRequest::GetPromptRequest(req) if req.params.name == DYNAMIC_PROMPT => {
                    Ok(ServerResult::GetPromptResult(GetPromptResult::new(vec![
                        PromptMessage::new_text(Role::User, "present"),
                    ])))
                }
                ClientRequest::GetPromptRequest(_) => Err(super::prompt_not_found()),
                _ => Err(ErrorData::invalid_params(
                    "not served by the diagnostic tools",
                    None,
                )),
            }
        }
        .boxed()
    }
}
