//! Client ID metadata documents: a `client_id` that is an HTTPS URL names a JSON document,
//! served there by the client's vendor, that says what the client is and where its redirects
//! go. Fetching it is a request to a URL an unauthenticated party chose, so the fetch reaches
//! public addresses only (after DNS resolution, for every redirect too), reads at most
//! [`MAX_BYTES`] within [`FETCH_TIMEOUT`], uses no proxy, and is cached per its Cache-Control.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use url::Url;

use super::addr::is_public;
use super::redirect;
use crate::ledger::oauth::{ClientKind, OAuthClient};

/// Largest document read.
pub const MAX_BYTES: usize = 5 * 1024;
/// The whole fetch (DNS, TLS, redirects, body) must end within this.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Cache lifetime when the document says nothing; and the longest one honoured.
const DEFAULT_TTL: Duration = Duration::from_secs(300);
const MAX_TTL: Duration = Duration::from_secs(86_400);
/// Most documents cached.
const MAX_CACHED: usize = 1024;

/// Whether `client_id` is a URL that names a metadata document: `https`, a host, a path other
/// than `/`, no query, fragment, user info or dot segments.
pub fn is_document_url(client_id: &str) -> bool {
    let Ok(u) = Url::parse(client_id) else {
        return false;
    };
    u.scheme() == "https"
        && u.host().is_some()
        && u.path() != "/"
        && u.query().is_none()
        && u.fragment().is_none()
        && u.username().is_empty()
        && u.password().is_none()
        // The url crate resolves dot segments; a URL that changed was not canonical.
        && u.as_str() == client_id
}

#[derive(Deserialize)]
struct Document {
    client_id: String,
    client_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    token_endpoint_auth_method: Option<String>,
}

/// Checks a fetched document against the URL it came from.
pub fn parse_document(url: &str, bytes: &[u8], now: i64) -> Result<OAuthClient, String> {
    let doc: Document = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a client metadata document: {e}"))?;
    if doc.client_id != url {
        return Err(format!(
            "the document's client_id {:?} is not its URL",
            doc.client_id
        ));
    }
    if let Some(m) = doc.token_endpoint_auth_method.as_deref() {
        if m != "none" {
            return Err(format!(
                "token_endpoint_auth_method {m:?}: only public clients (none) are supported"
            ));
        }
    }
    if doc.redirect_uris.is_empty() || doc.redirect_uris.len() > 16 {
        return Err("redirect_uris must list 1 to 16 URIs".into());
    }
    for uri in &doc.redirect_uris {
        redirect::classify(uri).map_err(|e| format!("redirect URI {uri:?}: {e}"))?;
    }
    Ok(OAuthClient {
        client_id: doc.client_id,
        name: doc.client_name.map(|n| n.chars().take(100).collect()),
        redirect_uris: doc.redirect_uris,
        kind: ClientKind::Cimd,
        secret_sha256: None,
        created_at: now,
        last_used: now,
        registered_from: None,
    })
}

/// How long a response may be cached (`Cache-Control`).
fn cache_ttl(headers: &http::HeaderMap) -> Duration {
    let Some(cc) = headers
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
    else {
        return DEFAULT_TTL;
    };
    let mut ttl = DEFAULT_TTL;
    for d in cc.split(',').map(str::trim) {
        let d = d.to_ascii_lowercase();
        if d == "no-store" || d == "no-cache" {
            return Duration::ZERO;
        }
        if let Some(n) = d.strip_prefix("max-age=") {
            ttl = n.parse().map(Duration::from_secs).unwrap_or(Duration::ZERO);
        }
    }
    ttl.min(MAX_TTL)
}

/// A DNS resolver that keeps only public addresses (all, with `allow_private`).
pub(crate) struct Filtered {
    /// Keep private and loopback addresses too.
    pub(crate) allow_private: bool,
}

impl reqwest::dns::Resolve for Filtered {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let it: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}

/// Whether a URL may be fetched: `https`, and an IP-literal host must be public (names are
/// checked by the resolver).
pub(crate) fn url_allowed(u: &Url, allow_private: bool) -> Result<(), String> {
    if u.scheme() != "https" {
        return Err(format!("{} is not https", u.as_str()));
    }
    let literal: Option<IpAddr> = match u.host() {
        Some(url::Host::Ipv4(a)) => Some(a.into()),
        Some(url::Host::Ipv6(a)) => Some(a.into()),
        Some(url::Host::Domain(_)) => None,
        None => return Err("no host".into()),
    };
    match literal {
        Some(ip) if !allow_private && !is_public(ip) => {
            Err(format!("{ip} is not a public address"))
        }
        _ => Ok(()),
    }
}

/// Fetches and caches metadata documents.
pub struct Fetcher {
    client: reqwest::Client,
    allow_private: bool,
    cache: Mutex<HashMap<String, (OAuthClient, Instant)>>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("allow_private", &self.allow_private)
            .finish()
    }
}

