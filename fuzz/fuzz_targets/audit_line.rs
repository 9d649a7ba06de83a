//! The audit log reader's line parser: never panics on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mcp_zt::audit::parse_line(data);
});
