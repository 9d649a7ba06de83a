//! The OAuth endpoints of `serve --oauth`: discovery metadata, `/token`, `/register` and
//! `/revoke` on the MCP name, `/authorize` and the consent form on the login name, and the
//! bearer check in front of the MCP endpoint. The decisions are in [`crate::oauth::flow`];
//! this layer reads requests, limits them, audits every step and writes answers.

mod approval;
mod bearer;
mod login;
mod token;

pub(crate) use login::{html, on_login_name};

pub use approval::{ApprovalDecision, ApprovalInfo};
pub use bearer::bearer;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::{header, HeaderMap, HeaderValue, StatusCode};

use super::state::AppState;
use crate::audit::Event;
use crate::ledger::oauth::Grant;
use crate::mcp::ratelimit::RateLimiter;
use crate::oauth::flow::{AuthServer, OAuthFail};
use crate::oauth::metadata;

/// What `serve --oauth` adds to the server's state.
#[derive(Debug)]
pub struct OAuthState {
    /// The authorization server.
    pub server: AuthServer,
    /// Client ID metadata documents (when CIMD registration is open).
    pub cimd: Option<crate::oauth::cimd::Fetcher>,
    /// Approvals waiting for `oauth approve CODE`.
    approvals: approval::Approvals,
    /// Access tokens checked against the ledger in the last [`CACHE_FOR`]: by hash, their
    /// grant and expiry. The certificate's revocation is checked on every request anyway (in
    /// memory); a grant revoked here empties the cache; one revoked on another replica is seen
    /// within [`CACHE_FOR`].
    access_cache: std::sync::Mutex<std::collections::HashMap<String, CachedCheck>>,
    /// Bumped whenever a grant is revoked here: a token check remembered on a connection from
    /// an older generation is made again.
    generation: std::sync::atomic::AtomicU64,
    /// Per-address and per-client limits (refused bearer requests, registrations, token
    /// requests): token buckets that refill, so an address is slowed, never locked out.
    limits: RateLimiter,
}

/// Refused bearer requests per address and minute before 429s.
const REFUSALS_PER_MIN: u32 = 120;
/// DCR registrations per address and minute.
const REGISTRATIONS_PER_MIN: u32 = 10;
/// Token requests per client and minute.
const TOKENS_PER_CLIENT_MIN: u32 = 120;
/// A token check: its grant, the token's expiry (Unix seconds), when it was made.
type CachedCheck = (Arc<Grant>, i64, Instant);

/// How long a token checked against the ledger is taken as checked (a grant revoked on another
/// replica is refused here within this; within the fleet's 1 s revocation bound).
pub(super) const CACHE_FOR: std::time::Duration = std::time::Duration::from_millis(500);
/// Most token checks cached.
const MAX_CACHED: usize = 65_536;
/// Token requests per address and minute.
const TOKENS_PER_ADDR_MIN: u32 = 600;
/// Authorization requests (and the metadata fetches they may cause) per address and minute.
const AUTHORIZE_PER_ADDR_MIN: u32 = 120;
/// Buckets held before idle ones are forgotten; most held at all.
const PRUNE_AT: usize = 4096;
const MAX_BUCKETS: usize = 100_000;
/// Longest `client_id` looked at.
const MAX_CLIENT_ID: usize = 512;
/// Largest form or JSON body of the OAuth endpoints.
const MAX_FORM_BYTES: usize = 16 * 1024;

impl OAuthState {
    /// Around an authorization server.
    pub fn new(server: AuthServer, cimd: Option<crate::oauth::cimd::Fetcher>) -> OAuthState {
        OAuthState {
            server,
            cimd,
            approvals: approval::Approvals::default(),
            access_cache: Default::default(),
            generation: Default::default(),
            limits: RateLimiter::default(),
        }
    }

    /// A grant checked in the last [`CACHE_FOR`] for the token hash, and the token's expiry.
    fn cached(&self, hash: &str) -> Option<(Arc<Grant>, i64)> {
        let cache = self.access_cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(hash)
            .filter(|(_, _, at)| at.elapsed() < CACHE_FOR)
            .map(|(g, exp, _)| (g.clone(), *exp))
    }