impl Fetcher {
    /// `allow_private`: reach loopback and private addresses too (tests only).
    /// `extra_ca`: PEM CA certificates trusted beyond the system's (a test server's CA).
    pub fn new(allow_private: bool, extra_ca: Option<&[u8]>) -> Result<Fetcher, String> {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .https_only(true)
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .user_agent("mcp-zt (client metadata fetch)")
            .dns_resolver(Arc::new(Filtered { allow_private }))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 3 {
                    return attempt.error("more than 3 redirects");
                }
                match url_allowed(attempt.url(), allow_private) {
                    Ok(()) => attempt.follow(),
                    Err(why) => attempt.error(format!("redirect refused: {why}")),
                }
            }));
        if let Some(pem) = extra_ca {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| e.to_string())? {
                b = b.add_root_certificate(cert);
            }
        }
        Ok(Fetcher {
            client: b.build().map_err(|e| e.to_string())?,
            allow_private,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Whether private addresses are allowed (audited at start).
    pub fn allows_private(&self) -> bool {
        self.allow_private
    }

    /// The client a document URL names: from the cache, or fetched and checked. The `bool`
    /// says whether it was fetched now (for the audit log).
    pub async fn client(&self, url: &str, now: i64) -> Result<(OAuthClient, bool), String> {
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((c, until)) = cache.get(url) {
                if Instant::now() < *until {
                    return Ok((c.clone(), false));
                }
            }
        }
        let (client, ttl) = tokio::time::timeout(FETCH_TIMEOUT, self.fetch(url, now))
            .await
            .map_err(|_| format!("no complete answer within {FETCH_TIMEOUT:?}"))??;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if !ttl.is_zero() {
            if cache.len() >= MAX_CACHED {
                let now = Instant::now();
                cache.retain(|_, (_, until)| *until > now);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(url.to_string(), (client.clone(), Instant::now() + ttl));
        }
        Ok((client, true))
    }

    async fn fetch(&self, url: &str, now: i64) -> Result<(OAuthClient, Duration), String> {
        if !is_document_url(url) {
            return Err("not a client metadata document URL".into());
        }
        let u = Url::parse(url).map_err(|e| e.to_string())?;
        url_allowed(&u, self.allow_private)?;
        let mut resp = self
            .client
            .get(u)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| fetch_error(&e))?;
        if !resp.status().is_success() {
            return Err(format!("answered {}", resp.status()));
        }
        if resp.content_length().is_some_and(|n| n > MAX_BYTES as u64) {
            return Err(format!("document over {MAX_BYTES} bytes"));
        }
        let ttl = cache_ttl(resp.headers());
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fetch_error(&e))? {
            if body.len() + chunk.len() > MAX_BYTES {
                return Err(format!("document over {MAX_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((parse_document(url, &body, now)?, ttl))
    }
}

/// A fetch error in words: a timeout says so plainly.
pub(crate) fn fetch_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("no complete answer within {FETCH_TIMEOUT:?}")
    } else {
        error_chain(e)
    }
}

/// An error and its causes in one line (reqwest hides the interesting part in the sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_urls() {
        assert!(is_document_url(
            "https://claude.ai/oauth/claude-code-client-metadata"
        ));
        for bad in [
            "http://a.example/x",
            "https://a.example/",
            "https://a.example",
            "https://a.example/x?y",
            "https://a.example/x#y",
            "https://u@a.example/x",
            "https://a.example/a/../x",
            "mzt_dcr_0011",
        ] {
            assert!(!is_document_url(bad), "{bad}");
        }
    }

    #[test]
    fn documents_must_name_themselves() {
        let url = "https://app.example/client.json";
        let ok = format!(
            r#"{{"client_id":"{url}","client_name":"App","redirect_uris":["http://127.0.0.1/cb"]}}"#
        );
        let c = parse_document(url, ok.as_bytes(), 1).unwrap();
        assert_eq!(c.kind, ClientKind::Cimd);
        assert_eq!(c.redirect_uris, ["http://127.0.0.1/cb"]);
        let other =
            r#"{"client_id":"https://evil.example/c.json","redirect_uris":["https://a/cb"]}"#;
        assert!(parse_document(url, other.as_bytes(), 1)
            .unwrap_err()
            .contains("not its URL"));
        let secret = format!(
            r#"{{"client_id":"{url}","redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"private_key_jwt"}}"#
        );
        assert!(parse_document(url, secret.as_bytes(), 1).is_err());
        let js = format!(r#"{{"client_id":"{url}","redirect_uris":["javascript:alert(1)"]}}"#);
        assert!(parse_document(url, js.as_bytes(), 1).is_err());
        assert!(parse_document(url, b"[]", 1).is_err());
    }

    #[test]
    fn literal_addresses_are_filtered_before_any_connection() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(url_allowed(&u("https://127.0.0.1/c"), false).is_err());
        assert!(url_allowed(&u("https://[::1]/c"), false).is_err());
        assert!(url_allowed(&u("https://169.254.169.254/c"), false).is_err());
        assert!(url_allowed(&u("https://10.0.0.1/c"), false).is_err());
        assert!(url_allowed(&u("http://8.8.8.8/c"), false).is_err());
        assert!(url_allowed(&u("https://8.8.8.8/c"), false).is_ok());
        assert!(url_allowed(&u("https://127.0.0.1/c"), true).is_ok());
    }

    #[test]
    fn cache_control() {
        let mut h = http::HeaderMap::new();
        assert_eq!(cache_ttl(&h), DEFAULT_TTL);
        h.insert(
            http::header::CACHE_CONTROL,
            "public, max-age=60".parse().unwrap(),
        );
        assert_eq!(cache_ttl(&h), Duration::from_secs(60));
        h.insert(
            http::header::CACHE_CONTROL,
            "max-age=99999999".parse().unwrap(),
        );
        assert_eq!(cache_ttl(&h), MAX_TTL);
        h.insert(http::header::CACHE_CONTROL, "no-store".parse().unwrap());
        assert_eq!(cache_ttl(&h), Duration::ZERO);
    }
}
