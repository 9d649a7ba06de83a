//! The tools: definitions (name, description, input schema) and what each does. Permission and
//! rate checks happen before any of these run (see [`super::ZtMcp`]).

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock as Content, JsonObject, Tool};
use rmcp::ErrorData;
use serde_json::{json, Value};

use crate::ca::CaError;
use crate::identity::Identity;
use crate::ledger::CertRecord;
use crate::pki::build::Reason;

/// Longest key accepted by the data tools, in bytes.
pub const MAX_KEY_LEN: usize = 256;
/// Largest value accepted by `write_data`, in bytes.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

fn schema(v: Value) -> Arc<JsonObject> {
    match v {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

/// Every tool mcp-zt implements, built once. The policy decides who sees which.
pub fn all() -> &'static [Tool] {
    static TOOLS: std::sync::LazyLock<Vec<Tool>> = std::sync::LazyLock::new(build);
    &TOOLS
}

/// Whether `name` is a tool mcp-zt implements.
pub fn exists(name: &str) -> bool {
    all().iter().any(|t| t.name == name)
}

/// Tools that touch storage (sled flushes, CRL signing) and so run off the async workers.
pub fn blocks(name: &str) -> bool {
    name != "whoami"
}

fn build() -> Vec<Tool> {
    let key = json!({"type": "string", "minLength": 1, "maxLength": MAX_KEY_LEN});
    vec![
        Tool::new(
            "whoami",
            "Your identity as the server sees it: name, role, certificate serial, SPIFFE ID.",
            schema(json!({"type": "object", "properties": {}})),
        ),
        Tool::new(
            "read_data",
            "Read the value stored under a key.",
            schema(json!({"type": "object", "properties": {"key": key}, "required": ["key"]})),
        ),
        Tool::new(
            "list_keys",
            "List the stored keys.",
            schema(json!({"type": "object", "properties": {}})),
        ),
        Tool::new(
            "write_data",
            "Store a value under a key (replaces any previous value).",
            schema(json!({"type": "object", "properties": {
                "key": key, "value": {"type": "string", "maxLength": MAX_VALUE_LEN}
            }, "required": ["key", "value"]})),
        ),
        Tool::new(
            "delete_data",
            "Delete a key and its value.",
            schema(json!({"type": "object", "properties": {"key": key}, "required": ["key"]})),
        ),
        Tool::new(
            "list_certs",
            "List every certificate the CA issued, with status.",
            schema(json!({"type": "object", "properties": {}})),
        ),
        Tool::new(
            "revoke_cert",
            "Revoke a certificate by serial, or every active certificate of a name. Takes effect at once, open connections included.",
            schema(json!({"type": "object", "properties": {
                "target": {"type": "string", "description": "name or serial (hex)"},
                "reason": {"type": "string", "enum": ["unspecified", "key-compromise", "affiliation-changed", "superseded", "cessation-of-operation", "privilege-withdrawn"]}
            }, "required": ["target"]})),
        ),
    ]
}

fn str_arg<'a>(args: &'a JsonObject, name: &str, max: usize) -> Result<&'a str, ErrorData> {
    let v = args.get(name).and_then(Value::as_str).ok_or_else(|| {
        ErrorData::invalid_params(format!("missing string argument {name:?}"), None)
    })?;
    if name == "key" && v.is_empty() {
        return Err(ErrorData::invalid_params("key must not be empty", None));
    }
    if v.len() > max {
        return Err(ErrorData::invalid_params(
            format!("{name} is longer than {max} bytes"),
            None,
        ));
    }
    Ok(v)
}

fn text(v: Value) -> CallToolResult {
    let mut r = CallToolResult::success(vec![Content::text(v.to_string())]);
    r.structured_content = Some(v);
    r
}

fn internal(e: impl std::fmt::Display) -> ErrorData {
    ErrorData::internal_error(format!("server error: {e}"), None)
}

/// What the demo tools need from the server: their key-value store, the ledger's records and
/// the revocation path. The server state implements it; the tools never see the rest of it.
pub trait DemoStore: Send + Sync {
    /// The data tools' storage.
    fn data(&self) -> &sled::Tree;
    /// Every certificate the CA issued.
    fn certificates(&self) -> Result<Vec<CertRecord>, CaError>;
    /// Revokes a serial or every active certificate of a name, live and in the CRL.
    fn revoke(&self, target: &str, reason: Reason, actor: &str)
        -> Result<Vec<CertRecord>, CaError>;
}

/// Runs an allowed tool.
pub fn run(
    state: &dyn DemoStore,
    who: &Identity,
    tool: &str,
    args: &JsonObject,
) -> Result<CallToolResult, ErrorData> {
    match tool {
        "whoami" => Ok(text(json!({
            "name": who.name, "role": who.role, "serial": who.serial,
            "spiffe_id": who.spiffe_id, "not_after": crate::pki::rfc3339(who.not_after),
        }))),
        "read_data" => {
            let key = str_arg(args, "key", MAX_KEY_LEN)?;
            match state.data().get(key.as_bytes()).map_err(internal)? {
                Some(v) => Ok(text(
                    json!({"key": key, "value": String::from_utf8_lossy(&v)}),
                )),
                None => Ok(CallToolResult::error(vec![Content::text(format!(
                    "no value stored under {key:?}"
                ))])),
            }
        }
        "list_keys" => {
            let keys: Vec<String> = state
                .data()
                .iter()
                .keys()
                .filter_map(Result::ok)
                .map(|k| String::from_utf8_lossy(&k).into_owned())
                .collect();
            Ok(text(json!({"keys": keys})))
        }
        "write_data" => {
            let key = str_arg(args, "key", MAX_KEY_LEN)?;
            let value = str_arg(args, "value", MAX_VALUE_LEN)?;
            state
                .data()
                .insert(key.as_bytes(), value.as_bytes())
                .map_err(internal)?;
            state.data().flush().map_err(internal)?;
            Ok(text(json!({"key": key, "written": true})))
        }
        "delete_data" => {
            let key = str_arg(args, "key", MAX_KEY_LEN)?;
            let existed = state
                .data()
                .remove(key.as_bytes())
                .map_err(internal)?
                .is_some();
            state.data().flush().map_err(internal)?;
            Ok(text(json!({"key": key, "deleted": existed})))
        }
        "list_certs" => {
            let now = crate::pki::now().unix_timestamp();
            let certs: Vec<Value> = state
                .certificates()
                .map_err(internal)?
                .iter()
                .map(|r| {
                    json!({"serial": r.serial, "name": r.name, "role": r.role,
                           "status": r.status(now).as_str(),
                           "not_after": crate::pki::rfc3339(r.not_after)})
                })
                .collect();
            Ok(text(json!({"certificates": certs})))
        }
        "revoke_cert" => {
            let target = str_arg(args, "target", 128)?;
            let reason = match args.get("reason").and_then(Value::as_str) {
                None => Reason::Unspecified,
                Some(s) => <Reason as clap::ValueEnum>::from_str(s, false).map_err(|_| {
                    ErrorData::invalid_params(format!("unknown reason {s:?}"), None)
                })?,
            };
            match state.revoke(target, reason, &format!("tool revoke_cert by {who}")) {
                Ok(recs) => Ok(text(json!({"revoked": recs.iter().map(|r| json!({
                    "serial": r.serial, "name": r.name})).collect::<Vec<_>>()}))),
                Err(e) => Ok(CallToolResult::error(vec![Content::text(e.to_string())])),
            }
        }
        _ => Err(ErrorData::invalid_params("tool not found", None)),
    }
}
