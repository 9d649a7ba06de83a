//! The bearer check in front of the MCP endpoint: a request on a connection without a client
//! certificate must bring an access token, which stands for the certificate its grant was
//! approved with. Nothing past the headers is read before the token is checked.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::{oauth, step, REFUSALS_PER_MIN};
use crate::identity::{ConnInfo, Identity, OAuthVia};
use crate::ledger::oauth::Grant;
use crate::oauth::metadata;
use crate::server::state::{AppState, Peer, TokenSlot};

/// Ids of token-borne streams in the connection registry (apart from connection ids).
static STREAM_IDS: AtomicU64 = AtomicU64::new(1 << 62);

/// Runs before the MCP guard. A request with a verified certificate passes untouched; one
/// without gets its identity from its access token, or a 401 that says where to get one.
pub async fn bearer(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    if req.extensions().get::<Arc<ConnInfo>>().is_some() {
        return next.run(req).await;
    }
    let (Some(o), Some(peer)) = (oauth(&state), req.extensions().get::<Arc<Peer>>().cloned())
    else {
        return (StatusCode::FORBIDDEN, "Forbidden").into_response();
    };
    if !req.uri().path().starts_with(&o.server.endpoints.mcp_path) {
        // `/renew` and the rest need the certificate itself.
        return (
            StatusCode::FORBIDDEN,
            "Forbidden: a client certificate is needed",
        )
            .into_response();
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string());
    let refuse = |why: &str, error: Option<(&str, &str)>, grant: Option<&Grant>| {
        let group = crate::tls::lockout::AddrGroup::from(peer.addr.ip()).to_string();
        if !o.allow("refusal", &group, REFUSALS_PER_MIN) {
            let mut r = (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return r;
        }
        let mut e = step("token_refused", peer.addr).reason(why.to_string());
        if let Some(g) = grant {
            e = e
                .holder(&g.holder.name, &g.holder.role, &g.holder.serial)
                .client(&g.client_id);
        }
        state.audit.log(e);
        let mut r = (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
        if let Ok(v) = HeaderValue::from_str(&metadata::challenge(&o.server.endpoints, error)) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    };
    let Some(token) = token else {
        return refuse("no client certificate and no access token", None, None);
    };
    let now = crate::pki::now().unix_timestamp();
    let (info, grant_id, until, generation) = match reuse(&state, o, &peer, &token, now) {
        Some(found) => found,
        None => {
            // A token of the wrong shape costs no lookup.
            if !well_formed(&token) {
                let why = "malformed access token";
                return refuse(why, Some(("invalid_token", why)), None);
            }
            let hash = crate::oauth::crypto::sha256_hex(&token);
            // Read before the check: a grant revoked here during it makes the result stale.
            let generation = o.generation();
            // The embedded ledger answers in microseconds; a shared one is a network round
            // trip, kept off the async workers.
            let checked = if state.authority.ledger().is_shared() {
                let st = state.clone();
                let h = hash.clone();
                tokio::task::spawn_blocking(move || check_token(&st, &h, now, generation))
                    .await
                    .unwrap_or_else(|_| Err(("internal error".to_string(), None).into()))
            } else {
                check_token(&state, &hash, now, generation)
            };
            let (grant, cert, token_expires) = match checked {
                Ok(found) => found,
                Err(r) => {
                    return refuse(&r.why, Some(("invalid_token", &r.why)), r.grant.as_deref())
                }
            };
            if grant.cnf.is_some() {
                let why = "certificate-bound token without its certificate";
                return refuse(why, Some(("invalid_token", why)), Some(&grant));
            }
            let info = Arc::new(ConnInfo {
                id: peer.id,
                peer: peer.addr,
                identity: Identity {
                    name: grant.holder.name.clone(),
                    role: grant.holder.role.clone(),
                    serial: cert.serial.clone(),
                    spiffe_id: grant.holder.spiffe_id.clone(),
                    not_after: cert.not_after,
                    trust: None,
                    oauth: Some(OAuthVia {
                        client_id: grant.client_id.clone(),
                        grant: grant.id.clone(),
                    }),
                },
            });
            let until = token_expires.min(cert.not_after);
            *peer.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(TokenSlot {
                token,
                info: info.clone(),
                grant: grant.id.clone(),
                until,
                checked: Instant::now(),
                generation,
            });
            (info, grant.id.clone(), until, generation)
        }
    };
    let serial = info.identity.serial.clone();
    req.extensions_mut().insert(info);
    let response = next.run(req).await;
    // A single JSON answer is complete once sent; an event stream stays open and must end when
    // the certificate or the grant is revoked, and when the token expires.
    let streaming = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        return response;
    }
    let cut = CancellationToken::new();
    let id = STREAM_IDS.fetch_add(1, Ordering::Relaxed);
    let keys = [serial, format!("oauth:{grant_id}")];
    for k in &keys {
        state.conns.attach(k, id, cut.clone());
    }
    // A revocation while the request ran: of the certificate, or of a grant here.
    if state.revoked.contains(&keys[0]) || o.generation() != generation {
        cut.cancel();
    }
    // A grant revoked on another replica reaches this one through the ledger only.
    tokio::spawn(watch_grant(state.clone(), grant_id, cut.clone()));
    response.map(|inner| {
        Body::new(Cuttable {
            inner,
            cut: Box::pin(cut.clone().cancelled_owned()),
            token: cut,
            until,
            state: state.clone(),
            keys,
            id,
        })
    })
}

/// The check made on this connection a moment ago for the same token, if nothing it relied on
/// changed: within [`super::CACHE_FOR`], no grant revoked here since, the token and the
/// certificate unexpired, the certificate not revoked (checked every time, in memory).
fn reuse(
    state: &AppState,
    o: &super::OAuthState,
    peer: &Peer,
    token: &str,
    now: i64,
) -> Option<(Arc<ConnInfo>, String, i64, u64)> {
    let slot = peer.token.lock().unwrap_or_else(|p| p.into_inner());
    let s = slot.as_ref()?;
    let fresh = crate::oauth::crypto::same(&s.token, token)
        && s.checked.elapsed() < super::CACHE_FOR
        && s.generation == o.generation()
        && s.until > now
        && !state.revoked.contains(&s.info.identity.serial);
    fresh.then(|| (s.info.clone(), s.grant.clone(), s.until, s.generation))
}

/// `mzt_at_` and 43 base64url characters: the shape of every access token mcp-zt issues.
fn well_formed(token: &str) -> bool {
    token
        .strip_prefix(crate::oauth::ACCESS_PREFIX)
        .is_some_and(|rest| {
            rest.len() == 43
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// While a token-borne event stream is open: every second, whether its grant was revoked
/// (on any replica); if so the stream is cut. Ends with the stream.
async fn watch_grant(state: Arc<AppState>, grant: String, cut: CancellationToken) {
    loop {
        tokio::select! {
            _ = cut.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        let st = state.clone();
        let id = grant.clone();
        let revoked = tokio::task::spawn_blocking(move || {
            st.authority
                .ledger()
                .oauth_grant(&id)
                .map(|g| g.is_none_or(|g| g.revoked.is_some()))
        })
        .await;
        if let Ok(Ok(true)) = revoked {
            state.conns.cut(&format!("oauth:{grant}"));
            cut.cancel();
            return;
        }
    }
}

fn check_token(
    state: &AppState,
    hash: &str,
    now: i64,
    generation: u64,
) -> Result<(Grant, crate::oauth::flow::Live, i64), crate::oauth::flow::TokenRefusal> {
    let Some(o) = state.oauth.as_deref() else {
        return Err(("OAuth is off".to_string(), None).into());
    };
    let live = |h: &crate::ledger::oauth::GrantHolder| super::live_certificate(state, h, now);
    // Checked a moment ago: only what can change without the ledger is looked at again (the
    // token's expiry, the certificate's revocation, the role).
    if let Some((grant, expires_at)) = o.cached(hash) {
        if expires_at > now {
            if let Ok(cert) = live(&grant.holder) {
                if cert.not_after > now {
                    return Ok(((*grant).clone(), cert, expires_at));
                }
            }
        }
    }
    let checked = o
        .server
        .check_access_hashed(state.authority.ledger(), hash, now, &live)?;
    o.remember(hash.to_string(), checked.0.clone(), checked.2, generation);
    Ok(checked)
}

/// A response body that ends with an error (the stream is reset) once `cut` fires, and leaves
/// the registry when dropped.
struct Cuttable {
    inner: Body,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    token: CancellationToken,
    /// The token's (or certificate's) end, Unix seconds: checked at each frame, so a stream
    /// ends at its first frame (keep-alives included) past it.
    until: i64,
    state: Arc<AppState>,
    keys: [String; 2],
    id: u64,
}

impl Drop for Cuttable {
    fn drop(&mut self) {
        // Ends the grant watcher of this stream.
        self.token.cancel();
        for k in &self.keys {
            self.state.conns.unregister(k, self.id);
        }
    }
}

impl hyper::body::Body for Cuttable {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if self.cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new("access revoked"))));
        }
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(Some(_))) && crate::pki::now().unix_timestamp() >= self.until
        {
            return Poll::Ready(Some(Err(axum::Error::new("access token expired"))));
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
