//! The mTLS side of the bridge: one remote mcp-zt, spoken to in streamable HTTP.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use super::sse::SseParser;
use super::{read_body, redirect_error, BridgeError, Credentials, MAX_BODY};

/// Where forwarded messages go (the local client).
pub type Outbox = mpsc::Sender<Value>;

/// The remote server and the session with it.
pub struct Upstream {
    client: RwLock<reqwest::Client>,
    url: String,
    session: Mutex<Option<String>>,
    protocol: Mutex<Option<String>>,
}

/// What a POST produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Posted {
    /// 202/204: a notification or response was accepted.
    Accepted,
    /// The response to the request was forwarded.
    Answered,
}

fn header_value(v: &str) -> Option<reqwest::header::HeaderValue> {
    use base64::Engine;
    let plain = !v.starts_with([' ', '\t'])
        && !v.ends_with([' ', '\t'])
        && v.chars().all(|c| (' '..='~').contains(&c));
    let text = if plain {
        v.to_string()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(v)
        )
    };
    reqwest::header::HeaderValue::from_str(&text).ok()
}

/// The value of the `Mcp-Name` header for a request (SEP-2243), if the method has one.
fn mcp_name(method: &str, params: Option<&Value>) -> Option<String> {
    let key = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
        "tasks/get" | "tasks/update" | "tasks/cancel" => "taskId",
        _ => return None,
    };
    params?.get(key)?.as_str().map(str::to_string)
}

impl Upstream {
    /// A client for `url` presenting `creds`.
    pub fn new(url: &str, creds: &Credentials) -> Result<Upstream, BridgeError> {
        Ok(Upstream {
            client: RwLock::new(creds.client()?),
            url: url.to_string(),
            session: Mutex::new(None),
            protocol: Mutex::new(None),
        })
    }

    /// Swaps in a client with renewed credentials.
    pub fn set_credentials(&self, creds: &Credentials) -> Result<(), BridgeError> {
        let c = creds.client()?;
        *self.client.write().unwrap_or_else(|p| p.into_inner()) = c;
        Ok(())
    }

