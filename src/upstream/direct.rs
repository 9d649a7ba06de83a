//! The native transport's relay of one call to an HTTP upstream that speaks MCP 2026-07-28,
//! without rmcp's client: one POST on the connection's pooled client (keep-alive, HTTP/2 where
//! the upstream offers it over TLS), the id replaced by the gateway's own, the arguments copied
//! as the client sent them (never parsed and encoded again), and the answer read for its
//! envelope only.
//!
//! It carries what a 2026-07-28 call can be on its own: a request, and one answer. The native
//! transport hands it only calls that asked for no progress and no log messages, so nothing the
//! upstream streams before its answer has a place to go (the rmcp path drops it the same way).
//! A server-to-client *request* on the stream is not part of 2026-07-28: the call then fails as
//! an unavailable upstream, and the audit line says why.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue};
use rmcp::model::ClientCapabilities;
use rmcp::ErrorData;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::mcp::provider::RelayAnswer as Answer;

/// The revision spoken on this link.
pub const REVISION: &str = "2026-07-28";

/// Most bytes read from one answer (a JSON body, or a whole event stream): rmcp's client
/// limit for one JSON answer.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// What identifies the gateway to the upstream in each request's `_meta` (the same as its
/// rmcp client says).
const CLIENT_NAME: &str = "mcp-zt-gateway";

/// One upstream's direct link: its URL, the pooled HTTP client its rmcp connection uses too,
/// and the headers the file configures.
pub struct DirectLink {
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    next_id: AtomicU64,
}

/// Why a relayed call got no answer.
#[derive(Debug)]
pub enum Failed {
    /// The connection is broken (the request could not be sent, the child's pipes closed):
    /// it is ended, as a transport failure of the rmcp path ends it.
    Broken(String),
    /// This call alone failed (an answer that could not be read, or none).
    Call(String),
}

/// The parts of one JSON-RPC message from the upstream this link reads.
#[derive(Deserialize)]
pub(super) struct Incoming {
    #[serde(default)]
    pub(super) id: Option<serde_json::Value>,
    #[serde(default)]
    pub(super) method: Option<String>,
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<ErrorData>,
}

impl DirectLink {
    /// A link to `url` with `headers` (the configured ones: secrets resolved, identity headers
    /// never: this link serves only connections shared by every caller).
    pub fn new(
        client: reqwest::Client,
        url: &str,
        headers: &std::collections::HashMap<HeaderName, HeaderValue>,
    ) -> Self {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(k.clone(), v.clone());
        }
        DirectLink {
            client,
            url: url.to_string(),
            headers: map,
            next_id: AtomicU64::new(1),
        }
    }

    /// The next id of this link's requests (its own numbering, apart from the client's ids).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `method` for item `name` (a tool or prompt name, or a resource URI under `uri`)
    /// with request id `id`, and reads the answer.
    pub async fn send(
        &self,
        id: u64,
        method: &str,
        name: &str,
        arguments: Option<&RawValue>,
        capabilities: &ClientCapabilities,
    ) -> Result<Answer, Failed> {
        let body = request_body(&id.to_string(), method, name, arguments, Some(capabilities))
            .map_err(Failed::Call)?;
        let mut req = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "text/event-stream, application/json")
            .header("mcp-protocol-version", REVISION)
            .header("mcp-method", method)
            .body(body);
        if method == "tools/call" || method == "prompts/get" {
            req = req.header("mcp-name", name);
        }
        // A stateless POST that fails (the upstream down, a connection reset) fails this call
        // alone: the pooled client opens another for the next one, and the supervisor's ping
        // finds an upstream that is down.
        let response = req.send().await.map_err(|e| Failed::Call(e.to_string()))?;
        let status = response.status();
        let kind = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let id = serde_json::Value::from(id);
        let answer = match kind.as_str() {
            "application/json" => read_json(response, &id).await,
            "text/event-stream" if status.is_success() => relay_events(response, &id).await,
            _ => Err(format!("({kind:?})")),
        };
        answer.map_err(|e| Failed::Call(format!("HTTP {status}: {e}")))
    }

    /// Tells the upstream to stop working on request `id` (after a timeout or a revocation).
    /// Bounded: never waits on an upstream that stopped answering.
    pub async fn cancel(&self, id: u64, reason: &str) {
        let note = serde_json::json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": id, "reason": reason},
        });
        let req = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(http::header::ACCEPT, "text/event-stream, application/json")
            .header("mcp-protocol-version", REVISION)
            .header("mcp-method", "notifications/cancelled")
            .json(&note);
        let _ = tokio::time::timeout(Duration::from_secs(5), req.send()).await;
    }
}

