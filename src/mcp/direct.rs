//! The native transport's direct path for a `tools/call`: decided by the same gate on the
//! envelope, answered by the provider without a client session, serialized once.
//!
//! It takes only what it answers exactly as the rmcp path does: a tool one provider offers,
//! that the caller's role may use, whose provider answers it without a session
//! ([`Provider::call_direct`]). A missing, hidden or clashing name, a revoked certificate and
//! every other provider are declined **before any side effect**, so the rmcp path then audits
//! and answers them as it always did.

use bytes::Bytes;
use http::StatusCode;
use rmcp::model::{ErrorCode, JsonObject, ServerJsonRpcMessage, ServerResult};
use rmcp::ErrorData;

use super::envelope::ToolCall;
use super::hub::{Hub, Lookup};
use super::mrtr;
use crate::identity::ConnInfo;

/// What the direct path made of a request.
pub enum Direct {
    /// The whole HTTP answer: status and JSON body.
    Answer(StatusCode, Bytes),
    /// Not for the direct path; nothing was done or audited.
    Declined,
}

/// Runs `call` for the connection's identity, or declines it. `modern`: a stateless 2026-07-28
/// request (its result says `resultType`, its errors map to HTTP statuses); otherwise a call in
/// a session of an earlier revision (errors are answered with 200, as there).
pub async fn tool_call(hub: &Hub, conn: &ConnInfo, call: ToolCall, modern: bool) -> Direct {
    let who = &conn.identity;
    // Looking a name up may start a child or refresh a login: only where every provider that
    // could offer it answers directly, so that a declined call had no effect at all.
    let elsewhere = hub
        .providers()
        .iter()
        .any(|p| call.name.starts_with(p.prefix()) && !p.answers_directly());
    if elsewhere {
        return Direct::Declined;
    }
    let found = match hub.find_tool(who, &call.name).await {
        Lookup::Found(f) if f.visible => f,
        _ => return Direct::Declined,
    };
    let ct = hub.request_token(&who.serial);
    if ct.is_cancelled() {
        return Direct::Declined;
    }
    // Arguments that are not an object of JSON values are the rmcp path's to refuse.
    let args: JsonObject = match &call.arguments {
        Some(raw) => match serde_json::from_str(raw.get()) {
            Ok(a) => a,
            Err(_) => return Direct::Declined,
        },
        None => JsonObject::new(),
    };
    let Some(run) = found.provider.call_direct(who, &found.inner, args) else {
        return Direct::Declined;
    };
    // From here on this path owns the call: the same checks, audit lines and answers as the
    // session handler's call_tool.
    let peer = conn.peer.to_string();
    let result = match hub.gate.rate(who, &call.name, &peer) {
        Err(e) => Err(e),
        Ok(()) if ct.is_cancelled() => Err(ErrorData::invalid_request("certificate revoked", None)),
        Ok(()) => {
            hub.gate.allowed(who, &peer, &call.name);
            let ran = run.await.map(|r| {
                let mut r = ServerResult::CallToolResult(r);
                if modern {
                    mrtr::mark_complete(&mut r);
                }
                r
            });
            super::tool_answer(ran.map_err(super::without_failure_detail))
        }
    };
    let result = for_revision(result, modern);
    let message = match result {
        Ok(r) => ServerJsonRpcMessage::response(r, call.id),
        Err(e) => ServerJsonRpcMessage::error(e, Some(call.id)),
    };
    let status = if modern {
        status_of(&message)
    } else {
        StatusCode::OK
    };
    match serde_json::to_vec(&message) {
        Ok(body) => Direct::Answer(status, Bytes::from(body)),
        Err(_) => Direct::Answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from_static(b"Internal Server Error"),
        ),
    }
}

/// The shape of the answer for the client's revision, as the session handler gives it: a
/// 2026-07-28 result gets its cache hints, an earlier one loses `resultType: "complete"` and any
/// non-object structured output; 2026-07-28 says -32602 where earlier ones said
/// resource-not-found.
fn for_revision(
    result: Result<ServerResult, ErrorData>,
    modern: bool,
) -> Result<ServerResult, ErrorData> {
    match result {
        Ok(mut r) => {
            if modern {
                r.fill_missing_cache_hints();
            } else {
                r.strip_result_type_for_legacy_peer();
                r.strip_non_object_output_for_legacy_peer();
            }
            Ok(r)
        }
        Err(mut e) => {
            if modern && e.code == ErrorCode::RESOURCE_NOT_FOUND {
                e.code = ErrorCode::INVALID_PARAMS;
            }
            Err(e)
        }
    }
}

/// The HTTP status of a stateless 2026-07-28 answer: the same mapping as the rmcp transport's
/// for a request whose `_meta` is well formed.
fn status_of(message: &ServerJsonRpcMessage) -> StatusCode {
    let ServerJsonRpcMessage::Error(e) = message else {
        return StatusCode::OK;
    };
    match e.error.code {
        ErrorCode::UNSUPPORTED_PROTOCOL_VERSION
        | ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY
        | ErrorCode::HEADER_MISMATCH => StatusCode::BAD_REQUEST,
        ErrorCode::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}