    /// Caches a check made at revocation generation `generation`; not if a grant was revoked
    /// here since (the check may have read it before).
    fn remember(&self, hash: String, grant: Grant, expires_at: i64, generation: u64) {
        let mut cache = self.access_cache.lock().unwrap_or_else(|p| p.into_inner());
        if self.generation() != generation {
            return;
        }
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (_, _, at)| at.elapsed() < CACHE_FOR);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(hash, (Arc::new(grant), expires_at, Instant::now()));
    }

    /// The current revocation generation.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Forgets every cached token check (a grant was revoked here). The generation moves
    /// under the cache's lock, so a check in flight cannot cache what it read before.
    pub fn forget_cached(&self) {
        let mut cache = self.access_cache.lock().unwrap_or_else(|p| p.into_inner());
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        cache.clear();
    }

    /// Takes one token from bucket `kind` of `key`; `false`: over the limit. Keys come from
    /// unauthenticated requests, so the buckets are pruned as they grow.
    fn allow(&self, kind: &str, key: &str, per_minute: u32) -> bool {
        let now = Instant::now();
        if self.limits.len() > PRUNE_AT {
            self.limits
                .forget_idle(now, std::time::Duration::from_secs(60), MAX_BUCKETS);
        }
        self.limits.check(key, kind, per_minute, now).is_ok()
    }
}

/// The OAuth routes (merged beside `/mcp`, outside its guard: they are reached without a
/// certificate).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/.well-known/oauth-protected-resource",
            get(resource_meta).options(preflight),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(resource_meta).options(preflight),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(server_meta).options(preflight),
        )
        .route(
            "/.well-known/openid-configuration",
            get(server_meta).options(preflight),
        )
        .route("/token", post(token::token).options(preflight))
        .route("/register", post(token::register).options(preflight))
        .route("/revoke", post(token::revoke).options(preflight))
        .route("/authorize", get(login::authorize))
        .route("/authorize/decide", post(login::decide))
        .route("/authorize/wait", get(approval::wait))
        .route(
            "/authorize/code/{code}",
            get(approval::info).post(approval::decide),
        )
        .layer(axum::middleware::map_response(cors))
}

fn oauth(state: &AppState) -> Option<&OAuthState> {
    state.oauth.as_deref()
}

fn roles(state: &AppState) -> Vec<String> {
    let policy = crate::tls::verifier::current_policy(&state.policy);
    policy.roles().map(str::to_string).collect()
}

async fn resource_meta(State(state): State<Arc<AppState>>) -> Response {
    let Some(o) = oauth(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    json(
        StatusCode::OK,
        &metadata::protected_resource(&o.server.endpoints, &roles(&state)),
    )
}

async fn server_meta(State(state): State<Arc<AppState>>) -> Response {
    let Some(o) = oauth(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    json(
        StatusCode::OK,
        &metadata::authorization_server(&o.server.endpoints, &roles(&state), &o.server.config),
    )
}

/// CORS preflight of the endpoints browser-based clients call (no credentials are involved:
/// these endpoints take no cookies).
async fn preflight() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, mcp-protocol-version"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    r
}

/// `Access-Control-Allow-Origin: *` on the machine endpoints (not on the login pages, which
/// carry their own headers and are never read cross-origin).
async fn cors(mut r: Response) -> Response {
    if !r.headers().contains_key(header::CONTENT_SECURITY_POLICY) {
        r.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    r
}

fn json(status: StatusCode, v: &impl serde::Serialize) -> Response {
    let mut r = (status, axum::Json(v)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// An RFC 6749 §5.2 error answer.
fn fail_response(f: &OAuthFail) -> Response {
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = json(
        status,
        &serde_json::json!({"error": f.code, "error_description": f.description}),
    );
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"mcp-zt\""),
        );
    }
    r
}

fn too_many() -> Response {
    let mut r = json(
        StatusCode::TOO_MANY_REQUESTS,
        &serde_json::json!({"error": "slow_down", "error_description": "too many requests from this address; try again shortly"}),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// The `Host` of a request: the header (HTTP/1.1) or the URI authority (HTTP/2).
fn host_of(headers: &HeaderMap, uri: &http::Uri) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .map(|h| h.to_ascii_lowercase())
}

/// Whether `host` (a Host header) names `authority` (host or host:port; `:443` implied).
fn same_authority(host: &str, authority: &str) -> bool {
    host == authority
        || host.strip_suffix(":443") == Some(authority)
        || authority.strip_suffix(":443") == Some(host)
}

/// Reads a body of at most [`MAX_FORM_BYTES`].
async fn small_body(body: Body) -> Result<bytes::Bytes, OAuthFail> {
    axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| OAuthFail::request(format!("body over {MAX_FORM_BYTES} bytes or unreadable")))
}

/// The audit line of an OAuth step.
fn step(kind: &str, peer: std::net::SocketAddr) -> Event {
    Event::new(kind).peer(peer)
}

/// Runs ledger work off the async workers (sled flushes to disk).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OAuthFail> + Send + 'static,
) -> Result<T, OAuthFail> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(OAuthFail::internal("internal error")))
}

