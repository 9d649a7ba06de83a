//! Linking a holder's upstream account, over HTTP: `mcp-zt link` starts a link and hands the
//! callback's code back over mTLS (`/link/start`, `/link/finish`); a browser with the
//! holder's certificate lands on `/oauth/callback`. Both finish only for the holder who
//! started the link. `/oauth/upstream-client.json` is mcp-zt's client metadata document for
//! upstream authorization servers that take CIMD. `/link/secret` lets a holder set their own
//! static secret.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{Request, StatusCode};
use serde::{Deserialize, Serialize};

use super::state::AppState;
use crate::identity::{ConnInfo, Identity};
use crate::ledger::uplink::SecretKind;
use crate::oauth::pages;
use crate::upstream::oauth::linker::{
    LinkError, Linker, Redirect, CALLBACK_PATH, CLIENT_DOCUMENT_PATH, COOKIE,
};

/// Largest request body of these endpoints.
const MAX_BODY: usize = 16 * 1024;

/// The routes.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/link/start", post(start))
        .route("/link/finish", post(finish))
        .route("/link/secret", post(set_secret))
        .route(CALLBACK_PATH, get(callback))
        .route("/link/go/{state}", get(go))
        .route(CLIENT_DOCUMENT_PATH, get(document))
}

/// `POST /link/start`'s body.
#[derive(Debug, Serialize, Deserialize)]
pub struct StartBody {
    /// The upstream.
    pub upstream: String,
    /// The loopback port `mcp-zt link` listens on.
    pub port: u16,
    /// Extra scopes (a step-up).
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `POST /link/start`'s answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct StartAnswer {
    /// Where the holder's browser goes.
    pub url: String,
    /// The state the callback brings back.
    pub state: String,
}

/// `POST /link/finish`'s body.
#[derive(Debug, Serialize, Deserialize)]
pub struct FinishBody {
    /// The callback's `state`.
    pub state: String,
    /// The callback's `code`.
    pub code: String,
}

/// `POST /link/secret`'s body.
#[derive(Debug, Serialize, Deserialize)]
pub struct SecretBody {
    /// The upstream.
    pub upstream: String,
    /// `header` or `env`.
    pub kind: SecretKind,
    /// The header's or variable's name.
    pub name: String,
    /// The value.
    pub value: String,
}

fn fail(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

fn link_fail(e: LinkError) -> Response {
    match e {
        LinkError::NotOAuth(_) => fail(StatusCode::NOT_FOUND, e.to_string()),
        LinkError::Refused(_) => fail(StatusCode::FORBIDDEN, e.to_string()),
        _ => fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The holder the request's own certificate names (not a token), still valid.
fn holder(state: &AppState, req: &Request<Body>) -> Result<Identity, &'static str> {
    let Some(conn) = req.extensions().get::<Arc<ConnInfo>>() else {
        return Err("this needs your client certificate");
    };
    let who = &conn.identity;
    if who.oauth.is_some() {
        return Err("this needs your client certificate, not an OAuth token");
    }
    if state.revoked.contains(&who.serial) || crate::pki::now().unix_timestamp() > who.not_after {
        return Err("this certificate is revoked or expired");
    }
    Ok(who.clone())
}

fn linker(state: &AppState) -> Option<&Arc<Linker>> {
    state.linker.as_ref()
}

/// The command-line endpoints take JSON from mcp-zt itself: a form a web page could post
/// (another Content-Type, or a foreign `Origin`) is refused, so no site can act with the
/// certificate a holder installed in their browser.
async fn body_of<T: serde::de::DeserializeOwned>(
    state: &AppState,
    req: Request<Body>,
) -> Result<T, Response> {
    let json = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected application/json",
        ));
    }
    if let Some(origin) = req.headers().get(http::header::ORIGIN) {
        let ok = origin
            .to_str()
            .is_ok_and(|o| state.allowed_origins.iter().any(|a| a == o));
        if !ok {
            return Err(fail(
                StatusCode::FORBIDDEN,
                "requests from web pages are refused here",
            ));
        }
    }
    let bytes: Bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| fail(StatusCode::PAYLOAD_TOO_LARGE, "body too large"))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| fail(StatusCode::BAD_REQUEST, format!("malformed body: {e}")))
}

