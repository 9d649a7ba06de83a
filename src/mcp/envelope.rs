//! The envelope of one POSTed message, read once for the native transport's direct path
//! (`serve --transport native`): the method, the id and the tool's name, with the arguments
//! left as raw JSON.
//!
//! Pure logic, no I/O. The rule is **decline when in doubt**: only a request whose every header
//! and field is one this module fully understands is taken; anything else (a header the
//! transport would check in a way not mirrored here, an unknown `_meta` key, a progress token,
//! a session, a name outside visible ASCII) returns `None` and goes, byte for byte, to the rmcp
//! transport, which answers it exactly as it always did. A wrong `None` costs speed only; a
//! wrong `Some` would change an answer, so every test here is about the second.

use http::{HeaderMap, Uri};
#[allow(deprecated)] // still part of 2026-07-28's `_meta`; checked, never used
use rmcp::model::LoggingLevel;
use rmcp::model::{ClientCapabilities, Implementation, RequestId};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The only revision served on the direct path: its requests stand alone (no session).
pub const REVISION: &str = "2026-07-28";

/// A `tools/call` request taken for the direct path.
#[derive(Debug)]
pub struct ToolCall {
    /// The client's request id, echoed in the answer.
    pub id: RequestId,
    /// The exposed tool name.
    pub name: String,
    /// The arguments as sent (a JSON object), not parsed yet.
    pub arguments: Option<Box<RawValue>>,
    /// A stateless request's client capabilities (its `_meta`); `None` in a session.
    pub capabilities: Option<ClientCapabilities>,
    /// Whether a stateless request asked for log messages (its `_meta` names a level).
    pub wants_log: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    #[serde(borrow)]
    jsonrpc: &'a str,
    id: RequestId,
    #[serde(borrow)]
    method: &'a str,
    params: Params,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    name: String,
    #[serde(default)]
    arguments: Option<Box<RawValue>>,
    #[serde(rename = "_meta")]
    meta: Meta,
}

/// The per-request `_meta` of 2026-07-28; a key not listed here declines the request.
#[allow(deprecated)] // the log level is still part of 2026-07-28's `_meta`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
    protocol_version: String,
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities")]
    capabilities: ClientCapabilities,
    #[serde(rename = "io.modelcontextprotocol/clientInfo", default)]
    _client_info: Option<Implementation>,
    #[serde(rename = "io.modelcontextprotocol/logLevel", default)]
    log_level: Option<LoggingLevel>,
}

/// A `tools/call` inside a session (revisions before 2026-07-28): no `_meta` at all, so no
/// progress token and nothing per request that the session's handler would read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionWire<'a> {
    #[serde(borrow)]
    jsonrpc: &'a str,
    id: RequestId,
    #[serde(borrow)]
    method: &'a str,
    params: SessionParams,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionParams {
    name: String,
    #[serde(default)]
    arguments: Option<Box<RawValue>>,
}

/// Revisions whose requests travel in a session and whose answers are the same for a tool
/// call (no `resultType`).
pub const SESSION_REVISIONS: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];

/// The body as a `tools/call` in a session, or `None` (declined).
pub fn session_tool_call(body: &[u8]) -> Option<ToolCall> {
    let wire: SessionWire<'_> = serde_json::from_slice(body).ok()?;
    let p = wire.params;
    checked(wire.jsonrpc, wire.method, wire.id, p.name, p.arguments)
}

/// The call, when its envelope is a plain `tools/call` of a plain name with object arguments.
fn checked(
    jsonrpc: &str,
    method: &str,
    id: RequestId,
    name: String,
    arguments: Option<Box<RawValue>>,
) -> Option<ToolCall> {
    let ok = jsonrpc == "2.0"
        && method == "tools/call"
        && object_or_none(arguments.as_deref())
        && plain_name(&name);
    ok.then_some(ToolCall {
        id,
        name,
        arguments,
        capabilities: None,
        wants_log: false,
    })
}

/// Whether the body is the `notifications/initialized` a client sends after `initialize`.
pub fn is_initialized_notification(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Note<'a> {
        #[serde(borrow)]
        jsonrpc: &'a str,
        #[serde(borrow)]
        method: &'a str,
        id: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Note<'_>>(body).is_ok_and(|n| {
        n.jsonrpc == "2.0" && n.method == "notifications/initialized" && n.id.is_none()
    })
}

fn object_or_none(args: Option<&RawValue>) -> bool {
    args.is_none_or(|a| a.get().trim_start().starts_with('{'))
}

/// The body as a direct `tools/call`, or `None` (declined: the rmcp transport takes it).
pub fn tool_call(body: &[u8]) -> Option<ToolCall> {
    let wire: Wire<'_> = serde_json::from_slice(body).ok()?;
    if wire.params.meta.protocol_version != REVISION {
        return None;
    }
    let p = wire.params;
    let mut call = checked(wire.jsonrpc, wire.method, wire.id, p.name, p.arguments)?;
    call.wants_log = p.meta.log_level.is_some();
    call.capabilities = Some(p.meta.capabilities);
    Some(call)
}

