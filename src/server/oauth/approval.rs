//! Approval from the command line, for holders whose browser has no certificate: the login page
//! shows a one-time code (8 characters, 5 minutes, single use) and waits; the holder runs
//! `mcp-zt oauth approve CODE` with their certificate, sees what is asked, confirms; the page
//! then continues to the client on its own.
//!
//! The code is for typing; the page polls with a separate 256-bit handle, so knowing the code
//! (it is on the screen) never lets another browser collect the answer. The risk this cannot
//! remove is phishing: someone who starts a flow and talks a holder into approving their code
//! gets tokens as that holder. The command therefore shows the client and where the answer goes
//! and asks before approving.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use serde::{Deserialize, Serialize};

use super::login::{grantable, html, on_login_name, see_other};
use super::{json, oauth, small_body, step, OAuthState};
use crate::identity::ConnInfo;
use crate::oauth::flow::Authorization;
use crate::oauth::pages;
use crate::oauth::redirect;
use crate::server::state::{AppState, Peer};

/// How long a code may be approved.
const TTL: Duration = Duration::from_secs(300);
/// Most approvals waiting at once.
const MAX_PENDING: usize = 10_000;
/// Code characters: no 0/O, 1/I/L, U (read aloud and typed without confusion).
const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTVWXYZ23456789";
/// Most approvals waiting for one address group.
const PER_GROUP: usize = 20;
/// Polls of waiting pages per address and minute (a page polls every 2 s).
const POLLS_PER_MIN: u32 = 600;
/// Code lookups per address and minute (codes are 39 bits; this makes guessing hopeless).
const LOOKUPS_PER_MIN: u32 = 30;

struct Pending {
    /// The address group of the browser that asked (a group may hold only so many).
    group: String,
    handle: String,
    auth: Authorization,
    client_name: Option<String>,
    created: Instant,
    /// Set once decided: where the waiting page goes.
    outcome: Option<String>,
}

/// Approvals waiting for their code.
#[derive(Default)]
pub struct Approvals {
    by_code: Mutex<HashMap<String, Pending>>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Approvals(..)")
    }
}

fn new_code() -> String {
    let mut out = String::new();
    while out.len() < 8 {
        let mut b = [0u8; 16];
        if aws_lc_rs::rand::fill(&mut b).is_err() {
            panic!("the system random number generator failed");
        }
        // Rejection sampling: 240 is the largest multiple of the alphabet's size below 256.
        for x in b.iter().filter(|x| **x < 240) {
            if out.len() < 8 {
                out.push(char::from(ALPHABET[usize::from(*x) % ALPHABET.len()]));
            }
        }
    }
    out
}

/// A code as typed: upper case, without spaces or dashes.
fn normal(code: &str) -> String {
    code.chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

impl Approvals {
    /// A new waiting approval: (code, handle).
    pub fn create(
        &self,
        group: &str,
        auth: Authorization,
        client_name: Option<String>,
    ) -> (String, String) {
        let mut map = self.by_code.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, p| p.created.elapsed() < TTL);
        // One address group cannot crowd out everybody else's approvals: its oldest goes.
        let mine: Vec<(String, Instant)> = map
            .iter()
            .filter(|(_, p)| p.group == group)
            .map(|(c, p)| (c.clone(), p.created))
            .collect();
        if mine.len() >= PER_GROUP {
            if let Some((oldest, _)) = mine.iter().min_by_key(|(_, t)| *t) {
                map.remove(oldest);
            }
        }
        if map.len() >= MAX_PENDING {
            // Oldest first out: a flood of page loads cannot keep new ones from working.
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, p)| p.created)
                .map(|(c, _)| c.clone())
            {
                map.remove(&oldest);
            }
        }
        let mut code = new_code();
        while map.contains_key(&code) {
            code = new_code();
        }
        let handle = crate::oauth::crypto::random_token("");
        map.insert(
            code.clone(),
            Pending {
                group: group.to_string(),
                handle: handle.clone(),
                auth,
                client_name,
                created: Instant::now(),
                outcome: None,
            },
        );
        (code, handle)
    }

    fn waiting(&self, code: &str) -> Option<(Authorization, Option<String>)> {
        let map = self.by_code.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&normal(code))
            .filter(|p| p.created.elapsed() < TTL && p.outcome.is_none())
            .map(|p| (p.auth.clone(), p.client_name.clone()))
    }

    /// Records the decision (once): where the waiting page goes.
    fn decide(&self, code: &str, to: String) -> bool {
        let mut map = self.by_code.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(&normal(code)) {
            Some(p) if p.outcome.is_none() && p.created.elapsed() < TTL => {
                p.outcome = Some(to);
                true
            }
            _ => false,
        }
    }

    /// The waiting page's poll: `Some(Some(url))` decided (and forgotten), `Some(None)` still
    /// waiting, `None` unknown or expired.
    fn poll(&self, handle: &str) -> Option<Option<String>> {
        let mut map = self.by_code.lock().unwrap_or_else(|p| p.into_inner());
        let code = map
            .iter()
            .find(|(_, p)| crate::oauth::crypto::same(&p.handle, handle))
            .map(|(c, _)| c.clone())?;
        let p = map.get(&code)?;
        if p.outcome.is_none() && p.created.elapsed() >= TTL {
            map.remove(&code);
            return None;
        }
        match p.outcome.clone() {
            Some(to) => {
                map.remove(&code);
                Some(Some(to))
            }
            None => Some(None),
        }
    }
}

