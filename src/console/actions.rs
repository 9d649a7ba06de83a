//! The console's actions (POST): issue, revoke, cut sessions, check and apply a policy,
//! revoke OAuth grants. Each one passes [`super::may_act`] first and is audited as the admin.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Request, StatusCode};
use zeroize::Zeroizing;

use super::html::{all, el, form, multiline, table, text, Html};
use super::{acted, gate, html as answer, may_act, secure, Bundle, Viewer};
use crate::pki::build::Reason;
use crate::server::state::AppState;

/// Largest form body (a policy file fits).
const MAX_FORM: usize = 256 * 1024;

type Fields = Vec<(String, Zeroizing<String>)>;

/// The gate, the form, and the action check.
async fn admit(
    state: &AppState,
    req: Request<Body>,
    action: &str,
) -> Result<(Viewer, Fields), Box<Response>> {
    let viewer = gate(state, &req)?;
    let mut headers = req.headers().clone();
    // HTTP/2 carries the authority in the request line, not in a Host header.
    if !headers.contains_key(header::HOST) {
        if let Some(a) = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            headers.insert(header::HOST, a);
        }
    }
    let bytes = axum::body::to_bytes(req.into_body(), MAX_FORM)
        .await
        .map_err(|_| {
            Box::new(answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "form too large".into(),
            ))
        })?;
    let fields: Fields = url::form_urlencoded::parse(&bytes)
        .map(|(k, v)| (k.into_owned(), Zeroizing::new(v.into_owned())))
        .collect();
    let csrf = fields
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str());
    may_act(state, &viewer, &headers, action, csrf)?;
    Ok((viewer, fields))
}

