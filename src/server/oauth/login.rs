//! The login name: `/authorize` shows the consent page to a browser that presented its client
//! certificate; `/authorize/decide` takes the holder's answer. Both pages forbid framing and
//! scripts; the decision is a POST that must come from the login origin with a CSRF token bound
//! to the request and the certificate.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;

use super::{host_of, oauth, same_authority, small_body, step, OAuthState};
use crate::identity::ConnInfo;
use crate::ledger::oauth::{ClientKind, GrantHolder, OAuthClient};
use crate::oauth::flow::{Authorization, AuthorizeParams, Refusal};
use crate::oauth::pages::{self, ClientView, HolderView};
use crate::oauth::redirect;
use crate::server::state::{AppState, Peer};

/// How long a consent form may be answered.
const CONSENT_TTL: i64 = 600;

/// An HTML answer with the login pages' headers. `form_target`: the redirect URI the consent
/// form's answer will go to (CSP `form-action` also governs the redirect after the POST).
pub(crate) fn html(status: StatusCode, body: String, form_target: Option<&str>) -> Response {
    let mut form_action = "'self'".to_string();
    if let Some(src) = form_target.and_then(redirect::csp_source) {
        form_action.push(' ');
        form_action.push_str(&src);
    }
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

pub(super) fn see_other(to: &str, form_target: Option<&str>) -> Response {
    let mut r = html(
        StatusCode::SEE_OTHER,
        pages::done("Returning to the application…"),
        form_target,
    );
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Whether the request came to the login name (the consent pages are not served elsewhere:
/// their origin is what the decision's Origin check compares with).
pub(crate) fn on_login_name(o: &OAuthState, headers: &HeaderMap, uri: &http::Uri) -> bool {
    host_of(headers, uri).is_some_and(|h| same_authority(&h, &o.server.endpoints.login_authority))
}

fn client_view(c: &OAuthClient) -> ClientView<'_> {
    ClientView {
        name: c.name.as_deref(),
        verified_host: match c.kind {
            ClientKind::Cimd => url::Url::parse(&c.client_id)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string)),
            ClientKind::Preregistered => Some("registered by the operator".into()),
            ClientKind::Dcr => None,
        },
    }
}

/// The roles a holder may grant: theirs and the narrower ones it inherits.
pub(super) fn grantable(state: &AppState, role: &str) -> Vec<String> {
    crate::tls::verifier::current_policy(&state.policy).narrower_roles(role)
}

/// `GET /authorize`.
pub async fn authorize(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let Some(o) = oauth(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(peer) = req.extensions().get::<Arc<Peer>>().cloned() else {
        return StatusCode::FORBIDDEN.into_response();
    };
    if !on_login_name(o, req.headers(), req.uri()) {
        return html(
            StatusCode::NOT_FOUND,
            pages::error("the login page is served on the login name only"),
            None,
        );
    }
    let group = crate::tls::lockout::AddrGroup::from(peer.addr.ip()).to_string();
    if !o.allow("authorize", &group, super::AUTHORIZE_PER_ADDR_MIN) {
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::error("too many requests from this address; try again shortly"),
            None,
        );
    }
    let Ok(Query(p)) = Query::<AuthorizeParams>::try_from_uri(req.uri()) else {
        return html(
            StatusCode::BAD_REQUEST,
            pages::error("malformed authorization request"),
            None,
        );
    };
    let client = match &p.client_id {
        Some(id) => match super::resolve_client(&state, peer.addr, id).await {
            Ok(c) => c,
            Err(fail) => {
                return html(
                    StatusCode::BAD_REQUEST,
                    pages::error(&fail.description),
                    None,
                )
            }
        },
        None => None,
    };
    let audit = |kind: &str| {
        let mut e = step(kind, peer.addr);
        if let Some(c) = &p.client_id {
            e = e.client(c);
        }
        e
    };
    let a = match o.server.check_authorize(client.as_ref(), &p) {
        Ok(a) => a,
        Err(Refusal::Page(why)) => {
            state
                .audit
                .log(audit("authorization_refused").reason(why.clone()));
            return html(StatusCode::BAD_REQUEST, pages::error(&why), None);
        }
        Err(Refusal::Redirect { to, why }) => {
            state.audit.log(audit("authorization_refused").reason(why));
            return see_other(&to, None);
        }
    };
    let Some(conn) = req.extensions().get::<Arc<ConnInfo>>().cloned() else {
        state.audit.log(
            audit("authorization_needs_certificate")
                .reason("the browser presented no client certificate; an approval code is shown"),
        );
        let name = client.as_ref().and_then(|c| c.name.clone());
        return super::approval::page_for(o, &peer, a, name);
    };
    let who = &conn.identity;
    if who.trust.is_some() {
        state.audit.log(
            audit("authorization_refused")
                .who(who)
                .reason("certificates of foreign trusts cannot approve OAuth clients"),
        );
        return html(
            StatusCode::FORBIDDEN,
            pages::error(
                "certificates issued by another CA (a foreign trust) cannot approve OAuth \
                 clients; use a certificate from this server's CA",
            ),
            None,
        );
    }
    let Some(client) = client else {
        return html(
            StatusCode::BAD_REQUEST,
            pages::error("unknown client"),
            None,
        );
    };
    let now = crate::pki::now().unix_timestamp();
    let expires = now + CONSENT_TTL;
    let x5t = peer.x5t.clone().unwrap_or_default();
    let csrf = o.server.csrf(&a, &x5t, expires);
    let roles = grantable(&state, &who.role);
    state
        .audit
        .log(audit("authorization_shown").who(who).reason(format!(
            "redirect to {}",
            redirect::shown_host(&a.redirect_uri)
        )));
    html(
        StatusCode::OK,
        pages::consent(
            &a,
            &client_view(&client),
            &HolderView {
                name: &who.name,
                role: &who.role,
                roles: &roles,
            },
            &csrf,
            expires,
        ),
        Some(&a.redirect_uri),
    )
}

