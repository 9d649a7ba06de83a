//! The linker: links a holder's own upstream account (authorization code with PKCE, the
//! callback bound to the holder who started it), keeps the tokens sealed in the ledger,
//! refreshes them ahead of expiry, and revokes them at the upstream when the holder's
//! certificate is revoked or the link is removed.

mod flow;
mod revoke;
mod tokens;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::discover::{split_scopes, union};
use super::http::{ClientAuth, OAuthHttp, TokenError};
use crate::audit::{Audit, Event};
use crate::identity::Identity;
use crate::ledger::uplink::{PendingLink, UpstreamLink, UpstreamRegistration};
use crate::ledger::Ledger;
use crate::oauth::crypto::{random_token, sha256_b64, sha256_hex};
use crate::secrets::{Binding, SealKey};
use crate::upstream::config::{Transport, Upstream, Upstreams};

/// How long a started link may wait for its callback.
pub const LINK_TTL: i64 = 600;
/// How long an opened access token is reused before the ledger is read again (an unlink or
/// refresh on another replica is seen within this).
const CACHE_FOR: Duration = Duration::from_secs(5);
/// The path of the client metadata document mcp-zt serves for upstreams that take CIMD.
pub const CLIENT_DOCUMENT_PATH: &str = "/oauth/upstream-client.json";
/// The callback path on the login name (or the server's own name).
pub const CALLBACK_PATH: &str = "/oauth/callback";
/// The link page a browser opens first (`/link/go/STATE`).
pub const GO_PATH: &str = "/link/go/";
/// The cookie the link page gives the browser, which the callback needs.
pub const COOKIE: &str = "mcpzt_link";

/// Where the upstream sends the holder's browser back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirect {
    /// `mcp-zt link` listens on the holder's machine, on this loopback port.
    Loopback(u16),
    /// The login name's (or the server's) callback page, which needs the holder's certificate.
    Browser,
}

/// A started link.
#[derive(Debug, Clone)]
pub struct Started {
    /// Where the holder's browser goes.
    pub url: String,
    /// The state, which the callback brings back.
    pub state: String,
    /// Unix seconds after which the callback is refused.
    pub expires_at: i64,
}

/// Why a holder cannot use an upstream now: they must link (again). `scopes` are those to
/// ask for.
#[derive(Debug, Clone)]
pub struct NeedLink {
    /// What is missing, for the holder.
    pub reason: String,
    /// Scopes a new link must ask for (a step-up).
    pub scopes: Vec<String>,
}

/// A link failure, said to the holder and audited.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The upstream does not take per-holder OAuth.
    #[error("upstream {0} does not use per-holder OAuth (auth = \"oauth\" in upstreams.toml)")]
    NotOAuth(String),
    /// Refused, with the reason.
    #[error("{0}")]
    Refused(String),
    /// Storage failed.
    #[error("ledger: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
    /// Sealing failed.
    #[error("{0}")]
    Secrets(#[from] crate::secrets::SecretsError),
}

/// One holder's usable upstream token.
pub struct Access {
    /// The bearer token.
    pub token: Zeroizing<String>,
    /// The link it came from.
    pub link: UpstreamLink,
}

/// One row of `mcp-zt links` (no secret).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LinkRow {
    /// Upstream.
    pub upstream: String,
    /// Holder.
    pub holder: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Access token expiry (Unix seconds, 0 = not said).
    pub expires_at: i64,
    /// Whether a refresh token is held.
    pub refreshable: bool,
    /// When linked.
    pub linked_at: i64,
    /// When last refreshed.
    pub refreshed_at: i64,
    /// The authorization server.
    pub issuer: String,
}

impl From<&UpstreamLink> for LinkRow {
    fn from(l: &UpstreamLink) -> LinkRow {
        LinkRow {
            upstream: l.upstream.clone(),
            holder: l.holder.clone(),
            scopes: l.scopes.clone(),
            expires_at: l.expires_at,
            refreshable: l.refresh.is_some(),
            linked_at: l.linked_at,
            refreshed_at: l.refreshed_at,
            issuer: l.issuer.clone(),
        }
    }
}

type Cached = (UpstreamLink, Zeroizing<String>, Instant);

/// The server's own URLs the linker hands out.
#[derive(Debug, Clone, Default)]
pub struct LinkerUrls {
    /// Origin of the browser callback: the login name, or the server's own name.
    pub browser_base: Option<String>,
    /// Origin of `--public-url`, where mcp-zt's client metadata document is served.
    pub document_base: Option<String>,
    /// The server's MCP URL, for the `mcp-zt link` command shown to holders.
    pub mcp_url: Option<String>,
}