    fn client(&self) -> reqwest::Client {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The base URL (for renewal, which lives next to `/mcp`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The current session id.
    pub fn session(&self) -> Option<String> {
        self.session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets the session (after the server lost it).
    pub fn reset_session(&self) {
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let mut rb = self.client().request(method, &self.url);
        if let Some(s) = self.session() {
            rb = rb.header("Mcp-Session-Id", s);
        }
        if let Some(p) = self
            .protocol
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            rb = rb.header("MCP-Protocol-Version", p);
        }
        rb
    }

    /// POSTs one message; forwards whatever the server answers (JSON or an event stream) to
    /// `out`, until the response to this request has been forwarded.
    pub async fn post(&self, msg: &Value, out: &Outbox) -> Result<Posted, BridgeError> {
        let method = msg.get("method").and_then(Value::as_str);
        let id = msg.get("id").filter(|_| method.is_some()).cloned();
        let mut rb = self
            .request(reqwest::Method::POST)
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json");
        if let Some(m) = method {
            if let Some(v) = header_value(m) {
                rb = rb.header("Mcp-Method", v);
            }
            if let Some(v) = mcp_name(m, msg.get("params"))
                .as_deref()
                .and_then(header_value)
            {
                rb = rb.header("Mcp-Name", v);
            }
            // A stateless (2026-07-28) client names its version in each request's _meta.
            if let Some(v) = msg
                .pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion")
                .and_then(Value::as_str)
                .and_then(header_value)
            {
                rb = rb.header("MCP-Protocol-Version", v);
            }
        }
        let resp = rb
            .body(msg.to_string())
            .send()
            .await
            .map_err(|e| BridgeError::from_reqwest(&e))?;
        let status = resp.status();
        if let Some(sid) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            *self.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(sid.to_string());
        }
        if status == reqwest::StatusCode::ACCEPTED || status == reqwest::StatusCode::NO_CONTENT {
            return Ok(Posted::Accepted);
        }
        if status == reqwest::StatusCode::NOT_FOUND && self.session().is_some() {
            return Err(BridgeError::SessionExpired);
        }
        if status.is_redirection() {
            return Err(redirect_error(&resp));
        }
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/event-stream"));
        if !status.is_success() && !is_sse {
            let body = read_body(resp, MAX_BODY).await?;
            let body = String::from_utf8_lossy(&body);
            // A JSON-RPC error body (e.g. rate limits, bad requests) goes to the client as is.
            if let Ok(v) = serde_json::from_str::<Value>(&body) {
                if v.get("error").is_some() && v.get("id").is_some() {
                    self.note_protocol(&v);
                    let _ = out.send(v).await;
                    return Ok(Posted::Answered);
                }
            }
            return Err(BridgeError::Http(
                status.as_u16(),
                body.chars().take(300).collect(),
            ));
        }
        if !is_sse {
            let bytes = read_body(resp, MAX_BODY).await?;
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| BridgeError::Protocol(format!("bad JSON from server: {e}")))?;
            self.note_protocol(&v);
            let _ = out.send(v).await;
            return Ok(Posted::Answered);
        }
        let mut parser = SseParser::default();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BridgeError::from_reqwest(&e))?;
            let events = parser
                .push(&chunk)
                .map_err(|e| BridgeError::Protocol(e.to_string()))?;
            for ev in events {
                if ev.data.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(&ev.data)
                    .map_err(|e| BridgeError::Protocol(format!("bad event from server: {e}")))?;
                self.note_protocol(&v);
                let done = id.is_some()
                    && v.get("id") == id.as_ref()
                    && (v.get("result").is_some() || v.get("error").is_some());
                let _ = out.send(v).await;
                if done {
                    return Ok(Posted::Answered);
                }
            }
        }
        match id {
            Some(_) => Err(BridgeError::Protocol(
                "the server closed the stream before answering".into(),
            )),
            None => Ok(Posted::Accepted),
        }
    }

    /// Remembers the protocol version the server chose in its initialize result.
    fn note_protocol(&self, v: &Value) {
        if let Some(p) = v.pointer("/result/protocolVersion").and_then(Value::as_str) {
            if v.pointer("/result/serverInfo").is_some() {
                *self.protocol.lock().unwrap_or_else(|p| p.into_inner()) = Some(p.to_string());
            }
        }
    }

    /// Holds the server-to-client event stream open (GET), forwarding every message, until
    /// the server refuses it (405), the session ends, or a certificate error occurs.
    pub async fn listen(self: Arc<Self>, out: Outbox) -> Result<(), BridgeError> {
        let mut last_id: Option<String> = None;
        let mut pause = Duration::from_millis(100);
        loop {
            if self.session().is_none() {
                return Ok(());
            }
            let mut rb = self
                .request(reqwest::Method::GET)
                .header("Accept", "text/event-stream");
            if let Some(id) = &last_id {
                rb = rb.header("Last-Event-Id", id.clone());
            }
            match rb.send().await {
                Ok(resp) if resp.status() == reqwest::StatusCode::METHOD_NOT_ALLOWED => {
                    return Ok(())
                }
                Ok(resp) if resp.status().is_success() => {
                    pause = Duration::from_millis(100);
                    let mut parser = SseParser::default();
                    let mut body = resp.bytes_stream();
                    while let Some(chunk) = body.next().await {
                        let Ok(chunk) = chunk else { break };
                        let events = match parser.push(&chunk) {
                            Ok(events) => events,
                            Err(e) => {
                                eprintln!("mcp-zt connect: {e}; reopening the event stream");
                                break;
                            }
                        };
                        for ev in events {
                            if ev.id.is_some() {
                                last_id = ev.id.clone();
                            }
                            if let Ok(v) = serde_json::from_str::<Value>(&ev.data) {
                                let _ = out.send(v).await;
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let err = BridgeError::from_reqwest(&e);
                    if err.is_fatal() {
                        return Err(err);
                    }
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Ends the session on the server (best effort).
    pub async fn close(&self) {
        if self.session().is_some() {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                self.request(reqwest::Method::DELETE).send(),
            )
            .await;
        }
    }
}
