//! The server's JSON-RPC ingress check (what every POST body meets before rmcp): never panics,
//! and what it accepts is a JSON-RPC message rmcp can deserialize.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if mcp_zt::server::http::check_jsonrpc(data).is_ok() {
        let v: serde_json::Value = serde_json::from_slice(data).expect("accepted bytes are JSON");
        assert!(v.is_object() || v.is_array());
    }
});