fn field<'a>(f: &'a Fields, k: &str) -> &'a str {
    f.iter()
        .find(|(a, _)| a == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

fn done(viewer: &Viewer, title: &str, body: Html) -> Response {
    answer(
        StatusCode::OK,
        super::html::page(
            title,
            &format!("{} ({})", viewer.who.name, viewer.who.role),
            viewer.access.as_str(),
            body,
        ),
    )
}

fn failed(viewer: &Viewer, why: String) -> Response {
    let mut r = done(viewer, "Not done", el("p", &[("id", "error")], text(why)));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}

/// `POST /console/certs/issue`: a certificate and a PKCS#12 bundle with a generated password,
/// shown once; the bundle is downloaded once, by the same admin certificate.
pub async fn issue(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let (viewer, f) = match admit(&state, req, "/console/certs/issue").await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let (name, role) = (field(&f, "name").to_string(), field(&f, "role").to_string());
    let ttl = match crate::pki::parse_ttl(field(&f, "ttl")) {
        Ok(t) => t,
        Err(e) => return failed(&viewer, format!("lifetime: {e}")),
    };
    let st = state.clone();
    let (n, r) = (name.clone(), role.clone());
    let issued = tokio::task::spawn_blocking(move || {
        st.authority.issue(
            &st.signer(),
            &crate::ca::IssueRequest {
                name: n,
                role: r,
                ttl_secs: ttl,
                out_dir: None,
                sans: Vec::new(),
            },
        )
    })
    .await;
    let issued = match issued {
        Ok(Ok(i)) => i,
        Ok(Err(e)) => return failed(&viewer, e.to_string()),
        Err(e) => return failed(&viewer, e.to_string()),
    };
    acted(
        &state,
        &viewer,
        "certificate_issued",
        format!("{name} ({role}), serial {}", issued.record.serial),
    );
    let password = Zeroizing::new(crate::oauth::crypto::random_token(""));
    let creds = (|| -> Result<Vec<u8>, String> {
        let read = |p: &std::path::Path| crate::fsutil::read(p).map_err(|e| e.to_string());
        let (c, k, a) = (
            Zeroizing::new(read(&issued.cert_path)?),
            Zeroizing::new(read(&issued.key_path)?),
            Zeroizing::new(read(&state.authority.home().ca_cert())?),
        );
        let creds = crate::pki::holder::HolderCredentials::from_pem_parts(&c, &k, &a)
            .map_err(|e| e.to_string())?;
        crate::pki::p12::bundle(&name, &creds, &password).map_err(|e| e.to_string())
    })();
    let bytes = match creds {
        Ok(b) => b,
        Err(e) => return failed(&viewer, format!("issued, but the bundle failed: {e}")),
    };
    let id = crate::oauth::crypto::random_token("b_");
    if let Some(c) = state.console.as_deref() {
        let mut m = c.bundles.lock().unwrap_or_else(|e| e.into_inner());
        let now = crate::pki::now().unix_timestamp();
        m.retain(|_, b| b.until > now);
        m.insert(
            id.clone(),
            Bundle {
                by: viewer.who.serial.clone(),
                file: format!("{name}.p12"),
                bytes: Zeroizing::new(bytes),
                until: now + 600,
            },
        );
    }
    let href = format!("/console/bundle/{id}");
    let body = all([
        el(
            "p",
            &[],
            text(format!(
                "Issued {name} ({role}), serial {}.",
                issued.record.serial
            )),
        ),
        el(
            "p",
            &[],
            all([
                text("Bundle password (shown once): "),
                el("code", &[("id", "password")], text(password.as_str())),
            ]),
        ),
        el(
            "p",
            &[],
            el(
                "a",
                &[("href", &href), ("id", "bundle"), ("download", "")],
                text("Download the PKCS#12 bundle (once, within 10 minutes)"),
            ),
        ),
    ]);
    done(&viewer, "Certificate issued", body)
}

/// `GET /console/bundle/ID`: the bundle, once, to the admin certificate that issued it.
pub async fn bundle(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: Request<Body>,
) -> Response {
    let viewer = match gate(&state, &req) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let taken = state.console.as_deref().and_then(|c| {
        let mut m = c.bundles.lock().unwrap_or_else(|e| e.into_inner());
        let now = crate::pki::now().unix_timestamp();
        m.retain(|_, b| b.until >= now);
        match m.get(&id) {
            Some(b) if b.by == viewer.who.serial => m.remove(&id),
            _ => None,
        }
    });
    let Some(b) = taken.filter(|b| b.until >= crate::pki::now().unix_timestamp()) else {
        return failed(
            &viewer,
            "no such bundle: it was downloaded already, expired, or issued by another certificate"
                .into(),
        );
    };
    let mut r = (StatusCode::OK, b.bytes.to_vec()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pkcs12"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        b.file.replace('"', "")
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    secure(r)
}

/// `POST /console/certs/SERIAL/revoke`: the name typed again confirms.
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Path(serial): Path<String>,
    req: Request<Body>,
) -> Response {
    let action = format!("/console/certs/{serial}/revoke");
    let (viewer, f) = match admit(&state, req, &action).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Ok(Some(rec)) = state.authority.ledger().get(&serial) else {
        return failed(&viewer, "no certificate has this serial".into());
    };
    if field(&f, "confirm") != rec.name {
        return failed(
            &viewer,
            "the name typed does not match: nothing was revoked".into(),
        );
    }
    let reason = <Reason as clap::ValueEnum>::from_str(field(&f, "reason"), true)
        .unwrap_or(Reason::Unspecified);
    let st = state.clone();
    let actor = format!("console ({})", viewer.who.name);
    let s2 = serial.clone();
    let r = tokio::task::spawn_blocking(move || st.revoke(&s2, reason, &actor)).await;
    match r {
        Ok(Ok(records)) => {
            acted(
                &state,
                &viewer,
                "certificate_revoked",
                format!(
                    "{} ({} certificate(s) of the chain), reason {}",
                    rec.name,
                    records.len(),
                    reason.as_str()
                ),
            );
            let href = format!("/console/certs/{serial}");
            done(
                &viewer,
                "Revoked",
                all([
                    el(
                        "p",
                        &[("id", "done")],
                        text(format!("Revoked {} ({}).", rec.name, reason.as_str())),
                    ),
                    el(
                        "div",
                        &[("data-live-sessions", &serial)],
                        table("cert-sessions", &["Address", "Since"], Vec::new()),
                    ),
                    el(
                        "p",
                        &[],
                        el("a", &[("href", &href)], text("Back to the certificate")),
                    ),
                ]),
            )
        }
        Ok(Err(e)) => failed(&viewer, e.to_string()),
        Err(e) => failed(&viewer, e.to_string()),
    }
}

/// `POST /console/sessions/SERIAL/cut`: closes the certificate's connections without revoking.
pub async fn cut(
    State(state): State<Arc<AppState>>,
    Path(serial): Path<String>,
    req: Request<Body>,
) -> Response {
    let action = format!("/console/sessions/{serial}/cut");
    let (viewer, _) = match admit(&state, req, &action).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let n = state.conns.cut(&serial);
    state.sessions.unbind_serial(&serial);
    acted(
        &state,
        &viewer,
        "sessions_cut",
        format!("{n} connection(s) of {serial}"),
    );
    done(
        &viewer,
        "Sessions cut",
        el(
            "p",
            &[("id", "done")],
            text(format!("{n} connection(s) closed.")),
        ),
    )
}

/// `POST /console/access/check`: what a pasted policy would change, per role; then apply or
/// discard.
pub async fn check_policy(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let (viewer, f) = match admit(&state, req, "/console/access/check").await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let text_in = field(&f, "policy").replace("\r\n", "\n");
    let new = match crate::policy::Policy::parse(&text_in) {
        Ok(p) => p,
        Err(e) => return failed(&viewer, format!("the policy is invalid: {e}")),
    };
    let old = state.policy_now();
    let items = super::views::catalog(&state).await;
    let mut rows = Vec::new();
    let roles: std::collections::BTreeSet<&str> = old.roles().chain(new.roles()).collect();
    for role in roles {
        for (kind, name, _) in &items {
            let before = old.permits(role, *kind, name);
            let after = new.permits(role, *kind, name);
            if before != after {
                rows.push(vec![
                    text(role),
                    text(kind.as_str()),
                    text(name),
                    text(if after { "appears" } else { "disappears" }),
                ]);
            }
        }
    }
    for role in old
        .roles()
        .chain(new.roles())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (a, b) = (old.console_access(role), new.console_access(role));
        if a != b {
            rows.push(vec![
                text(role),
                text("console"),
                text(""),
                text(format!(
                    "{} -> {}",
                    a.map_or("none", |x| x.as_str()),
                    b.map_or("none", |x| x.as_str())
                )),
            ]);
        }
    }
    let trust_names: std::collections::BTreeSet<&str> = old
        .trusts()
        .iter()
        .chain(new.trusts())
        .map(|t| t.name.as_str())
        .collect();
    for name in trust_names {
        let (a, b) = (
            old.trusts().iter().find(|t| t.name == name),
            new.trusts().iter().find(|t| t.name == name),
        );
        let change = match (a, b) {
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            (Some(x), Some(y)) if x != y => "changed",
            _ => continue,
        };
        rows.push(vec![text("-"), text("trust"), text(name), text(change)]);
    }
    let changes = if rows.is_empty() {
        el(
            "p",
            &[("id", "nochange")],
            text("No role sees anything differently."),
        )
    } else {
        table("diff", &["Role", "Kind", "Name", "Change"], rows)
    };
    let csrf = state
        .console
        .as_deref()
        .map(|c| c.csrf(&viewer.who.serial, &apply_action(&text_in)))
        .unwrap_or_default();
    let body = all([
        changes,
        form(
            "/console/access/apply",
            &csrf,
            el(
                "textarea",
                &[("name", "policy"), ("hidden", "")],
                multiline(&text_in),
            ),
            "Apply",
            Some("Write policy.toml and reload it now?"),
        ),
        el(
            "p",
            &[],
            el("a", &[("href", "/console/access")], text("Discard")),
        ),
    ]);
    done(&viewer, "Check a change", body)
}

