//! Certificate → identity mapping on arbitrary DER: never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_zt::identity;
use mcp_zt::pki::role_ext::Oid;

fuzz_target!(|data: &[u8]| {
    let _ = identity::from_der(data, &Oid::default(), "example.org");
    let _ = identity::serial_and_name(data);
    let _ = mcp_zt::pki::inspect::fields_from_der(data, &Oid::default());
});
