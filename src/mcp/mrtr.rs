//! Between protocol revisions: MCP 2026-07-28 replaced server-to-client requests (sampling,
//! elicitation, roots) made in the middle of a call with `input_required` results that the
//! client answers by retrying. This module carries an `input_required` answer to a client of an
//! older revision: it asks the client the classic way, on its session, and retries the provider
//! with the answers, for as many rounds as the provider needs (up to [`MAX_ROUNDS`]).
//!
//! The other direction, an older upstream's classic request made during a 2026-07-28
//! client's call, is [`PendingCalls`]: the upstream's request is held open, the client gets
//! `input_required` with the question, and its retry (with a sealed `requestState` naming the
//! held call) delivers the answer and resumes waiting for the upstream's result.
// Sampling and roots are deprecated by SEP-2577 but are what today's servers ask for.
#![allow(deprecated)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rmcp::model::{
    ClientRequest, ClientResult, CreateMessageResult, ElicitResult, InputRequest,
    InputRequiredResult, InputResponses, ListRootsResult, ResultType, ServerRequest, ServerResult,
};
use rmcp::ErrorData;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::provider::Question;

/// Most `input_required` rounds one request may take.
pub const MAX_ROUNDS: usize = 8;

/// Longest wait for an older client to answer one question.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(300);

/// Marks a result complete (`resultType: "complete"`) when it came without a result type, as
/// results from older upstreams do: a 2026-07-28 client requires it.
pub fn mark_complete(result: &mut ServerResult) {
    let rt = match result {
        ServerResult::CompleteResult(r) => &mut r.result_type,
        ServerResult::GetPromptResult(r) => &mut r.result_type,
        ServerResult::ReadResourceResult(r) => &mut r.result_type,
        ServerResult::CallToolResult(r) => &mut r.result_type,
        ServerResult::ListToolsResult(r) => &mut r.result_type,
        ServerResult::ListPromptsResult(r) => &mut r.result_type,
        ServerResult::ListResourcesResult(r) => &mut r.result_type,
        ServerResult::ListResourceTemplatesResult(r) => &mut r.result_type,
        _ => return,
    };
    if rt.is_none() {
        *rt = Some(ResultType::COMPLETE);
    }
}

/// The request again, now carrying the client's answers and the provider's state.
pub fn retry_with(
    request: &ClientRequest,
    answers: InputResponses,
    state: Option<String>,
) -> Result<ClientRequest, ErrorData> {
    let mut next = request.clone();
    match &mut next {
        ClientRequest::CallToolRequest(r) => {
            r.params.input_responses = Some(answers);
            r.params.request_state = state;
        }
        ClientRequest::GetPromptRequest(r) => {
            r.params.input_responses = Some(answers);
            r.params.request_state = state;
        }
        ClientRequest::ReadResourceRequest(r) => {
            r.params.input_responses = Some(answers);
            r.params.request_state = state;
        }
        _ => {
            return Err(ErrorData::internal_error(
                "input_required answered to a request that cannot carry answers",
                None,
            ))
        }
    }
    Ok(next)
}

/// The answers a retry carries.
pub fn answers_of(request: &ClientRequest) -> Option<InputResponses> {
    match request {
        ClientRequest::CallToolRequest(r) => r.params.input_responses.clone(),
        ClientRequest::GetPromptRequest(r) => r.params.input_responses.clone(),
        ClientRequest::ReadResourceRequest(r) => r.params.input_responses.clone(),
        _ => None,
    }
}