/// The per-holder upstream credential service (one per server).
pub struct Linker {
    ledger: Ledger,
    /// HOME, where `secrets.key` is (created at first use).
    home: std::path::PathBuf,
    key: RwLock<Option<Arc<SealKey>>>,
    trust_domain: String,
    audit: Arc<Audit>,
    upstreams: RwLock<Upstreams>,
    http: Mutex<HashMap<String, (String, Arc<OAuthHttp>)>>,
    /// `https://login-name` (or the server's own URL): the browser callback and link pages.
    browser_base: Option<String>,
    /// The `--public-url` origin: mcp-zt's client metadata document (CIMD) is served there.
    document_base: Option<String>,
    /// The server's own MCP URL, for the `mcp-zt link` command shown to holders.
    mcp_url: Option<String>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    cache: Mutex<HashMap<String, Cached>>,
    /// Links started per certificate in the current minute: each start costs discovery and a
    /// ledger record.
    starts: Mutex<(Instant, HashMap<String, u32>)>,
}

/// Most links one certificate may start in a minute.
pub const STARTS_PER_MINUTE: u32 = 20;

fn now() -> i64 {
    crate::pki::now().unix_timestamp()
}

fn ev(kind: &str, holder: &str, upstream: &str) -> Event {
    Event::new(kind)
        .holder_name(holder)
        .item(format!("upstream:{upstream}"))
}

fn key_of(upstream: &str, holder: &str) -> String {
    format!("{upstream}|{holder}")
}

/// Seconds before expiry at which a token is refreshed: a third of its lifetime, between
/// 5 seconds and 5 minutes.
pub fn refresh_margin(lifetime: i64) -> i64 {
    (lifetime / 3).clamp(5, 300)
}

impl Linker {
    /// The service over `ledger`, sealing with `key`.
    pub fn new(
        ledger: Ledger,
        home: std::path::PathBuf,
        key: Option<SealKey>,
        trust_domain: String,
        audit: Arc<Audit>,
        upstreams: Upstreams,
        urls: LinkerUrls,
    ) -> Linker {
        let LinkerUrls {
            browser_base,
            document_base,
            mcp_url,
        } = urls;
        Linker {
            ledger,
            home,
            key: RwLock::new(key.map(Arc::new)),
            trust_domain,
            audit,
            upstreams: RwLock::new(upstreams),
            http: Mutex::new(HashMap::new()),
            browser_base: browser_base.map(|b| b.trim_end_matches('/').to_string()),
            document_base: document_base.map(|b| b.trim_end_matches('/').to_string()),
            mcp_url,
            locks: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
            starts: Mutex::new((Instant::now(), HashMap::new())),
        }
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The audit log.
    pub fn audit(&self) -> &Arc<Audit> {
        &self.audit
    }

    /// The sealing key now in use: `HOME/secrets.key`, loaded (or created) at first use.
    pub fn key(&self) -> Result<Arc<SealKey>, crate::secrets::SecretsError> {
        if let Some(k) = self.key.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Ok(k.clone());
        }
        let mut slot = self.key.write().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = slot.as_ref() {
            return Ok(k.clone());
        }
        let k = Arc::new(crate::secrets::load_or_create(&self.home)?);
        *slot = Some(k.clone());
        Ok(k)
    }

