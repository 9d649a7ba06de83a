//! Discovery, as an MCP client does it: the upstream's 401 challenge names its
//! protected-resource metadata (RFC 9728), which names the authorization server, whose own
//! metadata (RFC 8414, else OpenID Connect discovery) gives the endpoints. Pure parsing here;
//! the fetching is in [`super::http`].

use serde::Deserialize;
use url::Url;

/// What a `WWW-Authenticate: Bearer ...` challenge says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `resource_metadata`: where the protected-resource metadata is.
    pub resource_metadata: Option<String>,
    /// `scope`: what the resource wants.
    pub scope: Option<String>,
    /// `error`: `invalid_token`, `insufficient_scope`, ...
    pub error: Option<String>,
}

impl Challenge {
    /// The scopes it asks for.
    pub fn scopes(&self) -> Vec<String> {
        self.scope.as_deref().map(split_scopes).unwrap_or_default()
    }
}

/// Space-separated scopes, without empties and repeats (order kept).
pub fn split_scopes(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in s.split(' ').filter(|t| !t.is_empty()) {
        if !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    out
}

/// `a` then what `b` adds.
pub fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut out = a.to_vec();
    for s in b {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

/// Parses the Bearer challenge of a `WWW-Authenticate` value (other schemes are ignored).
/// Quoted values may contain commas and escaped quotes.
pub fn parse_challenge(header: &str) -> Challenge {
    let mut c = Challenge::default();
    let Some(start) = find_bearer(header) else {
        return c;
    };
    let mut rest = &header[start..];
    loop {
        rest = rest.trim_start_matches([' ', ',', '\t']);
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().to_ascii_lowercase();
        if name.contains(' ') {
            // The next scheme begins.
            break;
        }
        rest = &rest[eq + 1..];
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, ch)) = chars.next() {
                match ch {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    _ => v.push(ch),
                }
            }
            value = v;
            rest = &q[end.min(q.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        match name.as_str() {
            "resource_metadata" => c.resource_metadata = Some(value),
            "scope" => c.scope = Some(value),
            "error" => c.error = Some(value),
            _ => {}
        }
    }
    c
}

fn find_bearer(header: &str) -> Option<usize> {
    let lower = header.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("bearer") {
        let at = from + i;
        let before_ok = at == 0 || matches!(lower.as_bytes()[at - 1], b' ' | b',');
        let after = at + "bearer".len();
        let after_ok = after == lower.len() || lower.as_bytes()[after] == b' ';
        if before_ok && after_ok {
            return Some(after);
        }
        from = after;
    }
    None
}

/// Where protected-resource metadata may be, in order: the challenge's URL, then the
/// well-known URL with the resource's path, then at the root (RFC 9728 §3.1).
pub fn resource_metadata_urls(resource: &Url, challenge: &Challenge) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(u) = &challenge.resource_metadata {
        out.push(u.clone());
    }
    let path = resource.path().trim_end_matches('/');
    let origin = origin_of(resource);
    if !path.is_empty() {
        out.push(format!(
            "{origin}/.well-known/oauth-protected-resource{path}"
        ));
    }
    out.push(format!("{origin}/.well-known/oauth-protected-resource"));
    out.dedup();
    out
}

/// Where authorization-server metadata may be, in order: RFC 8414 (path inserted), OpenID
/// Connect discovery with the path inserted, then appended.
pub fn server_metadata_urls(issuer: &Url) -> Vec<String> {
    let origin = origin_of(issuer);
    let path = issuer.path().trim_end_matches('/');
    let mut out = vec![format!(
        "{origin}/.well-known/oauth-authorization-server{path}"
    )];
    if path.is_empty() {
        out.push(format!("{origin}/.well-known/openid-configuration"));
    } else {
        out.push(format!("{origin}/.well-known/openid-configuration{path}"));
        out.push(format!("{origin}{path}/.well-known/openid-configuration"));
    }
    out
}

/// `scheme://host[:port]`.
pub fn origin_of(u: &Url) -> String {
    u.origin().ascii_serialization()
}

/// Protected-resource metadata (the fields used).
#[derive(Debug, Clone, Deserialize)]
pub struct ResourceMetadata {
    /// The resource's identifier: sent as `resource` (RFC 8707).
    pub resource: String,
    /// Its authorization servers (issuers).
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// Scopes it knows.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
}

/// Authorization-server metadata (the fields used).
#[derive(Debug, Clone, Deserialize)]
pub struct ServerMetadata {
    /// Its issuer: must equal the URL it was fetched for (RFC 8414 §3.3).
    pub issuer: String,
    /// Where the holder's browser goes.
    pub authorization_endpoint: String,
    /// Where codes and refresh tokens are exchanged.
    pub token_endpoint: String,
    /// Dynamic client registration (RFC 7591).
    #[serde(default)]
    pub registration_endpoint: Option<String>,
    /// Token revocation (RFC 7009).
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// PKCE methods; S256 must be among them.
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// Whether a client id may be a metadata document URL.
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
    /// Token endpoint authentication methods.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Scopes it knows.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
}

/// Checks server metadata against the issuer it was fetched for.
pub fn check_server_metadata(m: &ServerMetadata, issuer: &str) -> Result<(), String> {
    if m.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(format!(
            "its metadata names issuer {:?}, not {issuer:?}",
            m.issuer
        ));
    }
    // An empty list means the server did not say; RFC 8414 makes absence "no PKCE", but MCP
    // requires S256 and refuses servers that do not advertise it.
    if !m
        .code_challenge_methods_supported
        .iter()
        .any(|c| c == "S256")
    {
        return Err("its metadata does not offer PKCE S256, which MCP requires".into());
    }
    Ok(())
}

