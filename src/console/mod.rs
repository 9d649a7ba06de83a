//! The browser console (`serve --console`): certificates, sessions, audit, per-role access,
//! upstreams and OAuth grants, at `/console/`.
//!
//! The admin's client certificate is the only credential: every request is checked against
//! the certificate of its own connection (revocation included), and the role's `console`
//! access in the policy (`read` or `admin`). There is no cookie and no session to steal.
//! Browsers attach client certificates to cross-site requests too, so every action is a POST
//! that needs a CSRF token bound to the certificate serial and the action, an `Origin` of the
//! console itself (and `Sec-Fetch-Site: same-origin` when sent). Pages are server-rendered
//! with escaping by construction ([`html`]); the script is one file served from the binary,
//! for live updates and confirmations, and the pages read without it.

mod actions;
pub mod html;
mod live;
mod pages;
mod views;

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::{header, HeaderMap, HeaderValue, Request, StatusCode};

use crate::identity::{ConnInfo, Identity};
use crate::policy::ConsoleAccess;
use crate::server::state::AppState;

/// How long a CSRF token is good for.
const CSRF_TTL: i64 = 3600;

/// The console's own state.
pub struct Console {
    /// Keys the CSRF tokens (random per process: a restart asks for a page reload).
    csrf_key: aws_lc_rs::hmac::Key,
    /// Bundles issued and not downloaded yet: id → (issuing serial, file name, bytes, until).
    bundles: std::sync::Mutex<std::collections::HashMap<String, Bundle>>,
    /// When each refused serial was last audited (one line a minute per certificate).
    refusals: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    /// Held while a policy is written and put in force.
    pub(crate) applying: tokio::sync::Mutex<()>,
}

struct Bundle {
    by: String,
    file: String,
    bytes: zeroize::Zeroizing<Vec<u8>>,
    until: i64,
}

impl Console {
    /// A console with a fresh CSRF key.
    pub fn new() -> Result<Console, String> {
        let mut raw = [0u8; 32];
        aws_lc_rs::rand::fill(&mut raw).map_err(|_| "no random key for the console")?;
        Ok(Console {
            csrf_key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &raw),
            bundles: Default::default(),
            refusals: Default::default(),
            applying: Default::default(),
        })
    }

    /// Whether a refusal of `serial` at `now` should be audited (the first in a minute).
    fn first_refusal(&self, serial: &str, now: i64) -> bool {
        let mut m = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > 10_000 {
            m.retain(|_, t| now - *t < 60);
        }
        match m.get(serial) {
            Some(t) if now - *t < 60 => false,
            _ => {
                m.insert(serial.to_string(), now);
                true
            }
        }
    }

    /// A CSRF token for `serial` posting to `action`.
    pub fn csrf(&self, serial: &str, action: &str) -> String {
        let until = crate::pki::now().unix_timestamp() + CSRF_TTL;
        let mac = aws_lc_rs::hmac::sign(
            &self.csrf_key,
            format!("{serial}\n{action}\n{until}").as_bytes(),
        );
        format!("{until}.{}", hex::encode(mac.as_ref()))
    }

    /// Whether `token` was made for `serial` posting to `action` and is still good.
    pub fn csrf_ok(&self, serial: &str, action: &str, token: &str) -> bool {
        let Some((until, mac)) = token.split_once('.') else {
            return false;
        };
        let Ok(until_n) = until.parse::<i64>() else {
            return false;
        };
        if until_n < crate::pki::now().unix_timestamp() {
            return false;
        }
        let Ok(mac) = hex::decode(mac) else {
            return false;
        };
        aws_lc_rs::hmac::verify(
            &self.csrf_key,
            format!("{serial}\n{action}\n{until}").as_bytes(),
            &mac,
        )
        .is_ok()
    }
}

/// Who is using the console, and how far they may go.
#[derive(Clone)]
pub struct Viewer {
    /// Their certificate's identity.
    pub who: Identity,
    /// `read` or `admin`.
    pub access: ConsoleAccess,
}