/// The request's bytes (`id` is already JSON): the arguments as the client sent them; with
/// `capabilities`, the `_meta` rmcp's client sends a 2026-07-28 server (revision, the
/// gateway's name, the calling client's capabilities), without, none (an older revision's
/// session holds those).
pub fn request_body(
    id: &str,
    method: &str,
    name: &str,
    arguments: Option<&RawValue>,
    capabilities: Option<&ClientCapabilities>,
) -> Result<Vec<u8>, String> {
    let text = |v: &str| serde_json::to_string(v).map_err(|e| e.to_string());
    let key = if method == "resources/read" {
        "uri"
    } else {
        "name"
    };
    let mut out = String::with_capacity(256 + arguments.map_or(0, |a| a.get().len()));
    out.push_str(r#"{"jsonrpc":"2.0","id":"#);
    out.push_str(id);
    out.push_str(r#","method":"#);
    out.push_str(&text(method)?);
    out.push_str(r#","params":{""#);
    out.push_str(key);
    out.push_str(r#"":"#);
    out.push_str(&text(name)?);
    if let Some(args) = arguments {
        out.push_str(r#","arguments":"#);
        out.push_str(args.get());
    }
    if let Some(caps) = capabilities {
        let caps = serde_json::to_string(caps).map_err(|e| e.to_string())?;
        out.push_str(r#","_meta":{"io.modelcontextprotocol/protocolVersion":""#);
        out.push_str(REVISION);
        out.push_str(r#"","io.modelcontextprotocol/clientInfo":{"name":""#);
        out.push_str(CLIENT_NAME);
        out.push_str(r#"","version":"#);
        out.push_str(&text(env!("CARGO_PKG_VERSION"))?);
        out.push_str(r#"},"io.modelcontextprotocol/clientCapabilities":"#);
        out.push_str(&caps);
        out.push('}');
    }
    out.push_str("}}");
    Ok(out.into_bytes())
}

/// The answer to request `id` in `message`, `None` for a notification, an error for anything
/// else (a server-to-client request, another id, neither result nor error).
pub(super) fn answer_of(
    message: Incoming,
    id: &serde_json::Value,
) -> Result<Option<Answer>, String> {
    match (&message.method, &message.id) {
        (Some(m), Some(_)) => Err(format!(
            "the upstream sent a server-to-client request ({m:?}) during a relayed call"
        )),
        (Some(_), None) => Ok(None),
        (None, Some(got)) if got == id => match (message.result, message.error) {
            (Some(r), None) => Ok(Some(Answer::Result(r))),
            (None, Some(e)) => Ok(Some(Answer::Error(e))),
            _ => Err("an answer with neither a result nor an error".into()),
        },
        (None, got) => Err(format!("an answer to another request ({got:?})")),
    }
}

/// The answer to `id` in a JSON body.
async fn read_json(response: reqwest::Response, id: &serde_json::Value) -> Result<Answer, String> {
    let bytes = read_bounded(response).await?;
    let message: Incoming =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a JSON-RPC message: {e}"))?;
    answer_of(message, id)?.ok_or_else(|| "no answer to the request".to_string())
}

async fn read_bounded(response: reqwest::Response) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(format!("an answer over {MAX_ANSWER_BYTES} bytes"));
    }
    let mut out = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if out.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!("an answer over {MAX_ANSWER_BYTES} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Reads an event stream until the answer to `id`; notifications before it are dropped (the
/// call asked for none), and at most [`MAX_ANSWER_BYTES`] are read in all.
async fn relay_events(
    response: reqwest::Response,
    id: &serde_json::Value,
) -> Result<Answer, String> {
    let mut seen = 0usize;
    let bytes = response.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        seen += chunk.len();
        if seen > MAX_ANSWER_BYTES {
            return Err(std::io::Error::other(format!(
                "an event stream over {MAX_ANSWER_BYTES} bytes"
            )));
        }
        Ok(chunk)
    });
    let events = sse_stream::SseStream::from_bytes_stream(bytes);
    tokio::pin!(events);
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| e.to_string())?;
        let Some(data) = event.data.filter(|d| !d.is_empty()) else {
            continue;
        };
        let message: Incoming = serde_json::from_str(&data)
            .map_err(|e| format!("an event that is not a JSON-RPC message: {e}"))?;
        if let Some(answer) = answer_of(message, id)? {
            return Ok(answer);
        }
    }
    Err("the event stream ended without an answer".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(s: &str) -> Incoming {
        serde_json::from_str(s).expect("test message")
    }

    #[test]
    fn the_body_carries_the_arguments_unchanged_and_the_gateway_meta() {
        let args = RawValue::from_string(r#"{"b": 2, "a":[1,  2]}"#.into()).expect("raw");
        let caps = ClientCapabilities::default();
        let body = request_body("7", "tools/call", "x\"y", Some(&args), Some(&caps)).expect("body");
        let text = String::from_utf8(body).expect("utf-8");
        assert!(
            text.contains(r#""arguments":{"b": 2, "a":[1,  2]}"#),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["id"], 7);
        assert_eq!(v["method"], "tools/call");
        assert_eq!(v["params"]["name"], "x\"y");
        let meta = &v["params"]["_meta"];
        assert_eq!(meta["io.modelcontextprotocol/protocolVersion"], REVISION);
        assert_eq!(
            meta["io.modelcontextprotocol/clientInfo"]["name"],
            CLIENT_NAME
        );
        assert!(meta["io.modelcontextprotocol/clientCapabilities"].is_object());
        assert!(meta.get("progressToken").is_none());
        let read =
            request_body("8", "resources/read", "file:///a", None, Some(&caps)).expect("body");
        let v: serde_json::Value = serde_json::from_slice(&read).expect("valid JSON");
        assert_eq!(v["params"]["uri"], "file:///a");
        assert!(v["params"].get("arguments").is_none());
        let old = request_body("\"s\"", "tools/call", "t", None, None).expect("body");
        let v: serde_json::Value = serde_json::from_slice(&old).expect("valid JSON");
        assert_eq!(v["id"], "s");
        assert!(v["params"].get("_meta").is_none());
    }

    fn sse(body: &str) -> reqwest::Response {
        let r = http::Response::builder()
            .header("content-type", "text/event-stream")
            .body(body.to_string())
            .expect("response");
        reqwest::Response::from(r)
    }

    #[tokio::test]
    async fn an_event_stream_is_read_to_the_answer_and_no_further() {
        let stream = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n\
                      id: 1\ndata:\n\n\
                      data: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"ok\":true}}\n\n\
                      data: not json at all\n\n";
        let got = relay_events(sse(stream), &3.into()).await;
        assert!(matches!(got, Ok(Answer::Result(r)) if r.get() == r#"{"ok":true}"#));
        let ask = "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"elicitation/create\"}\n\n";
        let err = relay_events(sse(ask), &3.into())
            .await
            .expect_err("a server request");
        assert!(err.contains("server-to-client request"), "{err}");
        let cut = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";
        let err = relay_events(sse(cut), &3.into())
            .await
            .expect_err("no answer");
        assert!(err.contains("ended without an answer"), "{err}");
        let garbage = relay_events(sse("data: {nope\n\n"), &3.into()).await;
        assert!(garbage.is_err());
        let huge = format!("data: \"{}\"\n\n", "x".repeat(MAX_ANSWER_BYTES + 10));
        let err = relay_events(sse(&huge), &3.into())
            .await
            .expect_err("over the limit");
        assert!(err.contains("over"), "{err}");
    }

    #[tokio::test]
    async fn a_json_body_is_read_within_the_limit() {
        let ok = reqwest::Response::from(http::Response::new("{\"a\":1}".to_string()));
        assert_eq!(read_bounded(ok).await.expect("small"), b"{\"a\":1}");
        let big = reqwest::Response::from(http::Response::new(vec![b' '; MAX_ANSWER_BYTES + 1]));
        assert!(read_bounded(big).await.is_err());
    }

    #[test]
    fn only_the_answer_to_our_id_is_taken() {
        let ok = answer_of(
            incoming(r#"{"jsonrpc":"2.0","id":3,"result":{"a":1}}"#),
            &3.into(),
        );
        assert!(matches!(ok, Ok(Some(Answer::Result(r))) if r.get() == r#"{"a":1}"#));
        let err = answer_of(
            incoming(r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"no"}}"#),
            &3.into(),
        );
        assert!(matches!(err, Ok(Some(Answer::Error(e))) if e.message == "no"));
        let note = incoming(r#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#);
        assert!(matches!(answer_of(note, &3.into()), Ok(None)));
        let other = incoming(r#"{"jsonrpc":"2.0","id":4,"result":{}}"#);
        assert!(answer_of(other, &3.into()).is_err());
        let string_id = incoming(r#"{"jsonrpc":"2.0","id":"3","result":{}}"#);
        assert!(answer_of(string_id, &3.into()).is_err());
        let ask = incoming(r#"{"jsonrpc":"2.0","id":9,"method":"sampling/createMessage"}"#);
        assert!(answer_of(ask, &3.into())
            .unwrap_err()
            .contains("server-to-client request"));
        let neither = incoming(r#"{"jsonrpc":"2.0","id":3}"#);
        assert!(answer_of(neither, &3.into()).is_err());
    }
}
