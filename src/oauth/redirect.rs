//! Redirect URI rules (pure): which URIs a client may register and which presented URI matches
//! a registered one.
//!
//! - `https` URIs match exactly.
//! - `http` on a loopback address (`127.0.0.1`, `[::1]`, `localhost`) matches on any port (RFC
//!   8252 §7.3): native clients listen on whatever port is free.
//! - Private-use schemes (`cursor://...`, RFC 8252 §7.1) match exactly, and only when the
//!   client's own metadata lists them.
//! - Nothing else: no plain `http` to a real host, no fragments, no user info, no `javascript:`
//!   or `data:`.

use url::Url;

/// Why a redirect URI is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    /// Not an absolute URI.
    #[error("not an absolute URI")]
    NotAbsolute,
    /// `#fragment` (RFC 6749 §3.1.2).
    #[error("a redirect URI must not have a fragment")]
    Fragment,
    /// `user:pass@`.
    #[error("a redirect URI must not carry user information")]
    UserInfo,
    /// Plain HTTP to a host that is not loopback.
    #[error("http is allowed only to a loopback address (127.0.0.1, [::1], localhost)")]
    PlainHttp,
    /// A scheme that can run code or read files.
    #[error("scheme {0:?} is not allowed")]
    Scheme(String),
}

/// What kind of redirect a URI is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `https://`.
    Https,
    /// `http://` on loopback.
    Loopback,
    /// A private-use scheme of a native app.
    PrivateUse,
}

/// Classifies `uri`, or says why it is not a redirect URI at all.
pub fn classify(uri: &str) -> Result<Kind, RedirectError> {
    let u = Url::parse(uri).map_err(|_| RedirectError::NotAbsolute)?;
    if u.fragment().is_some() {
        return Err(RedirectError::Fragment);
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(RedirectError::UserInfo);
    }
    match u.scheme() {
        "https" if u.host().is_some() => Ok(Kind::Https),
        "http" if is_loopback(&u) => Ok(Kind::Loopback),
        "http" => Err(RedirectError::PlainHttp),
        s @ ("javascript" | "data" | "file" | "blob" | "about" | "vbscript" | "ftp" | "ws"
        | "wss" | "https" | "chrome" | "chrome-extension" | "chrome-untrusted" | "edge"
        | "microsoft-edge" | "brave" | "opera" | "moz-extension" | "resource"
        | "view-source" | "intent" | "filesystem" | "jar" | "mailto" | "tel" | "sms") => {
            Err(RedirectError::Scheme(s.to_string()))
        }
        s if s.starts_with("ms-") => Err(RedirectError::Scheme(s.to_string())),
        // RFC 8252 §7.1: a private-use scheme has a period (reverse domain name).
        s if s.contains('.') || u.host().is_some() => Ok(Kind::PrivateUse),
        s => Err(RedirectError::Scheme(s.to_string())),
    }
}

fn is_loopback(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a == std::net::Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(a)) => a == std::net::Ipv6Addr::LOCALHOST,
        None => false,
    }
}

/// Whether `presented` matches `registered`: exactly, or both loopback `http` URIs that differ
/// only in the port.
pub fn matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    let (Ok(r), Ok(p)) = (Url::parse(registered), Url::parse(presented)) else {
        return false;
    };
    if !(r.scheme() == "http" && p.scheme() == "http" && is_loopback(&r) && is_loopback(&p)) {
        return false;
    }
    p.fragment().is_none()
        && p.username().is_empty()
        && p.password().is_none()
        && r.host() == p.host()
        && r.path() == p.path()
        && r.query() == p.query()
}

/// The first of `registered` that `presented` matches.
pub fn find<'a>(registered: &'a [String], presented: &str) -> Option<&'a String> {
    registered.iter().find(|r| matches(r, presented))
}