/// The live certificate of a grant's holder: the one that approved it, or, once that was
/// renewed, its newest successor (a grant follows the renewal chain, so a holder's daily
/// renewal does not end their clients' access); refused when a certificate on the way was
/// revoked for any other reason, when the chain ended, or when a narrowed role is no longer one
/// the certificate's role may grant (the policy changed).
pub(super) fn live_certificate(
    state: &AppState,
    h: &crate::ledger::oauth::GrantHolder,
    now: i64,
) -> Result<crate::oauth::flow::Live, String> {
    // A narrowed role must still be one the certificate's role may grant (the certificate's
    // own role is checked by the policy gate like any other).
    if h.role != h.cert_role && !login::grantable(state, &h.cert_role).contains(&h.role) {
        return Err(format!(
            "role {:?} is no longer one the certificate's role {:?} may grant",
            h.role, h.cert_role
        ));
    }
    let mut serial = h.serial.clone();
    let mut not_after = h.not_after;
    // A chain is as long as its renewals; the ledger's own bound on chains applies.
    for _ in 0..100_000 {
        let revoked = state.revoked.contains(&serial);
        if !revoked && not_after > now {
            return Ok(crate::oauth::flow::Live { serial, not_after });
        }
        let ledger = state.authority.ledger();
        let rec = ledger
            .get(&serial)
            .map_err(|e| format!("ledger: {e}"))?
            .ok_or_else(|| "certificate unknown to the ledger".to_string())?;
        let renewed = rec
            .revocation
            .as_ref()
            .is_none_or(|r| r.reason == crate::pki::build::Reason::Superseded);
        match rec.superseded_by {
            Some(next) if renewed => {
                let succ = ledger
                    .get(&next)
                    .map_err(|e| format!("ledger: {e}"))?
                    .ok_or_else(|| "renewed certificate unknown to the ledger".to_string())?;
                serial = next;
                not_after = succ.not_after;
            }
            _ if revoked => return Err("certificate revoked".into()),
            _ => return Err("certificate expired".into()),
        }
    }
    Err("renewal chain too long".into())
}

/// Every hour: drops expired codes, tokens and grants and unused registrations.
pub async fn sweep(state: Arc<AppState>, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
        }
        let st = state.clone();
        let swept = tokio::task::spawn_blocking(move || {
            let now = crate::pki::now().unix_timestamp();
            st.authority
                .ledger()
                .sweep_oauth(now, crate::oauth::flow::DCR_IDLE)
        })
        .await;
        if let Ok(Err(e)) = swept {
            state
                .audit
                .log(Event::new("oauth_sweep_failed").reason(e.to_string()));
        }
    }
}

/// How client ID metadata documents may be fetched.
#[derive(Debug, Clone, Default)]
pub struct CimdOptions {
    /// Reach loopback and private addresses (`--oauth-allow-private-cimd`, tests only).
    pub allow_private: bool,
    /// Extra CA certificates (PEM) for the documents' servers (`--oauth-cimd-ca`).
    pub extra_ca: Option<std::path::PathBuf>,
}

