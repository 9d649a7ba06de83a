//! mcp-zt as each holder's OAuth client to the MCP servers behind it (`auth = "oauth"`):
//! discovery and the authorization-code flow with PKCE ([`discover`], [`http`]), the
//! holder-bound link and the sealed tokens ([`linker`]), static per-holder secrets
//! ([`secret`]), re-sealing under a new key ([`rotate`]), and what a holder whose upstream
//! needs a link is told ([`prompt`]).
//!
//! The token a client brought (a certificate, or an mcp-zt OAuth token) never goes upstream:
//! the upstream gets the holder's own upstream token, which only the holder's own connection
//! carries. MCP forbids token passthrough; a gateway with one shared upstream identity would
//! undo the per-holder identity the certificate gave.

pub mod admin;
pub mod discover;
pub mod http;
pub mod linker;
pub mod prompt;
pub mod rotate;
pub mod secret;

use crate::upstream::bearer::AuthFailure;

/// Starts a connection error that is the upstream refusing the holder's token (the rest says
/// how), so the provider asks the holder to link rather than calling the upstream down.
pub const REFUSED_MARK: &str = "upstream refused the token: ";

/// One line about a refusal (the challenge is the upstream's own, never a secret).
pub fn refusal_text(f: &AuthFailure) -> String {
    match f {
        AuthFailure::Unauthorized(h) => format!("401 {h}"),
        AuthFailure::InsufficientScope(h) => format!("403 {h}"),
    }
}
