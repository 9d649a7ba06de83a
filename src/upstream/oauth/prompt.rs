//! What a holder is told when an upstream needs their own login: a URL-mode elicitation
//! (`elicitation/create` with `mode: "url"`) for a client that declared it (a 2026-07-28
//! client gets it inside `input_required`; an older one is asked on its session by the
//! handler), else a tool error with the link and the `mcp-zt link` command.
//!
//! The link is the upstream's authorization request; its callback lands on mcp-zt's login
//! name (or the server's own name), whose handshake asks for the holder's certificate, and
//! only the holder who started the link can finish it. A leaked link ties nobody's upstream
//! account to another holder.

use rmcp::model::{CallToolResult, ClientRequest, ContentBlock, InputRequiredResult, ServerResult};
use rmcp::ErrorData;

use super::linker::{Linker, NeedLink, Redirect};
use crate::mcp::provider::Caller;

/// The key of the link question in `inputRequests` / `inputResponses`.
pub const LINK_KEY: &str = "link";

/// The provider's `requestState` for a link question about `upstream`.
pub fn link_state(upstream: &str) -> String {
    format!("link:{upstream}")
}

/// Whether `request` is the retry that answers our link question (the handler checked the
/// sealed state came back to this caller).
pub fn answered(request: &ClientRequest, upstream: &str) -> bool {
    let (responses, state) = match request {
        ClientRequest::CallToolRequest(r) => (&r.params.input_responses, &r.params.request_state),
        ClientRequest::GetPromptRequest(r) => (&r.params.input_responses, &r.params.request_state),
        ClientRequest::ReadResourceRequest(r) => {
            (&r.params.input_responses, &r.params.request_state)
        }
        _ => return false,
    };
    state.as_deref() == Some(link_state(upstream).as_str())
        && responses
            .as_ref()
            .is_some_and(|r| r.get(LINK_KEY).is_some())
}

/// The request without our question's answer, before it goes upstream (the upstream never
/// asked it).
pub fn without_answer(mut request: ClientRequest) -> ClientRequest {
    match &mut request {
        ClientRequest::CallToolRequest(r) => {
            r.params.input_responses = None;
            r.params.request_state = None;
        }
        ClientRequest::GetPromptRequest(r) => {
            r.params.input_responses = None;
            r.params.request_state = None;
        }
        ClientRequest::ReadResourceRequest(r) => {
            r.params.input_responses = None;
            r.params.request_state = None;
        }
        _ => {}
    }
    request
}

fn command(linker: &Linker, upstream: &str, scopes: &[String]) -> String {
    let url = linker.mcp_url().unwrap_or("https://SERVER/mcp");
    let mut c = format!("mcp-zt link {upstream} --url {url} --cert CERT --key KEY --ca CA");
    for s in scopes {
        // The scopes come from the upstream's challenge: quoted for a shell, whatever they hold.
        c.push_str(&format!(" --scope '{}'", s.replace('\'', "'\\''")));
    }
    c
}

fn error_result(request: &ClientRequest, text: String) -> Result<ServerResult, ErrorData> {
    match request {
        ClientRequest::CallToolRequest(_) => {
            Ok(ServerResult::CallToolResult(CallToolResult::error(vec![
                ContentBlock::text(text),
            ])))
        }
        _ => Err(ErrorData::invalid_request(text, None)),
    }
}

/// A tool error (or a request error, for prompts and resources) with `text`.
pub fn refuse(request: &ClientRequest, text: String) -> Result<ServerResult, ErrorData> {
    error_result(request, text)
}

/// Asks the holder to link `upstream`: starts a link bound to them and puts its URL in a
/// URL-mode elicitation, or in a tool error for a client that cannot take one.
pub async fn ask_to_link(
    linker: &Linker,
    caller: &Caller,
    upstream: &str,
    request: &ClientRequest,
    need: NeedLink,
) -> Result<ServerResult, ErrorData> {
    let who = &caller.identity;
    let cmd = command(linker, upstream, &need.scopes);
    let started = match linker.start(who, upstream, Redirect::Browser, &need.scopes).await {
        Ok(s) => s,
        Err(e) => {
            return error_result(
                request,
                format!(
                    "Upstream {upstream} needs your own account ({}), and a link could not be started: {e}. On your machine, run: {cmd}",
                    need.reason
                ),
            )
        }
    };
    let message = format!(
        "{upstream} needs your own {upstream} account ({}). Open the link and sign in; your browser must present your mcp-zt certificate. Or run: {cmd}",
        need.reason
    );
    let askable = matches!(
        request,
        ClientRequest::CallToolRequest(_)
            | ClientRequest::GetPromptRequest(_)
            | ClientRequest::ReadResourceRequest(_)
    );
    if askable && caller.client.declared("elicitation.url") {
        let id = &crate::oauth::crypto::sha256_hex(&started.state)[..32];
        let asked: Result<InputRequiredResult, _> = serde_json::from_value(serde_json::json!({
            "resultType": "input_required",
            "inputRequests": { LINK_KEY: {
                "method": "elicitation/create",
                "params": {
                    "mode": "url",
                    "message": message,
                    "url": started.url,
                    "elicitationId": id,
                }
            }},
            "requestState": link_state(upstream),
        }));
        return asked
            .map(ServerResult::InputRequiredResult)
            .map_err(|e| ErrorData::internal_error(format!("link question: {e}"), None));
    }
    error_result(request, format!("{message}\nLink: {}", started.url))
}