/// The client `client_id` names: a metadata document (fetched, checked, cached) for a URL,
/// else the ledger's registration. `Ok(None)`: unknown. Fetches are audited.
async fn resolve_client(
    state: &Arc<AppState>,
    peer: std::net::SocketAddr,
    client_id: &str,
) -> Result<Option<crate::ledger::oauth::OAuthClient>, OAuthFail> {
    let Some(o) = oauth(state) else {
        return Ok(None);
    };
    if client_id.len() > MAX_CLIENT_ID {
        return Ok(None);
    }
    if crate::oauth::cimd::is_document_url(client_id) {
        let Some(fetcher) = &o.cimd else {
            return Ok(None);
        };
        let now = crate::pki::now().unix_timestamp();
        return match fetcher.client(client_id, now).await {
            Ok((client, fetched)) => {
                if fetched {
                    state.audit.log(
                        step("cimd_fetched", peer)
                            .client(client_id)
                            .reason(format!("redirect URIs {:?}", client.redirect_uris)),
                    );
                }
                Ok(Some(client))
            }
            Err(why) => {
                state.audit.log(
                    step("cimd_refused", peer)
                        .client(client_id)
                        .reason(why.clone()),
                );
                Err(OAuthFail::client(format!(
                    "the client metadata document could not be used: {why}"
                )))
            }
        };
    }
    let st = state.clone();
    let id = client_id.to_string();
    blocking(move || Ok(st.authority.ledger().oauth_client(&id)?)).await
}

/// Sets up OAuth for `serve --oauth`: `HOME/oauth.toml`, the server's OAuth key
/// (`HOME/oauth.key`, made at first start, 0600) and the ledger it keeps its state in.
pub fn start(
    authority: &crate::ca::Authority,
    endpoints: crate::oauth::Endpoints,
    cimd: &CimdOptions,
) -> anyhow::Result<OAuthState> {
    use anyhow::Context;
    let home = authority.home().dir();
    let config = crate::oauth::OAuthConfig::load(&home.join("oauth.toml"))?;
    let key_path = home.join("oauth.key");
    let key = if let crate::ledger::Ledger::Postgres(pg) = authority.ledger() {
        // A fleet shares one key (CSRF tokens and refresh successors must verify on every
        // replica): kept in the shared ledger, made by the first replica that needs it.
        let fresh = crate::oauth::crypto::sha256_hex(&crate::oauth::crypto::random_token(""));
        let hex_key = pg.oauth_key_or(&fresh)?;
        hex::decode(hex_key.trim())
            .ok()
            .filter(|k| k.len() == 32)
            .context("the ledger's OAuth key is not 32 bytes of hex")?
    } else {
        match crate::fsutil::read(&key_path) {
            Ok(bytes) => {
                if let Some(mode) = crate::fsutil::exposed_mode_of(&key_path)? {
                    anyhow::bail!(
                        "{} is readable by others (mode {mode:o}): chmod 600 it",
                        key_path.display()
                    );
                }
                let text = String::from_utf8(bytes).unwrap_or_default();
                hex::decode(text.trim())
                    .ok()
                    .filter(|k| k.len() == 32)
                    .with_context(|| format!("{}: not 32 bytes of hex", key_path.display()))?
            }
            Err(_) if !key_path.exists() => {
                let fresh = crate::oauth::crypto::random_token("");
                let bytes = crate::oauth::crypto::sha256_hex(&fresh);
                crate::fsutil::write_new(&key_path, bytes.as_bytes(), crate::fsutil::SECRET_MODE)
                    .with_context(|| format!("write {}", key_path.display()))?;
                hex::decode(&bytes).context("the new OAuth key")?
            }
            Err(e) => return Err(e).with_context(|| format!("read {}", key_path.display())),
        }
    };
    let secret = crate::oauth::crypto::Secret::from_bytes(&key);
    let fetcher = if config.allows(crate::oauth::Registration::Cimd) {
        let ca = match &cimd.extra_ca {
            Some(p) => {
                Some(std::fs::read(p).with_context(|| format!("--oauth-cimd-ca {}", p.display()))?)
            }
            None => None,
        };
        Some(
            crate::oauth::cimd::Fetcher::new(cimd.allow_private, ca.as_deref())
                .map_err(|e| anyhow::anyhow!("client metadata fetcher: {e}"))?,
        )
    } else {
        None
    };
    Ok(OAuthState::new(
        AuthServer::new(endpoints, config, secret),
        fetcher,
    ))
}
