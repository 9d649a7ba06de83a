//! `/token`, `/register` and `/revoke`: the machine endpoints on the MCP name.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{header, HeaderMap, StatusCode};

use super::{
    blocking, fail_response, json, oauth, small_body, step, too_many, REGISTRATIONS_PER_MIN,
    TOKENS_PER_ADDR_MIN, TOKENS_PER_CLIENT_MIN,
};
use crate::identity::ConnInfo;
use crate::ledger::oauth::OAuthClient;
use crate::oauth::crypto;
use crate::oauth::flow::{OAuthFail, TokenForm};
use crate::oauth::Registration;
use crate::server::state::{AppState, Peer};

/// Parses a form body; a parameter given twice is refused (RFC 6749 §3.2).
fn form(bytes: &[u8]) -> Result<HashMap<String, String>, OAuthFail> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(bytes) {
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(OAuthFail::request(format!("parameter {k:?} given twice")));
        }
    }
    Ok(out)
}

fn token_form(mut m: HashMap<String, String>) -> TokenForm {
    TokenForm {
        grant_type: m.remove("grant_type"),
        code: m.remove("code"),
        redirect_uri: m.remove("redirect_uri"),
        code_verifier: m.remove("code_verifier"),
        client_id: m.remove("client_id"),
        client_secret: m.remove("client_secret"),
        refresh_token: m.remove("refresh_token"),
        resource: m.remove("resource"),
        scope: m.remove("scope"),
    }
}

/// `client_secret_basic` credentials (RFC 6749 §2.3.1: each part form-urlencoded).
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = STANDARD.decode(rest.trim()).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((dec(id)?, dec(secret)?))
}

/// Authenticates the client of a token or revocation request: a public client names itself;
/// a confidential one must prove its secret (basic or post).
fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    f: &TokenForm,
    document: Option<OAuthClient>,
) -> Result<OAuthClient, OAuthFail> {
    let (id, secret) = match basic(headers) {
        Some((id, secret)) => {
            if f.client_id.as_deref().is_some_and(|c| c != id) {
                return Err(OAuthFail::client(
                    "client_id differs from the Basic credentials",
                ));
            }
            (id, Some(secret))
        }
        None => match f.client_id.clone() {
            Some(id) => (id, f.client_secret.clone()),
            None => return Err(OAuthFail::client("no client_id")),
        },
    };
    let client = match document.filter(|d| d.client_id == id) {
        Some(d) => Some(d),
        None => state.authority.ledger().oauth_client(&id)?,
    };
    let Some(client) = client else {
        return Err(OAuthFail::client(
            "unknown client (never registered, deleted, or its registration expired): register again",
        ));
    };
    if let Some(want) = &client.secret_sha256 {
        let ok = secret.is_some_and(|s| crypto::same(&crypto::sha256_hex(&s), want));
        if !ok {
            return Err(OAuthFail::client("client authentication failed"));
        }
    }
    Ok(client)
}

/// The client of a URL `client_id` (a metadata document), fetched before the blocking part.
async fn document_client(
    state: &Arc<AppState>,
    peer: &Peer,
    client_id: Option<&str>,
) -> Result<Option<OAuthClient>, OAuthFail> {
    match client_id {
        Some(id) if crate::oauth::cimd::is_document_url(id) => {
            super::resolve_client(state, peer.addr, id).await
        }
        _ => Ok(None),
    }
}

