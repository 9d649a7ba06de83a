//! What the authorization server's clients send and get back: the authorization request and
//! its refusals, the token endpoint's form and answer, and protocol errors.

use serde::{Deserialize, Serialize};

use crate::ledger::oauth::Grant;
use crate::ledger::LedgerError;

/// A protocol error (RFC 6749 §5.2, RFC 7591 §3.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthFail {
    /// HTTP status.
    pub status: u16,
    /// `error`.
    pub code: &'static str,
    /// `error_description` (mcp-zt's own words; never a secret).
    pub description: String,
    /// The audit event this refusal is (`token_refused` unless something worse happened).
    pub event: &'static str,
    /// A grant this refusal revoked (code or refresh reuse): its open streams must be cut.
    pub revoked_grant: Option<String>,
}

impl OAuthFail {
    pub(super) fn new(
        status: u16,
        code: &'static str,
        description: impl Into<String>,
    ) -> OAuthFail {
        OAuthFail {
            status,
            code,
            description: description.into(),
            event: "token_refused",
            revoked_grant: None,
        }
    }
    /// `server_error` (500).
    pub fn internal(description: impl Into<String>) -> OAuthFail {
        OAuthFail::new(500, "server_error", description)
    }
    pub(super) fn grant(description: impl Into<String>) -> OAuthFail {
        OAuthFail::new(400, "invalid_grant", description)
    }
    /// `invalid_client` (401): the token endpoint's answer to an unknown or deleted client,
    /// which makes hosted clients register again.
    pub fn client(description: impl Into<String>) -> OAuthFail {
        OAuthFail::new(401, "invalid_client", description)
    }
    /// `invalid_request` (400).
    pub fn request(description: impl Into<String>) -> OAuthFail {
        OAuthFail::new(400, "invalid_request", description)
    }
    fn storage(e: LedgerError) -> OAuthFail {
        OAuthFail::new(500, "server_error", format!("ledger: {e}"))
    }
}

impl From<LedgerError> for OAuthFail {
    fn from(e: LedgerError) -> Self {
        OAuthFail::storage(e)
    }
}

/// The query of `/authorize`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthorizeParams {
    /// Must be `code`.
    pub response_type: Option<String>,
    /// The client.
    pub client_id: Option<String>,
    /// Where the answer goes.
    pub redirect_uri: Option<String>,
    /// Echoed back.
    pub state: Option<String>,
    /// PKCE challenge.
    pub code_challenge: Option<String>,
    /// Must be `S256`.
    pub code_challenge_method: Option<String>,
    /// RFC 8707 resource.
    pub resource: Option<String>,
    /// Space-separated scopes.
    pub scope: Option<String>,
}

/// An authorization request that passed every check: what the consent page shows and what the
/// approval turns into a code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    /// The client.
    pub client_id: String,
    /// The exact redirect URI of the request.
    pub redirect_uri: String,
    /// The client's state (echoed).
    pub state: Option<String>,
    /// PKCE S256 challenge.
    pub challenge: String,
    /// The resource (always the canonical one).
    pub resource: String,
    /// A `role:NAME` the client asked for, if any (the holder may narrow further).
    pub role: Option<String>,
}

/// Why an authorization request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The client or redirect URI cannot be trusted: an error page, never a redirect.
    Page(String),
    /// Everything else: back to the client with `error` (the full URL to redirect to).
    Redirect {
        /// Where to.
        to: String,
        /// Why (for the audit log).
        why: String,
    },
}

/// The answer of the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenAnswer {
    /// The access token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The refresh token.
    pub refresh_token: String,
    /// `mcp` and the role granted.
    pub scope: String,
}

/// The form of the token endpoint (both grants).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenForm {
    /// `authorization_code` or `refresh_token`.
    pub grant_type: Option<String>,
    /// The code.
    pub code: Option<String>,
    /// Must repeat the authorization request's.
    pub redirect_uri: Option<String>,
    /// PKCE verifier.
    pub code_verifier: Option<String>,
    /// The client (public clients, `client_secret_post`).
    pub client_id: Option<String>,
    /// `client_secret_post`.
    pub client_secret: Option<String>,
    /// The refresh token.
    pub refresh_token: Option<String>,
    /// RFC 8707.
    pub resource: Option<String>,
    /// Ignored on refresh beyond a check that it asks for nothing more.
    pub scope: Option<String>,
}

/// Why an access token was refused, with its grant when the token was known (so the refusal
/// is audited with the holder and the client).
#[derive(Debug)]
pub struct TokenRefusal {
    /// Why.
    pub why: String,
    /// The token's grant.
    pub grant: Option<Box<Grant>>,
}

impl From<(String, Option<Box<Grant>>)> for TokenRefusal {
    fn from((why, grant): (String, Option<Box<Grant>>)) -> Self {
        TokenRefusal { why, grant }
    }
}