/// The apply form's token names the text that was checked: only that text can be applied.
fn apply_action(text: &str) -> String {
    format!(
        "/console/access/apply#{}",
        crate::oauth::crypto::sha256_hex(text)
    )
}

/// `POST /console/access/apply`: writes policy.toml (atomically) and puts it in force.
pub async fn apply_policy(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    // The form field is read before the check: the token is bound to its hash.
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM).await else {
        return answer(StatusCode::PAYLOAD_TOO_LARGE, "form too large".into());
    };
    let text_in: String = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "policy")
        .map(|(_, v)| v.replace("\r\n", "\n"))
        .unwrap_or_default();
    let req = Request::from_parts(parts, Body::from(bytes));
    let (viewer, _) = match admit(&state, req, &apply_action(&text_in)).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let new = match crate::policy::Policy::parse(&text_in) {
        Ok(p) => p,
        Err(e) => return failed(&viewer, format!("the policy is invalid: {e}")),
    };
    let Some(console) = state.console.clone() else {
        return failed(&viewer, "no console".into());
    };
    // One apply at a time: the file and the policy in force stay the same text.
    let _held = console.applying.lock().await;
    let path = state.authority.home().policy();
    let bytes = text_in.clone().into_bytes();
    let written = tokio::task::spawn_blocking(move || {
        crate::fsutil::write_atomic(&path, &bytes, crate::fsutil::PUBLIC_MODE)
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return failed(&viewer, format!("policy.toml not written: {e}")),
        Err(e) => return failed(&viewer, format!("policy.toml not written: {e}")),
    }
    match state.policy.write() {
        Ok(mut g) => *g = Arc::new(new),
        Err(p) => *p.into_inner() = Arc::new(new),
    }
    acted(
        &state,
        &viewer,
        "policy_reloaded",
        "policy.toml written from the console and put in force".into(),
    );
    done(
        &viewer,
        "Policy applied",
        el(
            "p",
            &[("id", "done")],
            text("policy.toml is written and in force."),
        ),
    )
}

/// `POST /console/oauth/grants/ID/revoke`.
pub async fn revoke_grant(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: Request<Body>,
) -> Response {
    let action = format!("/console/oauth/grants/{id}/revoke");
    let (viewer, _) = match admit(&state, req, &action).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let op = crate::oauth::admin::AdminOp::Revoke {
        grant: Some(id.clone()),
        client: None,
        name: None,
    };
    let now = crate::pki::now().unix_timestamp();
    match crate::oauth::admin::run(state.authority.ledger(), &op, now) {
        Ok(a) => {
            for g in &a.grants {
                state.conns.cut(&format!("oauth:{}", g.id));
            }
            if let Some(o) = state.oauth.as_deref() {
                o.forget_cached();
            }
            acted(&state, &viewer, "grant_revoked", format!("grant {id}"));
            done(
                &viewer,
                "Grant revoked",
                el("p", &[("id", "done")], text(format!("Grant {id} revoked."))),
            )
        }
        Err(e) => failed(&viewer, e.to_string()),
    }
}
