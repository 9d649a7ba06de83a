//! The linker: links a holder's own upstream account (authorization code with PKCE, the
//! callback bound to the holder who started it), keeps the tokens sealed in the ledger,
//! refreshes them ahead of expiry, and revokes them at the upstream when the holder's
//! certificate is revoked or the link is removed.

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

    /// Starts a link for `who`: discovery, registration, and the authorization request with
    /// PKCE and `resource`. `extra_scopes` is a step-up's.
    pub async fn start(
        &self,
        who: &Identity,
        upstream: &str,
        redirect: Redirect,
        extra_scopes: &[String],
    ) -> Result<Started, LinkError> {
        if who.oauth.is_some() {
            // A token-borne request: the link must be bound to the certificate itself.
            return Err(self.refused(
                who,
                upstream,
                "linking needs the holder's certificate, not an OAuth token".into(),
            ));
        }
        let cfg = self.upstream(upstream)?;
        let Some(settings) = cfg.oauth() else {
            return Err(LinkError::NotOAuth(upstream.into()));
        };
        {
            let mut starts = self.starts.lock().unwrap_or_else(|e| e.into_inner());
            if starts.0.elapsed() > Duration::from_secs(60) {
                *starts = (Instant::now(), HashMap::new());
            }
            let n = starts.1.entry(who.serial.clone()).or_insert(0);
            *n += 1;
            if *n > STARTS_PER_MINUTE {
                return Err(self.refused(
                    who,
                    upstream,
                    format!(
                        "more than {STARTS_PER_MINUTE} links started in a minute: wait a minute"
                    ),
                ));
            }
        }
        let http = self.http_for(&cfg)?;
        let found = http
            .discover()
            .await
            .map_err(|e| self.refused(who, upstream, format!("discovery: {e}")))?;
        let redirect_uri = match redirect {
            Redirect::Loopback(port) => format!("http://127.0.0.1:{port}/callback"),
            Redirect::Browser => match &self.browser_base {
                Some(b) => format!("{b}{CALLBACK_PATH}"),
                None => {
                    return Err(self.refused(
                        who,
                        upstream,
                        "the server has no name for browser callbacks: use `mcp-zt link`".into(),
                    ))
                }
            },
        };
        let issuer = found.server.issuer.clone();
        let (client_id, client_secret, method) = if let Some(id) = &settings.client_id {
            let secret = match &settings.client_secret {
                Some(s) => Some(Zeroizing::new(
                    s.resolve()
                        .map_err(|e| self.refused(who, upstream, e.to_string()))?,
                )),
                None => None,
            };
            let methods = &found.server.token_endpoint_auth_methods_supported;
            let method = match &secret {
                None => "none",
                Some(_)
                    if methods.iter().any(|m| m == "client_secret_basic") || methods.is_empty() =>
                {
                    "client_secret_basic"
                }
                Some(_) => "client_secret_post",
            };
            (id.clone(), secret, method.to_string())
        } else if let (Some(doc), true) = (
            self.document_url(),
            found.server.client_id_metadata_document_supported,
        ) {
            (doc, None, "none".to_string())
        } else {
            self.registration(who, &cfg, &http, &issuer, &found, &redirect_uri)
                .await?
        };
        let mut scopes = if settings.scopes.is_empty() {
            found.challenge_scopes.clone()
        } else {
            settings.scopes.clone()
        };
        scopes = union(&scopes, extra_scopes);
        let state = random_token("st_");
        let verifier = random_token("");
        let chain = self.chain_of(who);
        let key = self.key()?;
        let mut url = url::Url::parse(&found.server.authorization_endpoint)
            .map_err(|e| self.refused(who, upstream, format!("authorization endpoint: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &client_id)
                .append_pair("redirect_uri", &redirect_uri)
                .append_pair("state", &state)
                .append_pair("code_challenge", &sha256_b64(verifier.as_bytes()))
                .append_pair("code_challenge_method", "S256")
                .append_pair("resource", &found.resource);
            if !scopes.is_empty() {
                q.append_pair("scope", &scopes.join(" "));
            }
        }
        let expires_at = now() + LINK_TTL;
        let b = |p| Self::binding(p, upstream, &who.name, &chain);
        let pending = PendingLink {
            upstream: upstream.to_string(),
            holder: who.name.clone(),
            chain: chain.clone(),
            serial: who.serial.clone(),
            verifier: key.seal(&b("verifier"), verifier.as_bytes())?,
            redirect_uri,
            scopes: scopes.clone(),
            issuer: issuer.clone(),
            token_endpoint: found.server.token_endpoint.clone(),
            revocation_endpoint: found.server.revocation_endpoint.clone(),
            client_id,
            client_secret: match &client_secret {
                Some(s) => Some(key.seal(&b("client-secret"), s.as_bytes())?),
                None => None,
            },
            auth_method: method,
            authorize_url: url.to_string(),
            expires_at,
            via_browser: redirect == Redirect::Browser,
            browser: None,
        };
        self.ledger
            .put_pending_link(&sha256_hex(&state), &pending)?;
        self.audit.log(
            ev("upstream_link_started", &who.name, upstream)
                .who(who)
                .reason(format!(
                    "issuer {issuer}; scopes {}",
                    if scopes.is_empty() {
                        "-".into()
                    } else {
                        scopes.join(" ")
                    }
                )),
        );
        // A browser goes through mcp-zt's own page first: it checks the certificate and gives
        // the browser the cookie the callback needs, so a callback URL made with someone else's
        // upstream account and sent to this holder finishes nothing.
        let url = match (redirect, &self.browser_base) {
            (Redirect::Browser, Some(b)) => format!("{b}{GO_PATH}{state}"),
            _ => url.to_string(),
        };
        Ok(Started {
            url,
            state,
            expires_at,
        })
    }

    /// The link page (`GET /link/go/STATE`), opened with the holder's certificate: where the
    /// browser goes on, and the cookie it must bring back to the callback.
    pub fn go(&self, who: &Identity, state: &str) -> Result<(String, String), LinkError> {
        let hash = sha256_hex(state);
        let refuse = |upstream: &str, why: &str| self.refused(who, upstream, why.to_string());
        let Some(mut p) = self.ledger.pending_link(&hash)? else {
            return Err(refuse("-", "unknown, used or expired link"));
        };
        if p.holder != who.name || p.chain != self.chain_of(who) || who.oauth.is_some() {
            return Err(refuse(
                &p.upstream,
                "this link was started for another holder",
            ));
        }
        if !p.via_browser || p.expires_at < now() {
            return Err(refuse(
                &p.upstream,
                "this link expired or is not for a browser: start it again",
            ));
        }
        let nonce = random_token("lc_");
        p.browser = Some(sha256_hex(&nonce));
        self.ledger.put_pending_link(&hash, &p)?;
        Ok((p.authorize_url, nonce))
    }

    /// mcp-zt's registration with the authorization server for `redirect_uri`: from the
    /// ledger, else made now (DCR).
    async fn registration(
        &self,
        who: &Identity,
        cfg: &Upstream,
        http: &OAuthHttp,
        issuer: &str,
        found: &super::http::Discovered,
        redirect_uri: &str,
    ) -> Result<(String, Option<Zeroizing<String>>, String), LinkError> {
        let b = |p| Self::binding(p, &cfg.name, "", issuer);
        let key = self.key()?;
        if let Some(r) = self
            .ledger
            .upstream_registration(&cfg.name, issuer, redirect_uri)?
        {
            let secret = match &r.client_secret {
                Some(s) => Some(key.open_text(&b("client-secret"), s)?),
                None => None,
            };
            return Ok((r.client_id, secret, r.auth_method));
        }
        let Some(endpoint) = &found.server.registration_endpoint else {
            return Err(self.refused(
                who,
                &cfg.name,
                "the authorization server offers neither client metadata documents (with --public-url) nor dynamic registration: register mcp-zt there and set oauth_client_id".into(),
            ));
        };
        let reg = http
            .register(endpoint, redirect_uri)
            .await
            .map_err(|e| self.refused(who, &cfg.name, e))?;
        let record = UpstreamRegistration {
            upstream: cfg.name.clone(),
            issuer: issuer.to_string(),
            redirect_uri: redirect_uri.to_string(),
            client_id: reg.client_id.clone(),
            client_secret: match &reg.client_secret {
                Some(s) => Some(key.seal(&b("client-secret"), s.as_bytes())?),
                None => None,
            },
            auth_method: reg.method.clone(),
            registered_at: now(),
        };
        self.ledger.put_upstream_registration(&record)?;
        self.audit.log(
            Event::new("upstream_client_registered")
                .item(format!("upstream:{}", cfg.name))
                .reason(format!("client_id {} at {issuer}", reg.client_id)),
        );
        Ok((reg.client_id, reg.client_secret, reg.method))
    }

    /// Finishes a link: the callback's `state` must be one this holder started (a link
    /// opened with another holder's certificate is refused and stays usable by its own
    /// holder), used once, in time; the code is exchanged with the PKCE verifier.
    pub async fn finish(
        &self,
        who: &Identity,
        state: &str,
        code: &str,
        browser_cookie: Option<&str>,
    ) -> Result<LinkRow, LinkError> {
        let hash = sha256_hex(state);
        let refuse = |upstream: &str, why: &str| self.refused(who, upstream, why.to_string());
        let Some(peek) = self.ledger.pending_link(&hash)? else {
            return Err(refuse("-", "unknown, used or expired link state"));
        };
        let chain = self.chain_of(who);
        if peek.holder != who.name || peek.chain != chain || who.oauth.is_some() {
            return Err(refuse(
                &peek.upstream,
                "this link was started by another holder",
            ));
        }
        // A browser link finishes only in the browser that opened mcp-zt's link page; a link
        // of `mcp-zt link` only by that command.
        let cookie_ok = match (&peek.browser, browser_cookie) {
            (Some(h), Some(c)) => crate::oauth::crypto::same(h, &sha256_hex(c)),
            _ => false,
        };
        if peek.via_browser != browser_cookie.is_some() || (peek.via_browser && !cookie_ok) {
            return Err(refuse(
                &peek.upstream,
                "this browser did not open the link page of this link: open the link you were given",
            ));
        }
        let Some(p) = self.ledger.take_pending_link(&hash)? else {
            return Err(refuse(
                &peek.upstream,
                "unknown, used or expired link state",
            ));
        };
        if p.expires_at < now() {
            return Err(refuse(&p.upstream, "the link expired: start it again"));
        }
        let upstream = p.upstream.clone();
        let cfg = self.upstream(&upstream)?;
        let http = self.http_for(&cfg)?;
        let key = self.key()?;
        let b = |purpose| Self::binding(purpose, &upstream, &who.name, &chain);
        let verifier = key.open_text(&b("verifier"), &p.verifier)?;
        let secret = match &p.client_secret {
            Some(s) => Some(key.open_text(&b("client-secret"), s)?),
            None => None,
        };
        let auth = ClientAuth {
            client_id: &p.client_id,
            secret: secret.as_deref().map(String::as_str),
            method: &p.auth_method,
        };
        let resource = match &cfg.transport {
            Transport::Http { url, .. } => url.clone(),
            Transport::Stdio { .. } => return Err(LinkError::NotOAuth(upstream.clone())),
        };
        let tokens = http
            .token(
                &p.token_endpoint,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", &p.redirect_uri),
                    ("code_verifier", &verifier),
                    ("resource", &resource),
                ],
                &auth,
            )
            .await
            .map_err(|e| refuse(&upstream, &format!("code exchange: {e}")))?;
        let t = now();
        let scopes = tokens
            .scope
            .as_deref()
            .map(split_scopes)
            .unwrap_or_else(|| p.scopes.clone());
        let link = UpstreamLink {
            upstream: upstream.clone(),
            holder: who.name.clone(),
            chain: chain.clone(),
            serial: who.serial.clone(),
            scopes,
            access: key.seal(&b("access"), tokens.access.as_bytes())?,
            refresh: match &tokens.refresh {
                Some(r) => Some(key.seal(&b("refresh"), r.as_bytes())?),
                None => None,
            },
            expires_at: tokens.expires_in.map_or(0, |n| t.saturating_add(n)),
            linked_at: t,
            refreshed_at: t,
            issuer: p.issuer.clone(),
            token_endpoint: p.token_endpoint.clone(),
            revocation_endpoint: p.revocation_endpoint.clone(),
            client_id: p.client_id.clone(),
            client_secret: p.client_secret.clone(),
            auth_method: p.auth_method.clone(),
        };
        self.ledger.put_upstream_link(&link)?;
        self.forget(&upstream, &who.name);
        self.audit.log(
            ev("upstream_linked", &who.name, &upstream)
                .who(who)
                .reason(format!(
                    "scopes {}; expires {}",
                    if link.scopes.is_empty() {
                        "-".into()
                    } else {
                        link.scopes.join(" ")
                    },
                    if link.expires_at == 0 {
                        "-".into()
                    } else {
                        crate::pki::rfc3339(link.expires_at)
                    }
                )),
        );
        Ok(LinkRow::from(&link))
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

    fn lock_for(&self, k: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > 4096 {
            m.retain(|_, l| Arc::strong_count(l) > 1);
        }
        m.entry(k.to_string()).or_default().clone()
    }

    /// The holder's token for `upstream`, refreshed first when it is near expiry; `Err` says
    /// the holder must link (again).
    pub async fn access(&self, who: &Identity, upstream: &str) -> Result<Access, NeedLink> {
        let chain = self.chain_of(who);
        let k = format!("{}|{chain}", key_of(upstream, &who.name));
        let t = now();
        let fresh = |l: &UpstreamLink| {
            l.expires_at == 0 || l.expires_at - t > refresh_margin(l.expires_at - l.refreshed_at)
        };
        if let Some((link, token, at)) =
            self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&k)
        {
            if at.elapsed() < CACHE_FOR && fresh(link) {
                return Ok(Access {
                    token: token.clone(),
                    link: link.clone(),
                });
            }
        }
        let need = |reason: &str| NeedLink {
            reason: reason.to_string(),
            scopes: Vec::new(),
        };
        let lock = self.lock_for(&k);
        let _held = lock.lock().await;
        let link = match self.ledger.upstream_link(upstream, &who.name) {
            Ok(Some(l)) if l.chain == chain => l,
            Ok(_) => return Err(need("not linked")),
            Err(e) => return Err(need(&format!("the ledger failed: {e}"))),
        };
        let link = if fresh(&link) {
            link
        } else {
            self.refresh(who, link).await?
        };
        let key = self.key().map_err(|e| need(&e.to_string()))?;
        let token = key
            .open_text(
                &Self::binding("access", upstream, &who.name, &chain),
                &link.access,
            )
            .map_err(|e| need(&e.to_string()))?;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(k, (link.clone(), token.clone(), Instant::now()));
        Ok(Access { token, link })
    }

    /// Refreshes a link (rotation respected); another replica's concurrent refresh wins and
    /// is used. A refusal (`invalid_grant`) removes the link: the holder links again.
    async fn refresh(&self, who: &Identity, link: UpstreamLink) -> Result<UpstreamLink, NeedLink> {
        let upstream = link.upstream.clone();
        let still_valid = link.expires_at > now();
        let need = |reason: String| NeedLink {
            reason,
            scopes: Vec::new(),
        };
        let Some(sealed_refresh) = link.refresh.clone() else {
            return if still_valid {
                Ok(link)
            } else {
                Err(need(
                    "the upstream token expired and no refresh token was given".into(),
                ))
            };
        };
        let Ok(cfg) = self.upstream(&upstream) else {
            return Err(need(format!(
                "upstream {upstream} no longer uses per-holder OAuth"
            )));
        };
        let key = self.key().map_err(|e| need(e.to_string()))?;
        let http = self.http_for(&cfg).map_err(|e| need(e.to_string()))?;
        let chain = link.chain.clone();
        let b = |p| Self::binding(p, &upstream, &link.holder, &chain);
        let refresh = key
            .open_text(&b("refresh"), &sealed_refresh)
            .map_err(|e| need(e.to_string()))?;
        let secret = match &link.client_secret {
            Some(s) => Some(
                key.open_text(&b("client-secret"), s)
                    .map_err(|e| need(e.to_string()))?,
            ),
            None => None,
        };
        let auth = ClientAuth {
            client_id: &link.client_id,
            secret: secret.as_deref().map(String::as_str),
            method: &link.auth_method,
        };
        let resource = match &cfg.transport {
            Transport::Http { url, .. } => url.clone(),
            Transport::Stdio { .. } => String::new(),
        };
        let answer = http
            .token(
                &link.token_endpoint,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &refresh),
                    ("resource", &resource),
                ],
                &auth,
            )
            .await;
        let tokens = match answer {
            Ok(t) => t,
            Err(e) => {
                // Another replica may have rotated it a moment ago: use its result.
                if let Ok(Some(now_link)) = self.ledger.upstream_link(&upstream, &link.holder) {
                    if now_link != link && now_link.expires_at > now() {
                        return Ok(now_link);
                    }
                }
                if matches!(&e, TokenError::Refused { error, .. } if error == "invalid_grant") {
                    let _ = self.ledger.remove_upstream_link(&upstream, &link.holder);
                    self.forget(&upstream, &link.holder);
                    self.audit.log(
                        ev("upstream_link_refused", &link.holder, &upstream)
                            .who(who)
                            .reason(format!(
                                "refresh refused ({e}): the link was removed; link again"
                            )),
                    );
                    return Err(need(format!(
                        "the upstream refused to refresh the token ({e})"
                    )));
                }
                if still_valid {
                    return Ok(link);
                }
                return Err(need(format!("the token could not be refreshed: {e}")));
            }
        };
        let t = now();
        let mut next = link.clone();
        next.access = key
            .seal(&b("access"), tokens.access.as_bytes())
            .map_err(|e| need(e.to_string()))?;
        if let Some(r) = &tokens.refresh {
            next.refresh = Some(
                key.seal(&b("refresh"), r.as_bytes())
                    .map_err(|e| need(e.to_string()))?,
            );
        }
        next.expires_at = tokens.expires_in.map_or(0, |n| t.saturating_add(n));
        next.refreshed_at = t;
        if let Some(s) = &tokens.scope {
            next.scopes = split_scopes(s);
        }
        match self.ledger.swap_upstream_link(&link, &next) {
            Ok(true) => {
                self.audit.log(
                    ev("upstream_token_refreshed", &link.holder, &upstream)
                        .who(who)
                        .reason(format!(
                            "expires {}{}",
                            crate::pki::rfc3339(next.expires_at),
                            if tokens.refresh.is_some() {
                                "; refresh token rotated"
                            } else {
                                ""
                            }
                        )),
                );
                Ok(next)
            }
            // Changed meanwhile (unlinked, or refreshed elsewhere): the ledger decides.
            Ok(false) => match self.ledger.upstream_link(&upstream, &link.holder) {
                Ok(Some(l)) => Ok(l),
                _ => Err(need("the link was removed".into())),
            },
            Err(e) => Err(need(format!("the ledger failed: {e}"))),
        }
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

    /// Removes a holder's link to `upstream`: its tokens are revoked at the upstream (RFC 7009)
    /// when it has an endpoint for it, then deleted; each step audited. Whether there was one.
    pub async fn unlink(&self, upstream: &str, holder: &str, why: &str) -> Result<bool, LinkError> {
        let Some(link) = self.ledger.upstream_link(upstream, holder)? else {
            return Ok(false);
        };
        // Deleted first: from here on no request uses it, whatever the upstream answers.
        self.ledger.remove_upstream_link(upstream, holder)?;
        self.forget(upstream, holder);
        self.revoke_at_upstream(&link, why).await;
        Ok(true)
    }

    async fn revoke_at_upstream(&self, link: &UpstreamLink, why: &str) {
        let upstream = &link.upstream;
        let holder = &link.holder;
        let line = |what: &str| {
            self.audit.log(
                ev("upstream_token_revoked", holder, upstream).reason(format!("{why}; {what}")),
            )
        };
        let Some(endpoint) = &link.revocation_endpoint else {
            line("deleted (the upstream has no revocation endpoint)");
            return;
        };
        let Ok(cfg) = self.upstream(upstream) else {
            line("deleted (the upstream is no longer configured for OAuth: not revoked there)");
            return;
        };
        let Some(key) = self.existing_key() else {
            line("deleted (no usable secrets.key: not revoked there)");
            return;
        };
        let Ok(http) = self.http_for(&cfg) else {
            line("deleted (no HTTP client for the upstream: not revoked there)");
            return;
        };
        let b = |p| Self::binding(p, upstream, holder, &link.chain);
        let secret = link
            .client_secret
            .as_ref()
            .and_then(|s| key.open_text(&b("client-secret"), s).ok());
        let auth = ClientAuth {
            client_id: &link.client_id,
            secret: secret.as_deref().map(String::as_str),
            method: &link.auth_method,
        };
        let mut tokens = Vec::new();
        if let Some(r) = &link.refresh {
            tokens.push(("refresh_token", r));
        }
        tokens.push(("access_token", &link.access));
        for (hint, sealed) in tokens {
            let Ok(token) = key.open_text(
                &b(if hint == "refresh_token" {
                    "refresh"
                } else {
                    "access"
                }),
                sealed,
            ) else {
                line(&format!(
                    "{hint} deleted (it did not open: not revoked there)"
                ));
                continue;
            };
            match http.revoke(endpoint, &token, hint, &auth).await {
                Ok(s) if (200..300).contains(&s) => {
                    line(&format!("{hint} revoked at the upstream and deleted"))
                }
                Ok(s) => line(&format!(
                    "{hint} deleted; the upstream answered {s} to its revocation"
                )),
                Err(e) => line(&format!(
                    "{hint} deleted; revocation at the upstream failed: {e}"
                )),
            }
        }
    }

    /// A certificate of `holder` was revoked: every upstream link of the holder is revoked at
    /// its upstream and deleted, and every static secret of theirs is deleted. A holder's
    /// tokens are shared by all their certificates, so any one compromised ends them all.
    pub async fn holder_revoked(&self, holder: &str, serial: &str) {
        let why = format!("certificate {serial} revoked");
        match self.ledger.upstream_links() {
            Ok(links) => {
                for l in links.iter().filter(|l| l.holder == holder) {
                    if let Err(e) = self.unlink(&l.upstream, holder, &why).await {
                        self.audit.log(
                            ev("upstream_token_revoked", holder, &l.upstream)
                                .reason(format!("{why}; deleting failed: {e}")),
                        );
                    }
                }
            }
            Err(e) => self.audit.log(
                Event::new("upstream_token_revoked")
                    .holder_name(holder)
                    .reason(format!("{why}; the ledger failed: {e}")),
            ),
        }
        if let Err(e) = super::secret::delete_all(self, holder, None, &why) {
            self.audit.log(
                Event::new("secret_deleted")
                    .holder_name(holder)
                    .reason(format!("{why}; the ledger failed: {e}")),
            );
        }
    }

    /// Forgets pending links that expired.
    pub fn sweep(&self) {
        let _ = self.ledger.sweep_pending_links(now());
    }
}
