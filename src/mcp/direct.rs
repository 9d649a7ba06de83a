//! The native transport's direct path for a `tools/call`: decided by the same gate on the
//! envelope, answered by the provider without a client session, serialized once.
//!
//! It takes only what it answers exactly as the rmcp path does: a tool one provider offers,
//! that the caller's role may use, whose provider answers it without a session
//! ([`Provider::call_direct`]). A missing, hidden or clashing name, a revoked certificate and
//! every other provider are declined **before any side effect**, so the rmcp path then audits
//! and answers them as it always did.

use std::time::Instant;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::StatusCode;
use rmcp::model::{
    ClientCapabilities, ErrorCode, InputRequiredResult, JsonObject, RequestId,
    ServerJsonRpcMessage, ServerResult,
};
use rmcp::ErrorData;
use serde::Deserialize;

use super::envelope::ToolCall;
use super::gate::Outcome;
use super::hub::{Hub, Lookup};
use super::mrtr;
use super::provider::{RelayAnswer, Relayed};
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
    if !found.provider.is_builtin() {
        // Another provider's tool: relayed, for a stateless call that asked for no progress
        // and no log messages, where the provider can; everything else is rmcp's.
        let (Some(caps), false) = (call.capabilities.as_ref(), call.wants_log) else {
            return Direct::Declined;
        };
        // A client that can be asked (sampling, elicitation, roots) or that speaks extensions
        // (tasks) is rmcp's: its questions and task answers are translated there.
        if caps != &ClientCapabilities::default() {
            return Direct::Declined;
        }
        // The arguments go on as sent, so they must be what the rmcp path reads: an object it
        // parses (a lone surrogate, a number out of range or nesting past its limit pass the
        // envelope's raw read). Parsed to check, never encoded again.
        if let Some(raw) = &call.arguments {
            if serde_json::from_str::<JsonObject>(raw.get()).is_err() {
                return Direct::Declined;
            }
        }
        let relayed = Relayed {
            method: "tools/call",
            inner: &found.inner,
            arguments: call.arguments.as_deref(),
            capabilities: caps,
            ct: ct.clone(),
        };
        let Some(run) = found.provider.relay_direct(relayed) else {
            return Direct::Declined;
        };
        return relay(hub, conn, &call, &found, run, &ct).await;
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
    typed_answer(result, call.id, modern)
}

/// The HTTP answer carrying `result` for request `id`, shaped for the client's revision.
fn typed_answer(result: Result<ServerResult, ErrorData>, id: RequestId, modern: bool) -> Direct {
    let result = for_revision(result, modern);
    let message = match result {
        Ok(r) => ServerJsonRpcMessage::response(r, id),
        Err(e) => ServerJsonRpcMessage::error(e, Some(id)),
    };
    let status = if modern {
        status_of(&message)
    } else {
        StatusCode::OK
    };
    match serde_json::to_vec(&message) {
        Ok(body) => Direct::Answer(status, Bytes::from(body)),
        Err(_) => internal_error(),
    }
}

fn internal_error() -> Direct {
    Direct::Answer(
        StatusCode::INTERNAL_SERVER_ERROR,
        Bytes::from_static(b"Internal Server Error"),
    )
}

/// The parts of a relayed result the gateway reads: whether it is final, whether it failed.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(rename = "resultType", borrow, default)]
    result_type: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "isError", default)]
    is_error: Option<bool>,
}

/// The gateway's own failure report for an answer it could not read.
fn unreadable(upstream: &str, detail: String) -> ErrorData {
    let mut data = serde_json::Map::new();
    data.insert(super::provider::FAILURE_MARK.into(), "unavailable".into());
    data.insert("detail".into(), detail.into());
    ErrorData::internal_error(
        format!("upstream {upstream} is unavailable"),
        Some(serde_json::Value::Object(data)),
    )
}

/// A stateless 2026-07-28 call of another provider's tool, relayed: the same gate, audit
/// lines and answers as the session handler's `call_tool` and `forward`. A final result goes
/// back as the provider sent it (with `resultType` added where it was left out); an
/// `input_required` one is read in full, its state marked and sealed exactly as there.
async fn relay(
    hub: &Hub,
    conn: &ConnInfo,
    call: &ToolCall,
    found: &super::hub::Found,
    run: BoxFuture<'_, Result<RelayAnswer, ErrorData>>,
    ct: &tokio_util::sync::CancellationToken,
) -> Direct {
    let who = &conn.identity;
    let peer = conn.peer.to_string();
    if let Err(e) = hub.gate.rate(who, &call.name, &peer) {
        return typed_answer(Err(e), call.id.clone(), true);
    }
    if ct.is_cancelled() {
        let e = ErrorData::invalid_request("certificate revoked", None);
        return typed_answer(Err(e), call.id.clone(), true);
    }
    hub.gate.allowed(who, &peer, &call.name);
    let started = Instant::now();
    let provider = found.provider.name();
    let item = format!("tool:{}", call.name);
    // Dropped before the answer (the client went away): its outcome is still audited.
    let mut gone = Gone {
        hub,
        who,
        peer: &peer,
        provider,
        item: &item,
        started,
        armed: true,
    };
    let answer = run.await;
    gone.armed = false;
    let read = read_answer(provider, answer);
    let (outcome, detail) = match &read {
        Read::Raw(_, outcome) => (*outcome, None),
        Read::Typed(r) => match r.as_ref() {
            Ok(_) => (Outcome::Ok, None),
            Err(e) => (super::outcome_of(e), Some(super::audit_detail(e))),
        },
    };
    hub.gate.forwarded(
        who,
        &peer,
        provider,
        &item,
        outcome,
        started.elapsed(),
        detail,
    );
    let typed = match read {
        Read::Raw(result, _) => return raw_answer(&call.id, &result),
        Read::Typed(typed) => *typed,
    };
    let mut result = super::tool_answer(typed.map_err(super::without_failure_detail));
    if let Ok(r) = result.as_mut() {
        mrtr::mark_complete(r);
        let to = ("tools/call", call.name.as_str(), provider);
        super::resume::seal(hub, who, to, r);
    }
    typed_answer(result, call.id.clone(), true)
}