async fn start(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let Some(l) = linker(&state) else {
        return fail(StatusCode::NOT_FOUND, "no per-holder upstreams here");
    };
    let who = match holder(&state, &req) {
        Ok(w) => w,
        Err(e) => return fail(StatusCode::FORBIDDEN, e),
    };
    let b: StartBody = match body_of(&state, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if b.port == 0
        || b.scopes.len() > 32
        || b.scopes.iter().any(|s| {
            s.is_empty()
                || s.len() > 128
                || !s
                    .bytes()
                    .all(|c| c.is_ascii_graphic() && c != b'"' && c != b'\\')
        })
    {
        return fail(StatusCode::BAD_REQUEST, "malformed port or scopes");
    }
    match l
        .start(&who, &b.upstream, Redirect::Loopback(b.port), &b.scopes)
        .await
    {
        Ok(s) => Json(StartAnswer {
            url: s.url,
            state: s.state,
        })
        .into_response(),
        Err(e) => link_fail(e),
    }
}

async fn finish(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let Some(l) = linker(&state) else {
        return fail(StatusCode::NOT_FOUND, "no per-holder upstreams here");
    };
    let who = match holder(&state, &req) {
        Ok(w) => w,
        Err(e) => return fail(StatusCode::FORBIDDEN, e),
    };
    let b: FinishBody = match body_of(&state, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match l.finish(&who, &b.state, &b.code, None).await {
        Ok(row) => Json(row).into_response(),
        Err(e) => link_fail(e),
    }
}

#[derive(Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn page(status: StatusCode, body: String) -> Response {
    super::oauth::html(status, body, None)
}

async fn callback(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let Some(l) = linker(&state) else {
        return page(
            StatusCode::NOT_FOUND,
            pages::link_error("no per-holder upstreams here"),
        );
    };
    let who = match holder(&state, &req) {
        Ok(w) => w,
        Err(e) => {
            return page(
                StatusCode::FORBIDDEN,
                pages::link_error(&format!("{e}: open the link in a browser that has your mcp-zt certificate, or run `mcp-zt link`")),
            )
        }
    };
    let Ok(Query(p)) = Query::<CallbackParams>::try_from_uri(req.uri()) else {
        return page(
            StatusCode::BAD_REQUEST,
            pages::link_error("malformed callback"),
        );
    };
    if let Some(err) = p.error {
        let why = format!(
            "the upstream refused: {err} {}",
            p.error_description.unwrap_or_default()
        );
        state.audit.log(
            crate::audit::Event::new("upstream_link_refused")
                .who(&who)
                .reason(&why),
        );
        return page(StatusCode::BAD_REQUEST, pages::link_error(&why));
    }
    let (Some(code), Some(st)) = (p.code, p.state) else {
        return page(
            StatusCode::BAD_REQUEST,
            pages::link_error("the callback has no code or state"),
        );
    };
    let cookie = cookie_of(&req);
    match l
        .finish(&who, &st, &code, Some(cookie.as_deref().unwrap_or("")))
        .await
    {
        Ok(row) => page(
            StatusCode::OK,
            pages::done(&format!(
                "{} is linked for {}. You can close this tab and call the tool again.",
                row.upstream, row.holder
            )),
        ),
        Err(e) => page(StatusCode::FORBIDDEN, pages::link_error(&e.to_string())),
    }
}

/// The link cookie the browser sent, if any.
fn cookie_of(req: &Request<Body>) -> Option<String> {
    req.headers()
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// `GET /link/go/STATE`: the link page, opened with the holder's certificate; gives the
/// browser its cookie and sends it on to the upstream's authorization request.
async fn go(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(st): axum::extract::Path<String>,
    req: Request<Body>,
) -> Response {
    let Some(l) = linker(&state) else {
        return page(
            StatusCode::NOT_FOUND,
            pages::link_error("no per-holder upstreams here"),
        );
    };
    let who = match holder(&state, &req) {
        Ok(w) => w,
        Err(e) => {
            return page(
                StatusCode::FORBIDDEN,
                pages::link_error(&format!("{e}: open the link in a browser that has your mcp-zt certificate, or run `mcp-zt link`")),
            )
        }
    };
    match l.go(&who, &st) {
        Ok((to, nonce)) => {
            let mut r = StatusCode::SEE_OTHER.into_response();
            let h = r.headers_mut();
            let cookie = format!(
                "{COOKIE}={nonce}; Path={CALLBACK_PATH}; Max-Age=600; Secure; HttpOnly; SameSite=Lax"
            );
            if let (Ok(loc), Ok(c)) = (
                http::HeaderValue::from_str(&to),
                http::HeaderValue::from_str(&cookie),
            ) {
                h.insert(http::header::LOCATION, loc);
                h.insert(http::header::SET_COOKIE, c);
                h.insert(
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_static("no-store"),
                );
                h.insert(
                    http::header::REFERRER_POLICY,
                    http::HeaderValue::from_static("no-referrer"),
                );
                return r;
            }
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::link_error("the upstream's authorization URL is unusable"),
            )
        }
        Err(e) => page(StatusCode::FORBIDDEN, pages::link_error(&e.to_string())),
    }
}

async fn document(State(state): State<Arc<AppState>>) -> Response {
    match linker(&state).and_then(|l| l.client_document()) {
        Some(doc) => Json(doc).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn set_secret(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let Some(l) = linker(&state) else {
        return fail(StatusCode::NOT_FOUND, "no per-holder secrets here");
    };
    let who = match holder(&state, &req) {
        Ok(w) => w,
        Err(e) => return fail(StatusCode::FORBIDDEN, e),
    };
    let b: SecretBody = match body_of(&state, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let chain = l.chain_of(&who);
    match crate::upstream::oauth::secret::set(
        l,
        &who.name,
        &chain,
        &b.upstream,
        b.kind,
        &b.name,
        b.value.as_bytes(),
        &who.name,
    ) {
        Ok(()) => {
            // The holder's open connection to it restarts with the new value.
            if let Some(hub) = state.hub.get() {
                hub.holder_changed(&b.upstream, &who.name);
            }
            Json(serde_json::json!({ "set": true })).into_response()
        }
        Err(e) => link_fail(e),
    }
}
