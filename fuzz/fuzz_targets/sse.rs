//! The bridge's Server-Sent Events parser, fed in arbitrary chunks: never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_zt::bridge::sse::SseParser;

fuzz_target!(|data: &[u8]| {
    let mut p = SseParser::default();
    let split = data.first().map_or(1, |b| usize::from(*b).max(1));
    for chunk in data.chunks(split) {
        if p.push(chunk).is_err() {
            break;
        }
    }
});