/// The no-certificate page with a fresh code for `a`.
pub(super) fn page_for(
    o: &OAuthState,
    peer: &Peer,
    a: Authorization,
    client_name: Option<String>,
) -> Response {
    let group = crate::tls::lockout::AddrGroup::from(peer.addr.ip()).to_string();
    let (code, handle) = o.approvals.create(&group, a, client_name);
    html(
        StatusCode::FORBIDDEN,
        pages::no_certificate(&o.server.endpoints.login, &code, &handle),
        None,
    )
}

/// The waiting page's poll target.
#[derive(Deserialize)]
pub struct Wait {
    h: String,
}

/// `GET /authorize/wait?h=HANDLE`.
pub async fn wait(
    State(state): State<Arc<AppState>>,
    query: Query<Wait>,
    req: Request<Body>,
) -> Response {
    let Some(o) = oauth(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !on_login_name(o, req.headers(), req.uri()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    if let Some(peer) = req.extensions().get::<Arc<Peer>>() {
        let group = crate::tls::lockout::AddrGroup::from(peer.addr.ip()).to_string();
        if !o.allow("wait", &group, POLLS_PER_MIN) {
            return StatusCode::TOO_MANY_REQUESTS.into_response();
        }
    }
    match o.approvals.poll(&query.h) {
        Some(Some(to)) => see_other(&to, None),
        Some(None) => html(StatusCode::OK, pages::waiting(&query.h), None),
        None => html(
            StatusCode::GONE,
            pages::error(
                "this approval expired or was already used; start again from the application",
            ),
            None,
        ),
    }
}

/// What `oauth approve` shows before asking.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApprovalInfo {
    /// The client.
    pub client_id: String,
    /// Its name, if it gave one.
    pub client_name: Option<String>,
    /// Where the answer goes.
    pub redirect_host: String,
    /// The holder (from the presented certificate).
    pub holder: String,
    /// The roles the holder may grant (their own first).
    pub roles: Vec<String>,
    /// The role the client asked for, if any.
    pub requested_role: Option<String>,
}

/// The command's decision.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApprovalDecision {
    /// `approve` or `deny`.
    pub decision: String,
    /// The role to grant (default: the certificate's).
    pub role: Option<String>,
}

fn cert_of(req: &Request<Body>) -> Option<Arc<ConnInfo>> {
    req.extensions().get::<Arc<ConnInfo>>().cloned()
}

fn refuse(status: StatusCode, why: &str) -> Response {
    json(status, &serde_json::json!({"error": why}))
}

/// OAuth, the peer and the presented certificate of a code request.
type Entry<'s> = (&'s OAuthState, Arc<Peer>, Arc<ConnInfo>);