/// A relayed answer, read.
enum Read {
    /// A final result, as sent (with `resultType` added where it had none), and its outcome.
    Raw(String, Outcome),
    /// Anything else, through the typed path.
    Typed(Box<Result<ServerResult, ErrorData>>),
}

/// Reads what `provider` answered: a final result stays as sent; an `input_required` one is
/// read whole (its state is marked as the provider's); any other kind fails the call.
fn read_answer(provider: &str, answer: Result<RelayAnswer, ErrorData>) -> Read {
    let raw = match answer {
        Ok(RelayAnswer::Result(raw)) => raw,
        Ok(RelayAnswer::Error(e)) | Err(e) => return Read::Typed(Box::new(Err(e))),
    };
    let fail = |detail: String| Read::Typed(Box::new(Err(unreadable(provider, detail))));
    if !raw.get().trim_start().starts_with('{') {
        return fail("a result that is not an object".into());
    }
    let peek = match serde_json::from_str::<Peek<'_>>(raw.get()) {
        Ok(p) => p,
        Err(e) => return fail(format!("not a tool result: {e}")),
    };
    match peek.result_type.as_deref() {
        None | Some("complete") => {
            let outcome = if peek.is_error == Some(true) {
                Outcome::ToolError
            } else {
                Outcome::Ok
            };
            Read::Raw(
                with_complete(raw.get(), peek.result_type.is_none()),
                outcome,
            )
        }
        Some("input_required") => match serde_json::from_str::<InputRequiredResult>(raw.get()) {
            Ok(asked) => {
                let mut r = ServerResult::InputRequiredResult(asked);
                super::resume::provider_state(&mut r);
                Read::Typed(Box::new(Ok(r)))
            }
            Err(e) => fail(format!("not a tool result: {e}")),
        },
        Some(kind) => fail(format!("a result of kind {kind:?}, not for this client")),
    }
}

/// The HTTP answer carrying a result object as it is, for request `id`.
fn raw_answer(id: &RequestId, result: &str) -> Direct {
    let Ok(id) = serde_json::to_string(id) else {
        return internal_error();
    };
    let mut body = String::with_capacity(result.len() + id.len() + 32);
    body.push_str(r#"{"jsonrpc":"2.0","id":"#);
    body.push_str(&id);
    body.push_str(r#","result":"#);
    body.push_str(result);
    body.push('}');
    Direct::Answer(StatusCode::OK, Bytes::from(body))
}

/// Audits a relayed call whose client went away before its answer.
struct Gone<'a> {
    hub: &'a Hub,
    who: &'a crate::identity::Identity,
    peer: &'a str,
    provider: &'a str,
    item: &'a str,
    started: Instant,
    armed: bool,
}

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        if self.armed {
            let detail = "the client went away before the answer".to_string();
            self.hub.gate.forwarded(
                self.who,
                self.peer,
                self.provider,
                self.item,
                Outcome::Cancelled,
                self.started.elapsed(),
                Some(detail),
            );
        }
    }
}

/// A result object's text with `"resultType":"complete"` first when it had none.
fn with_complete(raw: &str, missing: bool) -> String {
    let text = raw.trim_start();
    match (missing, text.strip_prefix('{')) {
        (true, Some(rest)) => {
            let rest_trimmed = rest.trim_start();
            let sep = if rest_trimmed.starts_with('}') {
                ""
            } else {
                ","
            };
            format!(r#"{{"resultType":"complete"{sep}{rest}"#)
        }
        _ => raw.to_string(),
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

#[cfg(test)]
mod tests {
    use super::with_complete;

    #[test]
    fn a_final_result_gets_its_result_type_only_where_it_had_none() {
        let v = |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("valid JSON");
        let added = with_complete(r#" { "content": [] }"#, true);
        assert_eq!(v(&added), v(r#"{"resultType":"complete","content":[]}"#));
        assert_eq!(
            v(&with_complete("{}", true)),
            v(r#"{"resultType":"complete"}"#)
        );
        assert_eq!(
            v(&with_complete("{ \n }", true)),
            v(r#"{"resultType":"complete"}"#)
        );
        let kept = r#"{"resultType":"complete","isError":true}"#;
        assert_eq!(with_complete(kept, false), kept);
    }
}
