//! The policy file parser: never panics; an accepted policy is internally consistent.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_zt::policy::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = Policy::parse(text) {
        for role in p.roles() {
            // Inheritance is acyclic and closed over known roles.
            for r in p.effective_roles(role) {
                assert!(p.has_role(&r));
            }
            let _ = p.allowed_tools(role);
        }
    }
});
