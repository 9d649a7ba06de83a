//! The discovery documents: protected-resource metadata (RFC 9728) and authorization-server
//! metadata (RFC 8414), and the 401 challenge that points at the first.

use serde_json::{json, Value};

use super::{Endpoints, OAuthConfig, Registration, SCOPE};

/// RFC 9728 protected-resource metadata. `resource` is `--public-url` byte for byte: clients
/// compare it with the URL they connected to.
pub fn protected_resource(e: &Endpoints, roles: &[String]) -> Value {
    json!({
        "resource": e.resource,
        "authorization_servers": [e.issuer],
        "scopes_supported": scopes(roles),
        "bearer_methods_supported": ["header"],
        "resource_name": "mcp-zt",
        "tls_client_certificate_bound_access_tokens": true,
    })
}

/// RFC 8414 authorization-server metadata (also served as `openid-configuration`, where some
/// clients look first). The authorization endpoint is on the login name, where browsers are
/// asked for a certificate; the rest is on the MCP name.
pub fn authorization_server(e: &Endpoints, roles: &[String], c: &OAuthConfig) -> Value {
    let token = format!("{}/token", e.issuer);
    let revoke = format!("{}/revoke", e.issuer);
    let mut doc = json!({
        "issuer": e.issuer,
        "authorization_endpoint": format!("{}/authorize", e.login),
        "token_endpoint": token,
        "revocation_endpoint": revoke,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported":
            ["none", "client_secret_basic", "client_secret_post", "tls_client_auth"],
        "revocation_endpoint_auth_methods_supported":
            ["none", "client_secret_basic", "client_secret_post"],
        "scopes_supported": scopes(roles),
        "client_id_metadata_document_supported": c.allows(Registration::Cimd),
        "authorization_response_iss_parameter_supported": true,
        "tls_client_certificate_bound_access_tokens": true,
        "mtls_endpoint_aliases": {
            "token_endpoint": token,
            "revocation_endpoint": revoke,
        },
    });
    if c.allows(Registration::Dcr) {
        let register = format!("{}/register", e.issuer);
        doc["registration_endpoint"] = json!(register);
        doc["mtls_endpoint_aliases"]["registration_endpoint"] = json!(register);
    }
    doc
}

/// `mcp` and one `role:NAME` per role of the policy (a client may ask for a narrower role).
fn scopes(roles: &[String]) -> Vec<String> {
    let mut out = vec![SCOPE.to_string()];
    out.extend(roles.iter().map(|r| format!("role:{r}")));
    out
}

/// The `WWW-Authenticate` value of a 401 from the MCP endpoint; `error` for a token that was
/// presented and refused (RFC 6750 §3.1).
pub fn challenge(e: &Endpoints, error: Option<(&str, &str)>) -> String {
    let mut v = format!(
        "Bearer resource_metadata=\"{}\", scope=\"{SCOPE}\"",
        e.resource_metadata_url()
    );
    if let Some((code, why)) = error {
        // The description is mcp-zt's own text; quotes and backslashes are dropped anyway.
        let why: String = why
            .chars()
            .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
            .collect();
        v.push_str(&format!(", error=\"{code}\", error_description=\"{why}\""));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documents_agree_with_each_other() {
        let e = Endpoints::new("https://mcp.example.org/mcp", "https://login.example.org").unwrap();
        let roles = vec!["viewer".to_string(), "admin".to_string()];
        let prm = protected_resource(&e, &roles);
        let asm = authorization_server(&e, &roles, &OAuthConfig::default());
        assert_eq!(prm["resource"], "https://mcp.example.org/mcp");
        assert_eq!(prm["authorization_servers"][0], asm["issuer"]);
        assert_eq!(
            prm["scopes_supported"],
            json!(["mcp", "role:viewer", "role:admin"])
        );
        assert_eq!(
            asm["authorization_endpoint"],
            "https://login.example.org/authorize"
        );
        assert_eq!(asm["token_endpoint"], "https://mcp.example.org/token");
        assert_eq!(
            asm["registration_endpoint"],
            "https://mcp.example.org/register"
        );
        assert_eq!(asm["code_challenge_methods_supported"], json!(["S256"]));
        let c = challenge(&e, Some(("invalid_token", "token \"expired\"")));
        assert!(c.starts_with(
            "Bearer resource_metadata=\"https://mcp.example.org/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\""
        ));
        assert!(c.ends_with("error=\"invalid_token\", error_description=\"token expired\""));
    }
}