/// `POST /token`.
pub async fn token(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let Some(o) = oauth(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(peer) = req.extensions().get::<Arc<Peer>>().cloned() else {
        return StatusCode::FORBIDDEN.into_response();
    };
    let with_cert = req.extensions().get::<Arc<ConnInfo>>().is_some();
    let (parts, body) = req.into_parts();
    let f = match small_body(body).await.and_then(|b| form(&b)) {
        Ok(m) => token_form(m),
        Err(fail) => return refused(&state, &peer, None, &fail),
    };
    let client_hint = f.client_id.clone();
    let group = crate::tls::lockout::AddrGroup::from(peer.addr.ip()).to_string();
    if !o.allow("token", &group, TOKENS_PER_ADDR_MIN) {
        return too_many();
    }
    let document = match document_client(&state, &peer, client_hint.as_deref()).await {
        Ok(d) => d,
        Err(fail) => return refused(&state, &peer, client_hint.as_deref(), &fail),
    };
    let st = state.clone();
    let cnf = if with_cert { peer.x5t.clone() } else { None };
    let headers = parts.headers;
    let result = blocking(move || {
        let client = authenticate(&st, &headers, &f, document)?;
        let now = crate::pki::now().unix_timestamp();
        let o = st
            .oauth
            .as_deref()
            .ok_or_else(|| OAuthFail::request("OAuth is off"))?;
        // Per client, counted only once the client is known (nobody can use up another
        // client's budget by naming it).
        if !o.allow("token-client", &client.client_id, TOKENS_PER_CLIENT_MIN) {
            let mut fail = OAuthFail::request("too many token requests for this client");
            fail.status = 429;
            fail.code = "slow_down";
            return Err(fail);
        }
        let live = |h: &crate::ledger::oauth::GrantHolder| super::live_certificate(&st, h, now);
        let (answer, grant, kind) = match f.grant_type.as_deref() {
            Some("authorization_code") => {
                let (a, g) =
                    o.server
                        .exchange(st.authority.ledger(), &client, &f, cnf, now, &live)?;
                (a, g, "code_exchanged")
            }
            Some("refresh_token") => {
                let (a, g) = o
                    .server
                    .refresh(st.authority.ledger(), &client, &f, now, &live)?;
                (a, g, "token_refreshed")
            }
            Some(other) => {
                let mut fail = OAuthFail::request(format!("grant_type {other:?} is not supported"));
                fail.code = "unsupported_grant_type";
                return Err(fail);
            }
            None => return Err(OAuthFail::request("grant_type is missing")),
        };
        // Registrations remember their last use (unused ones expire); documents are not kept.
        let stale = client.last_used + 3600 < now || client.last_used == client.created_at;
        if client.kind != crate::ledger::oauth::ClientKind::Cimd && stale {
            let mut c = client.clone();
            c.last_used = now;
            st.authority.ledger().put_oauth_client(&c)?;
        }
        Ok((answer, grant, kind))
    })
    .await;
    match result {
        Ok((answer, grant, kind)) => {
            state.audit.log(
                step(kind, peer.addr)
                    .client(&grant.client_id)
                    .holder(&grant.holder.name, &grant.holder.role, &grant.holder.serial)
                    .reason(format!(
                        "grant {}{}",
                        grant.id,
                        if grant.cnf.is_some() {
                            " (certificate-bound)"
                        } else {
                            ""
                        }
                    )),
            );
            json(StatusCode::OK, &answer)
        }
        Err(fail) => refused(&state, &peer, client_hint.as_deref(), &fail),
    }
}

fn refused(state: &AppState, peer: &Peer, client: Option<&str>, fail: &OAuthFail) -> Response {
    if let Some(grant) = &fail.revoked_grant {
        // Streams of a grant revoked for reuse end now, not at their next request.
        state.conns.cut(&format!("oauth:{grant}"));
        if let Some(o) = oauth(state) {
            o.forget_cached();
        }
    }
    let mut e = step(fail.event, peer.addr).reason(format!("{}: {}", fail.code, fail.description));
    if let Some(c) = client {
        e = e.client(c);
    }
    state.audit.log(e);
    fail_response(fail)
}

/// `POST /register` (RFC 7591): public clients only.
pub async fn register(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let Some(o) = oauth(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(peer) = req.extensions().get::<Arc<Peer>>().cloned() else {
        return StatusCode::FORBIDDEN.into_response();
    };
    if !o.server.config.allows(Registration::Dcr) {
        let fail = OAuthFail::request("dynamic client registration is closed on this server");
        return refused_registration(&state, &peer, &fail);
    }
    let group = crate::tls::lockout::AddrGroup::from(peer.addr.ip()).to_string();
    if !o.allow("register", &group, REGISTRATIONS_PER_MIN) {
        state.audit.log(
            step("client_registration_refused", peer.addr).reason("rate limited (per address)"),
        );
        return too_many();
    }
    let body = match small_body(req.into_body()).await {
        Ok(b) => b,
        Err(fail) => return refused_registration(&state, &peer, &fail),
    };
    let st = state.clone();
    let from = peer.addr.to_string();
    let result = blocking(move || {
        let o = st
            .oauth
            .as_deref()
            .ok_or_else(|| OAuthFail::request("OAuth is off"))?;
        let now = crate::pki::now().unix_timestamp();
        o.server.register(st.authority.ledger(), &body, &from, now)
    })
    .await;
    match result {
        Ok((client, dropped)) => {
            let mut why = format!("redirect URIs {:?}", client.redirect_uris);
            if !dropped.is_empty() {
                why.push_str(&format!("; left out: {}", dropped.join("; ")));
            }
            state.audit.log(
                step("client_registered", peer.addr)
                    .client(&client.client_id)
                    .reason(why),
            );
            let mut doc = serde_json::json!({
                "client_id": client.client_id,
                "client_id_issued_at": client.created_at,
                "redirect_uris": client.redirect_uris,
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
            });
            if let Some(n) = &client.name {
                doc["client_name"] = serde_json::json!(n);
            }
            json(StatusCode::CREATED, &doc)
        }
        Err(fail) => refused_registration(&state, &peer, &fail),
    }
}

fn refused_registration(state: &AppState, peer: &Peer, fail: &OAuthFail) -> Response {
    state.audit.log(
        step("client_registration_refused", peer.addr)
            .reason(format!("{}: {}", fail.code, fail.description)),
    );
    fail_response(fail)
}

/// `POST /revoke` (RFC 7009): ends the grant of an access or refresh token. Answers 200 for
/// unknown tokens too.
pub async fn revoke(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    if oauth(&state).is_none() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Some(peer) = req.extensions().get::<Arc<Peer>>().cloned() else {
        return StatusCode::FORBIDDEN.into_response();
    };
    let (parts, body) = req.into_parts();
    let mut m = match small_body(body).await.and_then(|b| form(&b)) {
        Ok(m) => m,
        Err(fail) => return refused(&state, &peer, None, &fail),
    };
    let token = m.remove("token");
    let f = token_form(m);
    let document = match document_client(&state, &peer, f.client_id.as_deref()).await {
        Ok(d) => d,
        Err(fail) => return refused(&state, &peer, f.client_id.as_deref(), &fail),
    };
    let st = state.clone();
    let result = blocking(move || {
        let client = authenticate(&st, &parts.headers, &f, document)?;
        let Some(token) = token else {
            return Err(OAuthFail::request("token is missing"));
        };
        let o = st
            .oauth
            .as_deref()
            .ok_or_else(|| OAuthFail::request("OAuth is off"))?;
        let now = crate::pki::now().unix_timestamp();
        Ok(o.server
            .revoke_token(st.authority.ledger(), &client, &token, now)?)
    })
    .await;
    match result {
        Ok(Some(grant)) => {
            state.audit.log(
                step("grant_revoked", peer.addr)
                    .client(&grant.client_id)
                    .holder(&grant.holder.name, &grant.holder.role, &grant.holder.serial)
                    .reason(format!(
                        "grant {}: revoked by the client (RFC 7009)",
                        grant.id
                    )),
            );
            state.conns.cut(&format!("oauth:{}", grant.id));
            if let Some(o) = oauth(&state) {
                o.forget_cached();
            }
            StatusCode::OK.into_response()
        }
        Ok(None) => StatusCode::OK.into_response(),
        Err(fail) => refused(&state, &peer, None, &fail),
    }
}