    /// The key if it exists, never making one (a new key opens nothing already stored).
    fn existing_key(&self) -> Option<Arc<SealKey>> {
        if let Some(k) = self.key.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Some(k.clone());
        }
        let k = Arc::new(crate::secrets::load_existing(&self.home).ok()??);
        *self.key.write().unwrap_or_else(|e| e.into_inner()) = Some(k.clone());
        Some(k)
    }

    /// HOME.
    pub fn home(&self) -> &std::path::Path {
        &self.home
    }

    /// Uses `key` from now on (during and after `secrets rotate-key`).
    pub fn set_key(&self, key: SealKey) {
        *self.key.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(key));
        self.forget_cached();
    }

    /// The upstreams after a reload.
    pub fn set_upstreams(&self, u: Upstreams) {
        *self.upstreams.write().unwrap_or_else(|e| e.into_inner()) = u;
        self.http.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The server's own MCP URL, if known.
    pub fn mcp_url(&self) -> Option<&str> {
        self.mcp_url.as_deref()
    }

    /// The base URL of link pages for browsers, if the server has one.
    pub fn browser_base(&self) -> Option<&str> {
        self.browser_base.as_deref()
    }

    /// mcp-zt's client metadata document URL (its CIMD client id), with `--public-url`.
    pub fn document_url(&self) -> Option<String> {
        self.document_base
            .as_ref()
            .map(|b| format!("{b}{CLIENT_DOCUMENT_PATH}"))
    }

    /// The client metadata document mcp-zt serves for upstream authorization servers.
    pub fn client_document(&self) -> Option<serde_json::Value> {
        let id = self.document_url()?;
        let mut redirects = vec!["http://127.0.0.1/callback".to_string()];
        if let Some(b) = &self.browser_base {
            redirects.insert(0, format!("{b}{CALLBACK_PATH}"));
        }
        Some(serde_json::json!({
            "client_id": id,
            "client_name": "mcp-zt",
            "redirect_uris": redirects,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }))
    }

    /// The certificate chain a holder's values are bound to.
    pub fn chain_of(&self, who: &Identity) -> String {
        self.chain_for(who.trust.as_deref())
    }

    /// The chain of mcp-zt's own CA (`trust` = `None`) or of a foreign trust.
    pub fn chain_for(&self, trust: Option<&str>) -> String {
        format!("{}:{}", self.trust_domain, trust.unwrap_or("own"))
    }

    /// The upstream called `name`, whatever its auth.
    pub fn any_upstream(&self, name: &str) -> Option<Upstream> {
        let ups = self.upstreams.read().unwrap_or_else(|e| e.into_inner());
        ups.get(name).cloned()
    }

    /// The per-holder OAuth upstream called `name`.
    pub fn upstream(&self, name: &str) -> Result<Upstream, LinkError> {
        let ups = self.upstreams.read().unwrap_or_else(|e| e.into_inner());
        match ups.get(name) {
            Some(u) if u.oauth().is_some() => Ok(u.clone()),
            _ => Err(LinkError::NotOAuth(name.to_string())),
        }
    }

    /// The names of the per-holder OAuth upstreams.
    pub fn oauth_upstreams(&self) -> Vec<String> {
        let ups = self.upstreams.read().unwrap_or_else(|e| e.into_inner());
        ups.list
            .iter()
            .filter(|u| u.oauth().is_some())
            .map(|u| u.name.clone())
            .collect()
    }

    fn http_for(&self, cfg: &Upstream) -> Result<Arc<OAuthHttp>, LinkError> {
        let Transport::Http {
            url,
            ca,
            client_cert,
            ..
        } = &cfg.transport
        else {
            return Err(LinkError::NotOAuth(cfg.name.clone()));
        };
        let allow_private = cfg.oauth().is_some_and(|o| o.allow_private);
        let mut map = self.http.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((u, h)) = map.get(&cfg.name) {
            if u == url {
                return Ok(h.clone());
            }
        }
        let own = crate::upstream::conn::http_client(ca.as_deref(), client_cert.as_ref())
            .map_err(LinkError::Refused)?;
        let h = Arc::new(OAuthHttp::new(url, own, allow_private).map_err(LinkError::Refused)?);
        map.insert(cfg.name.clone(), (url.clone(), h.clone()));
        Ok(h)
    }

    fn binding<'a>(
        purpose: &'a str,
        upstream: &'a str,
        holder: &'a str,
        chain: &'a str,
    ) -> Binding<'a> {
        Binding {
            purpose,
            upstream,
            holder,
            chain,
        }
    }

    fn refused(&self, who: &Identity, upstream: &str, why: String) -> LinkError {
        self.audit.log(
            ev("upstream_link_refused", &who.name, upstream)
                .who(who)
                .reason(&why),
        );
        LinkError::Refused(why)
    }

    fn forget(&self, upstream: &str, holder: &str) {
        let prefix = format!("{}|", key_of(upstream, holder));
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| !k.starts_with(&prefix));
    }

    /// Drops every opened token (the key changed, or links were removed elsewhere).
    pub fn forget_cached(&self) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Every link, or one holder's.
    pub fn links(&self, holder: Option<&str>) -> Result<Vec<LinkRow>, LinkError> {
        let mut rows: Vec<LinkRow> = self
            .ledger
            .upstream_links()?
            .iter()
            .filter(|l| holder.is_none_or(|h| h == l.holder))
            .map(LinkRow::from)
            .collect();
        rows.sort_by(|a, b| (&a.holder, &a.upstream).cmp(&(&b.holder, &b.upstream)));
        Ok(rows)
    }

    /// Forgets pending links that expired.
    pub fn sweep(&self) {
        let _ = self.ledger.sweep_pending_links(now());
    }
}