/// The routes, under `/console/`.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/console", get(|| async { redirect("/console/") }))
        .route("/console/", get(pages::overview))
        .route("/console/certs", get(pages::certs))
        .route("/console/certs/{serial}", get(pages::cert))
        .route("/console/certs/issue", post(actions::issue))
        .route("/console/certs/{serial}/revoke", post(actions::revoke))
        .route("/console/bundle/{id}", get(actions::bundle))
        .route("/console/sessions", get(pages::sessions))
        .route("/console/sessions.json", get(live::sessions_json))
        .route("/console/sessions/{serial}/cut", post(actions::cut))
        .route("/console/audit", get(pages::audit))
        .route("/console/audit/stream", get(live::audit_stream))
        .route("/console/access", get(pages::access))
        .route("/console/access/check", post(actions::check_policy))
        .route("/console/access/apply", post(actions::apply_policy))
        .route("/console/upstreams", get(pages::upstreams))
        .route("/console/oauth", get(pages::oauth))
        .route(
            "/console/oauth/grants/{id}/revoke",
            post(actions::revoke_grant),
        )
        .route(
            "/console/static/console.js",
            get(|| async { asset("text/javascript", JS) }),
        )
        .route(
            "/console/static/console.css",
            get(|| async { asset("text/css", CSS) }),
        )
}

const JS: &str = include_str!("console.js");
const CSS: &str = include_str!("console.css");

fn asset(kind: &'static str, body: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    secure(r)
}

fn redirect(to: &'static str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    secure(r)
}

/// The console's headers: no framing, no inline script, no referrer, no caching.
pub fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// An HTML answer.
pub fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(r)
}

/// A page that says why the console is closed to this browser.
fn refusal(status: StatusCode, title: &str, why: &str) -> Response {
    use html::{el, text};
    let body = html::all([
        html::Html::raw("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"),
        html::Html::raw("<link rel=\"stylesheet\" href=\"/console/static/console.css\">"),
        el("title", &[], text(format!("{title} · mcp-zt console"))),
        html::Html::raw("</head><body><main>"),
        el("h1", &[], text(title)),
        el("p", &[("id", "why")], text(why)),
        html::Html::raw("</main></body></html>\n"),
    ]);
    html(status, body.into_string())
}

/// Checks the request's own certificate and the role's console access; `Err` is the page to
/// answer. With OAuth on, the console answers on the login name only (the name whose handshake
/// asks browsers for a certificate).
pub fn gate(state: &AppState, req: &Request<Body>) -> Result<Viewer, Box<Response>> {
    if let Some(o) = state.oauth.as_deref() {
        if !crate::server::oauth::on_login_name(o, req.headers(), req.uri()) {
            return Err(Box::new(refusal(
                StatusCode::NOT_FOUND,
                "Not here",
                "The console is served on the login name.",
            )));
        }
    }
    let Some(conn) = req.extensions().get::<Arc<ConnInfo>>() else {
        return Err(Box::new(refusal(
            StatusCode::UNAUTHORIZED,
            "A client certificate is needed",
            "The mcp-zt console signs you in with your client certificate, and this browser \
             presented none. Import your certificate (the PKCS#12 bundle of `mcp-zt issue \
             --p12` or `mcp-zt export --p12`) into the browser, then reload.",
        )));
    };
    let who = conn.identity.clone();
    let now = crate::pki::now().unix_timestamp();
    let refused = |why: String| {
        if state
            .console
            .as_deref()
            .is_some_and(|c| c.first_refusal(&who.serial, now))
        {
            state.audit.log(
                crate::audit::Event::new("console_refused")
                    .peer(conn.peer)
                    .who(&who)
                    .reason(&why),
            );
        }
        Box::new(refusal(
            StatusCode::FORBIDDEN,
            "No console for this certificate",
            &why,
        ))
    };
    if who.oauth.is_some() {
        return Err(refused("OAuth tokens do not open the console".into()));
    }
    if state.revoked.contains(&who.serial) {
        state.conns.cut(&who.serial);
        return Err(refused("this certificate is revoked".into()));
    }
    if now > who.not_after {
        return Err(refused("this certificate has expired".into()));
    }
    if who.trust.is_some() {
        // A foreign CA's certificate could otherwise issue mcp-zt certificates and rewrite
        // the policy (its own trust entry included).
        return Err(refused(
            "certificates of foreign trusts cannot open the console".into(),
        ));
    }
    let access = state.policy_now().console_access(&who.role);
    match access {
        Some(access) => Ok(Viewer { who, access }),
        None => Err(refused(format!(
            "role {:?} has no console access: the policy grants it with console = \"read\" or \"admin\" in [roles.{}]",
            who.role, who.role
        ))),
    }
}