/// A name that travels unchanged in the `Mcp-Name` header (visible ASCII, and not the
/// `=?base64?...?=` form a header value may be decoded from).
pub fn plain_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) && !name.starts_with("=?")
}

/// Whether the headers are a plain stateless 2026-07-28 `tools/call` of tool `name` that the
/// rmcp transport would accept as is: JSON in, JSON and SSE accepted, the revision, the
/// standard `Mcp-Method`/`Mcp-Name` headers matching the body, an allowed Host, and nothing
/// this module does not mirror (a session, `Last-Event-ID`, `Origin`, `Mcp-Param-*`).
pub fn headers_direct(
    headers: &HeaderMap,
    uri: &Uri,
    allowed_hosts: &[String],
    name: &str,
) -> bool {
    let one = |h: &str, want: &str| {
        let mut all = headers.get_all(h).iter();
        matches!((all.next(), all.next()), (Some(v), None) if v.as_bytes() == want.as_bytes())
    };
    let declined = headers.keys().any(|k| {
        let k = k.as_str();
        k == "mcp-session-id"
            || k == "last-event-id"
            || k == "origin"
            || k.starts_with("mcp-param-")
    });
    !declined
        && one("content-type", "application/json")
        && accepts_both(headers)
        && one("mcp-protocol-version", REVISION)
        && one("mcp-method", "tools/call")
        && one("mcp-name", name)
        && host_allowed(headers, uri, allowed_hosts)
}

/// Whether the headers are a plain `tools/call` in session `session` that the rmcp transport
/// would take as is: JSON in, JSON and SSE accepted, one `MCP-Protocol-Version` of a session
/// revision, an allowed Host, and none of the headers this module does not mirror (`Origin`,
/// `Last-Event-ID`, the standard `Mcp-Method`/`Mcp-Name`/`Mcp-Param-*` of later revisions).
pub fn session_headers_direct(
    headers: &HeaderMap,
    uri: &Uri,
    allowed_hosts: &[String],
) -> Option<String> {
    let single = |h: &str| {
        let mut all = headers.get_all(h).iter();
        match (all.next(), all.next()) {
            (Some(v), None) => v.to_str().ok(),
            _ => None,
        }
    };
    let declined = headers.keys().any(|k| {
        let k = k.as_str();
        k == "last-event-id"
            || k == "origin"
            || k == "mcp-method"
            || k == "mcp-name"
            || k.starts_with("mcp-param-")
    });
    let revision = single("mcp-protocol-version")?;
    let ok = !declined
        && single("content-type") == Some("application/json")
        && SESSION_REVISIONS.contains(&revision)
        && accepts_both(headers)
        && host_allowed(headers, uri, allowed_hosts);
    ok.then(|| single("mcp-session-id").map(str::to_string))
        .flatten()
}

/// One `Accept` header listing both media types without parameters (weights decline).
fn accepts_both(headers: &HeaderMap) -> bool {
    let mut all = headers.get_all(http::header::ACCEPT).iter();
    let (Some(v), None) = (all.next(), all.next()) else {
        return false;
    };
    // Quoted strings may hold commas: rmcp splits around them, this check does not try.
    let Ok(v) = v.to_str() else {
        return false;
    };
    if v.contains('"') {
        return false;
    }
    let types: Vec<&str> = v.split(',').map(str::trim).collect();
    types.iter().all(|t| !t.contains(';'))
        && types.contains(&"application/json")
        && types.contains(&"text/event-stream")
}

