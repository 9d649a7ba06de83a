//! The role extension decoder: never panics, and whatever it accepts re-encodes to the same bytes
//! (strict DER: one encoding per value).
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_zt::pki::role_ext;

fuzz_target!(|data: &[u8]| {
    if let Ok(role) = role_ext::decode(data) {
        let again = role_ext::encode(&role).expect("a decoded role must encode");
        assert_eq!(again, data, "decode accepted a non-canonical encoding");
    }
});
