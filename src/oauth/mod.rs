//! OAuth 2.1 for clients that cannot present a client certificate (hosted and OAuth-native MCP
//! clients), with mcp-zt as the authorization server of its own MCP endpoint.
//!
//! Identity still comes from the certificate: a holder approves a client at the login name with
//! their client certificate (or from the command line, with it), and every token mcp-zt issues
//! carries that certificate's identity and role, lives at most as long as the certificate, and
//! dies when it is revoked. Tokens are opaque and stored only as hashes in the ledger.
//!
//! The parts: [`config`] (`oauth.toml`), [`crypto`] (token material), [`redirect`] (redirect
//! URI rules), [`metadata`] (RFC 9728 and RFC 8414 documents), [`flow`] (codes, tokens,
//! refresh, registration: the decisions), [`pages`] (the login name's HTML).

pub mod addr;
pub mod admin;
pub mod cimd;
pub mod config;
pub mod crypto;
pub mod flow;
pub mod messages;
pub mod metadata;
pub mod pages;
pub mod redirect;
pub mod register;

pub use config::{OAuthConfig, Registration};

use url::Url;

/// OAuth setup and storage failures (the protocol's own errors are [`flow::OAuthFail`]).
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// `oauth.toml` or the command-line URLs.
    #[error("{0}")]
    Config(String),
    /// The ledger.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
}

/// Prefix of access tokens.
pub const ACCESS_PREFIX: &str = "mzt_at_";
/// Prefix of refresh tokens.
pub const REFRESH_PREFIX: &str = "mzt_rt_";
/// Prefix of authorization codes.
pub const CODE_PREFIX: &str = "mzt_ac_";
/// The one scope every token has.
pub const SCOPE: &str = "mcp";

/// The two public names and what follows from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// `--public-url`: the protected resource, byte for byte (the token audience).
    pub resource: String,
    /// The issuer: the origin of `--public-url`.
    pub issuer: String,
    /// `--login-url` without a trailing slash.
    pub login: String,
    /// Host (and port, when not 443) of the MCP name, as in a `Host` header.
    pub mcp_authority: String,
    /// Host (and port) of the login name.
    pub login_authority: String,
    /// The path of the MCP endpoint on the MCP name (`/mcp`).
    pub mcp_path: String,
}

impl Endpoints {
    /// Checks `--public-url` and `--login-url`: absolute `https` URLs without query, fragment
    /// or user info; the public URL's path is where MCP is served (`/mcp`).
    pub fn new(public_url: &str, login_url: &str) -> Result<Endpoints, OAuthError> {
        let parse = |flag: &str, s: &str| -> Result<Url, OAuthError> {
            let u = Url::parse(s).map_err(|e| OAuthError::Config(format!("{flag} {s:?}: {e}")))?;
            if u.scheme() != "https" {
                return Err(OAuthError::Config(format!("{flag} {s:?}: must be https")));
            }
            if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
                return Err(OAuthError::Config(format!(
                    "{flag} {s:?}: no query, fragment or user info"
                )));
            }
            Ok(u)
        };
        let public = parse("--public-url", public_url)?;
        let login = parse("--login-url", login_url)?;
        if public.path() != "/mcp" {
            return Err(OAuthError::Config(format!(
                "--public-url {public_url:?}: the path must be /mcp (where mcp-zt serves MCP)"
            )));
        }
        if login.path() != "/" {
            return Err(OAuthError::Config(format!(
                "--login-url {login_url:?}: give the name only (https://login.example.org)"
            )));
        }
        let authority = |u: &Url| match u.port() {
            Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
            None => u.host_str().unwrap_or_default().to_string(),
        };
        Ok(Endpoints {
            resource: public_url.to_string(),
            issuer: public.origin().ascii_serialization(),
            login: login.origin().ascii_serialization(),
            mcp_authority: authority(&public),
            login_authority: authority(&login),
            mcp_path: public.path().to_string(),
        })
    }

    /// The absolute URL of the protected-resource metadata (what the 401 challenge names).
    pub fn resource_metadata_url(&self) -> String {
        format!(
            "{}/.well-known/oauth-protected-resource{}",
            self.issuer, self.mcp_path
        )
    }

    /// The host names of both URLs (for the server certificate and the Host check).
    pub fn hosts(&self) -> Vec<String> {
        let mut out = Vec::new();
        for a in [&self.mcp_authority, &self.login_authority] {
            let host = match a.rsplit_once(':') {
                Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
                _ => a.as_str(),
            };
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            if !out.contains(&host) {
                out.push(host);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_names() {
        let e = Endpoints::new("https://mcp.example.org/mcp", "https://login.example.org").unwrap();
        assert_eq!(e.issuer, "https://mcp.example.org");
        assert_eq!(e.login, "https://login.example.org");
        assert_eq!(
            e.resource_metadata_url(),
            "https://mcp.example.org/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(e.hosts(), ["mcp.example.org", "login.example.org"]);
        let local = Endpoints::new(
            "https://localhost:8443/mcp",
            "https://login.localhost:8443/",
        )
        .unwrap();
        assert_eq!(local.mcp_authority, "localhost:8443");
        assert_eq!(local.hosts(), ["localhost", "login.localhost"]);
        for (p, l) in [
            ("http://mcp.example.org/mcp", "https://login.example.org"),
            ("https://mcp.example.org/", "https://login.example.org"),
            ("https://mcp.example.org/mcp?x", "https://login.example.org"),
            (
                "https://mcp.example.org/mcp",
                "https://login.example.org/login",
            ),
            ("mcp.example.org", "https://login.example.org"),
        ] {
            assert!(Endpoints::new(p, l).is_err(), "{p} {l}");
        }
    }
}