/// The method an input request asks (`sampling/createMessage`, `elicitation/create`,
/// `roots/list`), for the audit log.
pub fn method_of(question: &InputRequest) -> String {
    serde_json::to_value(question)
        .ok()
        .and_then(|v| v.get("method").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The classic server-to-client request for one input request.
pub fn classic(question: &InputRequest) -> Result<ServerRequest, ErrorData> {
    let value = serde_json::to_value(question)
        .map_err(|e| ErrorData::internal_error(format!("input request: {e}"), None))?;
    serde_json::from_value(value)
        .map_err(|e| ErrorData::internal_error(format!("input request: {e}"), None))
}

/// Asks an older client every question of `asked` on its session; the answers keyed as asked.
pub async fn ask_classic(
    peer: &rmcp::Peer<rmcp::RoleServer>,
    asked: &InputRequiredResult,
) -> Result<InputResponses, ErrorData> {
    let mut answers = InputResponses::new();
    for (key, question) in asked.input_requests.iter().flatten() {
        let request = classic(question)?;
        let answer = tokio::time::timeout(ASK_TIMEOUT, peer.send_request(request))
            .await
            .map_err(|_| ErrorData::internal_error("the client did not answer in time", None))?
            .map_err(|e| {
                ErrorData::internal_error(format!("the client did not answer: {e}"), None)
            })?;
        let value = serde_json::to_value(answer)
            .map_err(|e| ErrorData::internal_error(format!("answer: {e}"), None))?;
        answers.insert(key.clone(), value);
    }
    Ok(answers)
}

/// Calls held at most, in all and per certificate: a client that never retries cannot pile
/// them up.
pub const MAX_PENDING: usize = 1024;
/// See [`MAX_PENDING`].
pub const MAX_PENDING_PER_CERT: usize = 16;

/// An upstream call waiting for a 2026-07-28 client's answers.
pub struct Pending {
    serial: String,
    created: Instant,
    call: JoinHandle<Result<ServerResult, ErrorData>>,
    questions: mpsc::Receiver<Question>,
    /// Asked and not answered yet, under the key the client was given.
    open: Vec<(String, Question)>,
    asked: u32,
    /// Cancels the upstream call.
    ct: CancellationToken,
}

impl Pending {
    /// A call just started for certificate `serial`: its task, the receiving side of its
    /// questions, and the token that cancels it upstream.
    pub fn new(
        serial: &str,
        call: JoinHandle<Result<ServerResult, ErrorData>>,
        questions: mpsc::Receiver<Question>,
        ct: CancellationToken,
    ) -> Self {
        Pending {
            serial: serial.to_string(),
            created: Instant::now(),
            call,
            questions,
            open: Vec::new(),
            asked: 0,
            ct,
        }
    }

    /// Ends the call, gently first: its open questions are answered with an error (dropping
    /// them), so the upstream's tool can finish by itself; only if it is still running after a
    /// few seconds is it cancelled upstream (notifications/cancelled), then aborted. (Some
    /// servers drop their whole session when a request is cancelled while they wait on a
    /// question of their own.)
    fn end(&mut self) {
        self.open.clear();
        self.questions.close();
        let task = self.call.abort_handle();
        let ct = self.ct.clone();
        tokio::spawn(async move {
            for _ in 0..50 {
                if task.is_finished() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            ct.cancel();
            tokio::time::sleep(Duration::from_secs(2)).await;
            task.abort();
        });
    }
}

/// What a call did next.
pub enum Step {
    /// It ended.
    Done(Result<ServerResult, ErrorData>),
    /// It asks the client: hold it and answer `input_required` (state still to be set).
    Ask(Pending, InputRequiredResult),
}

enum Event {
    Ended(Result<ServerResult, ErrorData>),
    Asked(Option<Question>),
    Cancelled,
}

/// The `input_required` answer asking every open question of `p`.
fn asking(p: &Pending) -> Result<InputRequiredResult, ErrorData> {
    let mut requests = serde_json::Map::new();
    for (key, q) in &p.open {
        let v = serde_json::to_value(&q.request)
            .map_err(|e| ErrorData::internal_error(format!("input request: {e}"), None))?;
        requests.insert(key.clone(), v);
    }
    serde_json::from_value(serde_json::json!({
        "resultType": "input_required",
        "inputRequests": requests,
    }))
    .map_err(|e| ErrorData::internal_error(format!("input request: {e}"), None))
}

/// The client's answer to `request`, typed as the upstream expects it.
fn answer_of(request: &ServerRequest, v: &serde_json::Value) -> Result<ClientResult, ErrorData> {
    let bad =
        |e: serde_json::Error| ErrorData::invalid_params(format!("inputResponses: {e}"), None);
    match request {
        ServerRequest::CreateMessageRequest(_) => {
            serde_json::from_value::<CreateMessageResult>(v.clone())
                .map(|r| ClientResult::CreateMessageResult(Box::new(r)))
                .map_err(bad)
        }
        ServerRequest::ElicitRequest(_) => serde_json::from_value::<ElicitResult>(v.clone())
            .map(ClientResult::ElicitResult)
            .map_err(bad),
        ServerRequest::ListRootsRequest(_) => serde_json::from_value::<ListRootsResult>(v.clone())
            .map(ClientResult::ListRootsResult)
            .map_err(bad),
        _ => Err(ErrorData::internal_error("unexpected input request", None)),
    }
}

/// Delivers `answers` to the open questions of `p`, then runs the call until it ends or asks
/// again. A question left unanswered is asked again. `cancel` is the client's request.
pub async fn drive(
    mut p: Pending,
    answers: Option<InputResponses>,
    cancel: &CancellationToken,
) -> Step {
    if let Some(answers) = answers {
        for (key, q) in std::mem::take(&mut p.open) {
            match answers.get(&key) {
                Some(v) => {
                    let _ = q.answer.send(answer_of(&q.request, v));
                }
                None => p.open.push((key, q)),
            }
        }
    }
    if !p.open.is_empty() {
        return match asking(&p) {
            Ok(ir) => Step::Ask(p, ir),
            Err(e) => {
                p.end();
                Step::Done(Err(e))
            }
        };
    }
    let ev = tokio::select! {
        r = &mut p.call => Event::Ended(r.unwrap_or_else(|e| {
            Err(task_failed(e))
        })),
        q = p.questions.recv() => Event::Asked(q),
        _ = cancel.cancelled() => Event::Cancelled,
    };
    match ev {
        Event::Ended(r) => Step::Done(r),
        Event::Asked(Some(q)) => {
            let mut next = Some(q);
            while let Some(q) = next {
                p.asked += 1;
                p.open.push((format!("q{}", p.asked), q));
                next = p.questions.try_recv().ok();
            }
            match asking(&p) {
                Ok(ir) => Step::Ask(p, ir),
                Err(e) => {
                    p.end();
                    Step::Done(Err(e))
                }
            }
        }
        // Every sender gone: only the result is left to wait for.
        Event::Asked(None) => {
            Step::Done((&mut p.call).await.unwrap_or_else(|e| Err(task_failed(e))))
        }
        Event::Cancelled => {
            p.end();
            Step::Done(Err(ErrorData::invalid_request("request cancelled", None)))
        }
    }
}

/// A call task that panicked or was aborted: the client learns only that it failed.
fn task_failed(_e: tokio::task::JoinError) -> ErrorData {
    ErrorData::internal_error("the call failed", None)
}

/// Calls held for 2026-07-28 clients, by a random id that only ever travels sealed.
#[derive(Default)]
pub struct PendingCalls {
    map: Mutex<HashMap<String, Pending>>,
}

impl PendingCalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds `p`; its id. Expired calls are dropped first (their upstream calls cancelled).
    pub fn hold(&self, mut p: Pending, ttl: Duration) -> Result<String, ErrorData> {
        // Revoked (or cancelled) while it was out being resumed: not held again.
        if p.ct.is_cancelled() {
            p.end();
            return Err(ErrorData::invalid_request("request cancelled", None));
        }
        let mut map = self.lock();
        Self::sweep(&mut map, ttl);
        let mine = map.values().filter(|q| q.serial == p.serial).count();
        if map.len() >= MAX_PENDING || mine >= MAX_PENDING_PER_CERT {
            p.end();
            return Err(ErrorData::invalid_request(
                "too many requests waiting for input: answer or abandon some first",
                None,
            ));
        }
        let mut raw = [0u8; 16];
        if aws_lc_rs::rand::fill(&mut raw).is_err() {
            p.end();
            return Err(ErrorData::internal_error("no randomness", None));
        }
        let id = hex::encode(raw);
        map.insert(id.clone(), p);
        Ok(id)
    }

    /// Ends and forgets calls held longer than `ttl` (their states have expired too).
    fn sweep(map: &mut HashMap<String, Pending>, ttl: Duration) {
        map.retain(|_, q| {
            let keep = q.created.elapsed() < ttl;
            if !keep {
                q.end();
            }
            keep
        });
    }

    /// Takes the call `id` back, if it is held for `serial`.
    pub fn take(&self, id: &str, serial: &str, ttl: Duration) -> Option<Pending> {
        let mut map = self.lock();
        Self::sweep(&mut map, ttl);
        if map.get(id).is_some_and(|p| p.serial == serial) {
            map.remove(id)
        } else {
            None
        }
    }

    /// Ends every call held for a revoked certificate.
    pub fn revoked(&self, serial: &str) {
        self.lock().retain(|_, p| {
            let keep = p.serial != serial;
            if !keep {
                p.end();
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{CallToolRequestParams, CallToolResult, Request};

    #[test]
    fn results_from_older_upstreams_are_marked_complete_and_others_kept() {
        let mut r = ServerResult::CallToolResult(CallToolResult::success(vec![]));
        if let ServerResult::CallToolResult(c) = &mut r {
            c.result_type = None;
        }
        mark_complete(&mut r);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["resultType"], "complete");

        let mut ir = ServerResult::InputRequiredResult(
            serde_json::from_value(serde_json::json!({
                "resultType": "input_required", "requestState": "s"
            }))
            .unwrap(),
        );
        mark_complete(&mut ir);
        assert_eq!(
            serde_json::to_value(&ir).unwrap()["resultType"],
            "input_required"
        );
    }

    #[test]
    fn a_retry_carries_answers_and_state_and_an_input_request_becomes_a_classic_one() {
        let call = ClientRequest::CallToolRequest(Request::new(CallToolRequestParams::new("t")));
        let mut answers = InputResponses::new();
        answers.insert("k".into(), serde_json::json!({"action": "accept"}));
        let next = retry_with(&call, answers, Some("st".into())).unwrap();
        let v = serde_json::to_value(&next).unwrap();
        assert_eq!(v["params"]["requestState"], "st");
        assert_eq!(v["params"]["inputResponses"]["k"]["action"], "accept");

        let asked: InputRequiredResult = serde_json::from_value(serde_json::json!({
            "resultType": "input_required",
            "inputRequests": { "q": { "method": "roots/list", "params": {} } }
        }))
        .unwrap();
        let q = asked.input_requests.as_ref().unwrap().get("q").unwrap();
        assert!(matches!(
            classic(q).unwrap(),
            ServerRequest::ListRootsRequest(_)
        ));
    }
}