/// The consent form's fields.
#[derive(Debug, Deserialize)]
struct Decision {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    code_challenge: String,
    resource: String,
    scope_role: Option<String>,
    expires: i64,
    csrf: String,
    role: Option<String>,
    decision: String,
}

/// `POST /authorize/decide`.
pub async fn decide(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let Some(o) = oauth(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(peer) = req.extensions().get::<Arc<Peer>>().cloned() else {
        return StatusCode::FORBIDDEN.into_response();
    };
    let bad = |why: &str| {
        state
            .audit
            .log(step("authorization_refused", peer.addr).reason(why.to_string()));
        html(StatusCode::FORBIDDEN, pages::error(why), None)
    };
    if !on_login_name(o, req.headers(), req.uri()) {
        return bad("the consent form is answered on the login name only");
    }
    // A form posted from any other page (another site, a frame) is refused: the Origin must be
    // the login name's, and a browser that says where the request came from must say same-origin.
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    if origin != Some(o.server.endpoints.login.as_str()) {
        return bad(&format!(
            "the consent answer did not come from the consent page (Origin {:?})",
            origin.unwrap_or("absent")
        ));
    }
    if let Some(site) = req.headers().get("sec-fetch-site") {
        if site.as_bytes() != b"same-origin" {
            return bad("the consent answer did not come from the consent page (Sec-Fetch-Site)");
        }
    }
    let Some(conn) = req.extensions().get::<Arc<ConnInfo>>().cloned() else {
        return bad("no client certificate");
    };
    let who = conn.identity.clone();
    if who.trust.is_some() {
        return bad("certificates of foreign trusts cannot approve OAuth clients");
    }
    let body = match small_body(req.into_body()).await {
        Ok(b) => b,
        Err(f) => return bad(&f.description),
    };
    let Ok(d) = serde_urlencoded_form(&body) else {
        return bad("malformed consent answer");
    };
    let a = Authorization {
        client_id: d.client_id,
        redirect_uri: d.redirect_uri,
        state: d.state,
        challenge: d.code_challenge,
        resource: d.resource,
        role: d.scope_role,
    };
    let now = crate::pki::now().unix_timestamp();
    let x5t = peer.x5t.clone().unwrap_or_default();
    if !o.server.csrf_ok(&a, &x5t, d.expires, &d.csrf, now) {
        return bad("the consent form expired or was not issued to this certificate (CSRF)");
    }
    // The client or its redirect may have gone since the page was shown.
    let client = match super::resolve_client(&state, peer.addr, &a.client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return bad("the client is no longer registered"),
        Err(fail) => return bad(&fail.description),
    };
    if redirect::find(&client.redirect_uris, &a.redirect_uri).is_none()
        && !o
            .server
            .config
            .redirect_uris_extra
            .contains(&a.redirect_uri)
    {
        return bad("the redirect URI is no longer registered for this client");
    }
    let audit = |kind: &str| step(kind, peer.addr).client(&a.client_id).who(&who);
    if d.decision != "approve" {
        state
            .audit
            .log(audit("authorization_denied").reason("by the holder (browser certificate)"));
        let to = o.server.error_redirect(
            &a.redirect_uri,
            "access_denied",
            "the holder denied the request",
            a.state.as_deref(),
        );
        return see_other(&to, Some(&a.redirect_uri));
    }
    let result = approve_as(&state, &who, &a, d.role, now).await;
    match result {
        Ok((to, role)) => {
            state.audit.log(
                audit("authorization_approved")
                    .reason(format!("by the holder (browser certificate), role {role}")),
            );
            see_other(&to, Some(&a.redirect_uri))
        }
        Err(why) => bad(&why),
    }
}

/// The holder's approval, from the consent form or an approval code: the certificate must be
/// live and the role one it may grant; stores a code and returns the URL that takes it back to
/// the client, and the role granted.
pub(super) async fn approve_as(
    state: &Arc<AppState>,
    who: &crate::identity::Identity,
    a: &Authorization,
    role: Option<String>,
    now: i64,
) -> Result<(String, String), String> {
    if state.revoked.contains(&who.serial) || who.not_after <= now {
        return Err("the certificate is revoked or expired".into());
    }
    let role = role.unwrap_or_else(|| who.role.clone());
    if !grantable(state, &who.role).contains(&role) {
        return Err("that role is not one the certificate's role includes".into());
    }
    let holder = GrantHolder {
        name: who.name.clone(),
        role: role.clone(),
        cert_role: who.role.clone(),
        serial: who.serial.clone(),
        spiffe_id: who.spiffe_id.clone(),
        not_after: who.not_after,
    };
    let st = state.clone();
    let a2 = a.clone();
    let made = tokio::task::spawn_blocking(move || {
        st.oauth
            .as_deref()
            .map(|o| o.server.approve(st.authority.ledger(), &a2, holder, now))
    })
    .await;
    match made {
        Ok(Some(Ok(to))) => Ok((to, role)),
        Ok(Some(Err(e))) => Err(format!("ledger: {e}")),
        _ => Err("internal error".into()),
    }
}

fn serde_urlencoded_form(body: &[u8]) -> Result<Decision, ()> {
    let mut m = serde_json::Map::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        let value = if k == "expires" {
            serde_json::Value::from(v.parse::<i64>().map_err(|_| ())?)
        } else {
            serde_json::Value::from(v.into_owned())
        };
        if m.insert(k.into_owned(), value).is_some() {
            return Err(());
        }
    }
    serde_json::from_value(serde_json::Value::Object(m)).map_err(|_| ())
}