/// The Host (or HTTP/2 authority) is one the server names: host equal, and the port equal
/// where the allowed entry names one.
fn host_allowed(headers: &HeaderMap, uri: &Uri, allowed: &[String]) -> bool {
    let authority = match headers.get(http::header::HOST) {
        Some(h) => match h
            .to_str()
            .ok()
            .and_then(|s| s.parse::<http::uri::Authority>().ok())
        {
            Some(a) => a,
            None => return false,
        },
        None => match uri.authority() {
            Some(a) => a.clone(),
            None => return false,
        },
    };
    let norm = |h: &str| {
        h.trim_matches(|c| c == '[' || c == ']')
            .to_ascii_lowercase()
    };
    let host = norm(authority.host());
    let port = authority.port_u16();
    !allowed.is_empty()
        && allowed.iter().any(|a| {
            let (h, p) = match a.trim().parse::<http::uri::Authority>() {
                Ok(x) => (norm(x.host()), x.port_u16()),
                Err(_) => (norm(a.trim()), None),
            };
            h == host && p.is_none_or(|p| Some(p) == port)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(extra_meta: &str, params_extra: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"whoami","arguments":{{"a":1}}{params_extra},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}{extra_meta}}}}}}}"#
        )
    }

    fn headers(name: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", name),
            ("host", "localhost:8443"),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        h
    }

    fn hosts() -> Vec<String> {
        vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()]
    }

    #[test]
    fn a_plain_call_is_taken_with_its_arguments_raw() {
        let c = tool_call(body("", "").as_bytes()).unwrap();
        assert_eq!(c.name, "whoami");
        assert_eq!(c.id, RequestId::Number(7));
        assert_eq!(c.arguments.unwrap().get(), r#"{"a":1}"#);
        let uri: Uri = "/".parse().unwrap();
        assert!(headers_direct(&headers("whoami"), &uri, &hosts(), "whoami"));
    }

    #[test]
    fn anything_not_mirrored_is_declined() {
        for (meta, params) in [
            (r#","progressToken":1"#, ""),
            (r#","io.modelcontextprotocol/other":1"#, ""),
            ("", r#","requestState":"x""#),
            ("", r#","task":{}"#),
            (r#","io.modelcontextprotocol/logLevel":"loud""#, ""),
        ] {
            assert!(
                tool_call(body(meta, params).as_bytes()).is_none(),
                "{meta}{params}"
            );
        }
        let declined = [
            // duplicate key, other revision, other method, a non-ASCII name, batch, wrong types
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"w","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"w","_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"w","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"=?base64?d2hvYW1p?=","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"w\u00e9","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"w","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}]"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"w","arguments":[1],"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"w","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"w","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"w","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"w","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":5}}}}"#,
            "",
            "{",
        ];
        for b in declined {
            assert!(tool_call(b.as_bytes()).is_none(), "{b}");
        }
    }

    #[test]
    fn headers_the_direct_path_does_not_mirror_decline() {
        let uri: Uri = "/".parse().unwrap();
        let ok = |h: &HeaderMap| headers_direct(h, &uri, &hosts(), "whoami");
        let cases: [(&str, Option<&str>); 12] = [
            ("mcp-session-id", Some("abc")),
            ("origin", Some("https://localhost:8443")),
            ("mcp-param-x", Some("1")),
            ("last-event-id", Some("1")),
            ("accept", Some("application/json;q=0.5, text/event-stream")),
            ("accept", Some("application/json")),
            (
                "accept",
                Some("text/event-stream, \"a, application/json, b\""),
            ),
            ("content-type", Some("text/plain")),
            ("mcp-protocol-version", Some("2025-11-25")),
            ("mcp-name", Some("other")),
            ("mcp-method", None),
            ("host", Some("evil.example:8443")),
        ];
        for (k, v) in cases {
            let mut h = headers("whoami");
            match v {
                Some(v) => {
                    h.insert(k, v.parse().unwrap());
                }
                None => {
                    h.remove(k);
                }
            }
            assert!(!ok(&h), "{k}: {v:?}");
        }
        let mut twice = headers("whoami");
        twice.append("mcp-method", "tools/call".parse().unwrap());
        assert!(!ok(&twice), "a repeated Mcp-Method");
    }

    #[test]
    fn session_calls_are_taken_only_bare() {
        let plain = r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;
        let c = session_tool_call(plain.as_bytes()).unwrap();
        assert_eq!(c.id, RequestId::String("a".into()));
        for b in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","_meta":{"progressToken":1}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":[]}}"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"whoami"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        ] {
            assert!(session_tool_call(b.as_bytes()).is_none(), "{b}");
        }
        assert!(is_initialized_notification(
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
        ));
        assert!(!is_initialized_notification(
            br#"{"jsonrpc":"2.0","id":1,"method":"notifications/initialized"}"#
        ));
        let uri: Uri = "/".parse().unwrap();
        let mut h = headers("whoami");
        h.remove("mcp-method");
        h.remove("mcp-name");
        h.insert("mcp-protocol-version", "2025-06-18".parse().unwrap());
        assert!(
            session_headers_direct(&h, &uri, &hosts()).is_none(),
            "no session id"
        );
        h.insert("mcp-session-id", "s1".parse().unwrap());
        assert_eq!(
            session_headers_direct(&h, &uri, &hosts()).as_deref(),
            Some("s1")
        );
        for (k, v) in [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("origin", "https://x"),
        ] {
            let mut bad = h.clone();
            bad.insert(k, v.parse().unwrap());
            assert!(
                session_headers_direct(&bad, &uri, &hosts()).is_none(),
                "{k}"
            );
        }
    }

    #[test]
    fn the_host_check_matches_names_and_ports() {
        let uri: Uri = "/".parse().unwrap();
        let mut h = headers("whoami");
        let allowed = vec!["mcp.example.com:443".to_string(), "[::1]".to_string()];
        h.insert("host", "MCP.example.com:443".parse().unwrap());
        assert!(headers_direct(&h, &uri, &allowed, "whoami"));
        h.insert("host", "mcp.example.com:8443".parse().unwrap());
        assert!(!headers_direct(&h, &uri, &allowed, "whoami"));
        h.insert("host", "[::1]:9".parse().unwrap());
        assert!(headers_direct(&h, &uri, &allowed, "whoami"));
        h.remove("host");
        let h2: Uri = "https://[::1]:8443/mcp".parse().unwrap();
        assert!(headers_direct(&h, &h2, &allowed, "whoami"));
        assert!(!headers_direct(&h, &uri, &allowed, "whoami"));
        assert!(!headers_direct(&headers("whoami"), &uri, &[], "whoami"));
    }
}