/// What the consent page shows of a redirect: the host (and port) of an `http(s)` one; for a
/// private-use scheme, that an application on this device gets it (whatever host the URI
/// names, the operating system hands it to the app that registered the scheme).
pub fn shown_host(uri: &str) -> String {
    match Url::parse(uri) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => "?".into(),
        },
        Ok(u) => format!("an application on this device ({}:)", u.scheme()),
        Err(_) => "?".into(),
    }
}

/// The CSP `form-action` source that lets the consent form's redirect go to `uri`.
pub fn csp_source(uri: &str) -> Option<String> {
    let u = Url::parse(uri).ok()?;
    match u.scheme() {
        "http" | "https" => Some(u.origin().ascii_serialization()),
        s => Some(format!("{s}:")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kinds_of_redirect_a_client_may_register() {
        assert_eq!(
            classify("https://claude.ai/api/mcp/auth_callback"),
            Ok(Kind::Https)
        );
        assert_eq!(classify("http://127.0.0.1/"), Ok(Kind::Loopback));
        assert_eq!(classify("http://[::1]:33418/cb"), Ok(Kind::Loopback));
        assert_eq!(classify("http://localhost:9/cb"), Ok(Kind::Loopback));
        assert_eq!(
            classify("cursor://anysphere.cursor-mcp/oauth/callback"),
            Ok(Kind::PrivateUse)
        );
        assert_eq!(classify("com.example.app:/cb"), Ok(Kind::PrivateUse));
        assert_eq!(
            classify("http://evil.example/cb"),
            Err(RedirectError::PlainHttp)
        );
        assert_eq!(
            classify("http://127.0.0.2/cb"),
            Err(RedirectError::PlainHttp)
        );
        assert_eq!(
            classify("https://a.example/cb#x"),
            Err(RedirectError::Fragment)
        );
        assert_eq!(
            classify("https://u:p@a.example/cb"),
            Err(RedirectError::UserInfo)
        );
        assert!(matches!(
            classify("javascript:alert(1)"),
            Err(RedirectError::Scheme(_))
        ));
        assert!(classify("data:text/html,x").is_err());
        assert!(classify("file:///etc/passwd").is_err());
        assert!(classify("/relative").is_err());
    }

    #[test]
    fn loopback_matches_on_any_port_and_nothing_else_does() {
        assert!(matches("http://127.0.0.1/cb", "http://127.0.0.1:5555/cb"));
        assert!(matches(
            "http://127.0.0.1:33418/",
            "http://127.0.0.1:40000/"
        ));
        assert!(matches("http://localhost/cb", "http://localhost:1/cb"));
        assert!(!matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5555/other"
        ));
        assert!(!matches("http://127.0.0.1/cb", "http://localhost:5555/cb"));
        assert!(!matches("http://127.0.0.1/cb", "http://127.0.0.1:5/cb?x=1"));
        assert!(!matches("https://a.example/cb", "https://a.example:444/cb"));
        assert!(!matches("https://a.example/cb", "https://a.example/cb/"));
        assert!(matches("https://a.example/cb", "https://a.example/cb"));
        assert!(!matches("cursor://x.y/cb", "cursor://x.y/cb2"));
    }

    #[test]
    fn what_the_page_shows_and_the_csp_allows() {
        assert_eq!(shown_host("https://claude.ai/api/cb"), "claude.ai");
        assert_eq!(shown_host("http://127.0.0.1:5/cb"), "127.0.0.1:5");
        assert_eq!(
            shown_host("cursor://anysphere.cursor-mcp/cb"),
            "an application on this device (cursor:)"
        );
        assert!(classify("chrome://settings/cb").is_err());
        assert!(classify("ms-settings://x/cb").is_err());
        assert_eq!(
            csp_source("http://127.0.0.1:5/cb").as_deref(),
            Some("http://127.0.0.1:5")
        );
        assert_eq!(csp_source("cursor://a.b/cb").as_deref(), Some("cursor:"));
    }
}