/// The protected-resource metadata's `resource` must be the upstream's URL (or a prefix of
/// it at a path boundary), or a token for something else would be asked for.
pub fn check_resource(meta_resource: &str, upstream: &Url) -> Result<(), String> {
    let want = upstream.as_str().trim_end_matches('/');
    let ok = Url::parse(meta_resource).is_ok_and(|got| {
        let (gp, wp) = (
            got.path().trim_end_matches('/'),
            upstream.path().trim_end_matches('/'),
        );
        got.origin() == upstream.origin()
            && got.query().is_none()
            && (gp == wp || (wp.starts_with(gp) && wp.as_bytes().get(gp.len()) == Some(&b'/')))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "its protected-resource metadata is for {meta_resource:?}, not {want:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed_with_quotes_and_other_schemes() {
        let c = parse_challenge(
            r#"Basic realm="x", Bearer error="insufficient_scope", scope="repo read:org", resource_metadata="https://a.example/.well-known/oauth-protected-resource/mcp""#,
        );
        assert_eq!(c.error.as_deref(), Some("insufficient_scope"));
        assert_eq!(c.scopes(), vec!["repo", "read:org"]);
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("https://a.example/.well-known/oauth-protected-resource/mcp")
        );
        let q = parse_challenge(r#"Bearer realm="a,\"b", error=invalid_token"#);
        assert_eq!(q.error.as_deref(), Some("invalid_token"));
        assert_eq!(parse_challenge("Basic realm=x"), Challenge::default());
        assert_eq!(parse_challenge(""), Challenge::default());
        assert_eq!(parse_challenge("Bearer"), Challenge::default());
    }

    #[test]
    fn metadata_locations_follow_the_rfcs() {
        let r = Url::parse("https://api.example.com/mcp/").expect("url");
        assert_eq!(
            resource_metadata_urls(&r, &Challenge::default()),
            vec![
                "https://api.example.com/.well-known/oauth-protected-resource/mcp",
                "https://api.example.com/.well-known/oauth-protected-resource"
            ]
        );
        let i = Url::parse("https://login.example.com/tenant").expect("url");
        assert_eq!(
            server_metadata_urls(&i)[..2],
            [
                "https://login.example.com/.well-known/oauth-authorization-server/tenant",
                "https://login.example.com/.well-known/openid-configuration/tenant"
            ]
        );
    }

    #[test]
    fn scope_unions_keep_order_and_drop_repeats() {
        let a = split_scopes("repo  read:org repo");
        assert_eq!(a, vec!["repo", "read:org"]);
        assert_eq!(
            union(&a, &["gist".into(), "repo".into()]),
            vec!["repo", "read:org", "gist"]
        );
    }

    #[test]
    fn the_resource_must_be_the_upstream() {
        let u = Url::parse("https://api.example.com/mcp/").expect("url");
        assert!(check_resource("https://api.example.com/mcp", &u).is_ok());
        assert!(check_resource("https://api.example.com", &u).is_ok());
        assert!(check_resource("https://api.example.com/m", &u).is_err());
        assert!(check_resource("https://evil.example/mcp", &u).is_err());
        assert!(check_resource("https:", &u).is_err());
        assert!(check_resource("https://api.example.com.evil/mcp", &u).is_err());
    }
}