/// What both code endpoints need first: OAuth on, the peer within its lookup budget, and a
/// certificate of mcp-zt's own CA.
fn entry<'s>(state: &'s AppState, req: &Request<Body>) -> Result<Entry<'s>, Box<Response>> {
    let Some(o) = oauth(state) else {
        return Err(Box::new(StatusCode::NOT_FOUND.into_response()));
    };
    let Some(peer) = req.extensions().get::<Arc<Peer>>().cloned() else {
        return Err(Box::new(StatusCode::FORBIDDEN.into_response()));
    };
    let Some(conn) = cert_of(req) else {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "present the holder's client certificate",
        )));
    };
    if conn.identity.trust.is_some() {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "certificates of foreign trusts cannot approve",
        )));
    }
    // Counted once a certificate is presented: requests without one from the same address
    // cannot use up a holder's lookups.
    let group = crate::tls::lockout::AddrGroup::from(peer.addr.ip()).to_string();
    if !o.allow("approval", &group, LOOKUPS_PER_MIN) {
        return Err(Box::new(refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "too many code lookups; wait a minute",
        )));
    }
    Ok((o, peer, conn))
}

/// `GET /authorize/code/{CODE}`: what is asked (certificate required).
pub async fn info(
    State(state): State<Arc<AppState>>,
    Path(code): Path<String>,
    req: Request<Body>,
) -> Response {
    let (o, peer, conn) = match entry(&state, &req) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    let Some((a, client_name)) = o.approvals.waiting(&code) else {
        state.audit.log(
            step("authorization_refused", peer.addr)
                .who(&conn.identity)
                .reason("approval code unknown, expired or used"),
        );
        return refuse(
            StatusCode::NOT_FOUND,
            "no authorization waits for this code (wrong, expired or used)",
        );
    };
    json(
        StatusCode::OK,
        &ApprovalInfo {
            client_id: a.client_id.clone(),
            client_name,
            redirect_host: redirect::shown_host(&a.redirect_uri),
            holder: format!("{} (role {})", conn.identity.name, conn.identity.role),
            roles: grantable(&state, &conn.identity.role),
            requested_role: a.role.clone(),
        },
    )
}

/// `POST /authorize/code/{CODE}` (JSON [`ApprovalDecision`], certificate required).
pub async fn decide(
    State(state): State<Arc<AppState>>,
    Path(code): Path<String>,
    req: Request<Body>,
) -> Response {
    let (o, peer, conn) = match entry(&state, &req) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    // Not from a web page: a JSON body (no form can send one cross-site without a preflight,
    // which is refused) and no foreign Origin.
    let json_body = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let origin_ok = req
        .headers()
        .get(header::ORIGIN)
        .is_none_or(|o2| o2.as_bytes() == o.server.endpoints.login.as_bytes());
    if !json_body || !origin_ok {
        return refuse(
            StatusCode::FORBIDDEN,
            "the decision must come from mcp-zt oauth approve",
        );
    }
    let who = conn.identity.clone();
    let body = match small_body(req.into_body()).await {
        Ok(b) => b,
        Err(f) => return refuse(StatusCode::BAD_REQUEST, &f.description),
    };
    let Ok(d) = serde_json::from_slice::<ApprovalDecision>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "malformed decision");
    };
    let Some((a, _)) = o.approvals.waiting(&code) else {
        return refuse(
            StatusCode::NOT_FOUND,
            "no authorization waits for this code (wrong, expired or used)",
        );
    };
    let audit = |kind: &str| step(kind, peer.addr).client(&a.client_id).who(&who);
    let now = crate::pki::now().unix_timestamp();
    if d.decision != "approve" {
        let to = o.server.error_redirect(
            &a.redirect_uri,
            "access_denied",
            "the holder denied the request",
            a.state.as_deref(),
        );
        if !o.approvals.decide(&code, to) {
            return refuse(StatusCode::CONFLICT, "this code was decided meanwhile");
        }
        state.audit.log(
            audit("authorization_denied").reason("by the holder (command line, approval code)"),
        );
        return json(StatusCode::OK, &serde_json::json!({"decision": "denied"}));
    }
    let (to, role) = match super::login::approve_as(&state, &who, &a, d.role, now).await {
        Ok(done) => done,
        Err(why) => return refuse(StatusCode::FORBIDDEN, &why),
    };
    if !o.approvals.decide(&code, to) {
        return refuse(StatusCode::CONFLICT, "this code was decided meanwhile");
    }
    state
        .audit
        .log(audit("authorization_approved").reason(format!(
            "by the holder (command line, approval code), role {role}"
        )));
    json(
        StatusCode::OK,
        &serde_json::json!({"decision": "approved", "role": role}),
    )
}