/// Checks an action: admin access, the request from the console's own page (`Origin`,
/// `Sec-Fetch-Site`), and the CSRF token made for this certificate and `action`.
pub fn may_act(
    state: &AppState,
    viewer: &Viewer,
    headers: &HeaderMap,
    action: &str,
    csrf: Option<&str>,
) -> Result<(), Box<Response>> {
    let refuse = |why: &str| {
        state.audit.log(
            crate::audit::Event::new("console_action_refused")
                .who(&viewer.who)
                .item(action)
                .reason(why),
        );
        Box::new(refusal(StatusCode::FORBIDDEN, "Refused", why))
    };
    if viewer.access != ConsoleAccess::Admin {
        return Err(refuse(
            "this role may read the console, not act (console = \"read\")",
        ));
    }
    // With `Referrer-Policy: no-referrer` a browser sends `Origin: null` on a form POST, so
    // the browser's own `Sec-Fetch-Site` (which no page can set) decides when it is sent; a
    // client without it must name the console's origin.
    let site = headers.get("sec-fetch-site").map(|v| v.as_bytes());
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
    let own = |o: &str| host.is_some_and(|h| o == format!("https://{h}"));
    let same_page = match (site, origin) {
        (Some(b"same-origin"), Some(o)) => o == "null" || own(o),
        (Some(_), _) => false,
        (None, Some(o)) => own(o),
        (None, None) => false,
    };
    if !same_page {
        return Err(refuse(
            "the request did not come from the console's own page",
        ));
    }
    let console = state.console.as_deref();
    let ok = match (console, csrf) {
        (Some(c), Some(t)) => c.csrf_ok(&viewer.who.serial, action, t),
        _ => false,
    };
    if !ok {
        return Err(refuse(
            "missing or stale form token: reload the page and try again",
        ));
    }
    Ok(())
}

/// An audit event of a console action, as the admin.
pub fn acted(state: &AppState, viewer: &Viewer, kind: &str, what: String) {
    let mut e = crate::audit::Event::new(kind).who(&viewer.who).reason(what);
    e.via = Some("console".into());
    state.audit.log(e);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_bound_to_serial_action_and_time() {
        let c = Console::new().expect("console");
        let t = c.csrf("aa01", "/console/certs/issue");
        assert!(c.csrf_ok("aa01", "/console/certs/issue", &t));
        assert!(!c.csrf_ok("bb02", "/console/certs/issue", &t));
        assert!(!c.csrf_ok("aa01", "/console/access/apply", &t));
        for bad in ["", "x", "1.zz", "9999999999.00", "abc.def"] {
            assert!(!c.csrf_ok("aa01", "/console/certs/issue", bad), "{bad}");
        }
        // A token whose time has passed, with a genuine MAC.
        let past = crate::pki::now().unix_timestamp() - 1;
        let mac = aws_lc_rs::hmac::sign(
            &c.csrf_key,
            format!("aa01\n/console/certs/issue\n{past}").as_bytes(),
        );
        let stale = format!("{past}.{}", hex::encode(mac.as_ref()));
        assert!(!c.csrf_ok("aa01", "/console/certs/issue", &stale));
        // Another process's key makes other tokens.
        let other = Console::new().expect("console");
        assert!(!other.csrf_ok("aa01", "/console/certs/issue", &t));
    }
}
