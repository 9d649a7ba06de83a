//! The console's pages (GET): what they show, rendered with escaping by construction.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{Request, StatusCode};

use super::html::{all, el, form, input, multiline, table, text, void, Html};
use super::{gate, html as answer, views, Viewer};
use crate::policy::ConsoleAccess;
use crate::server::state::AppState;

fn render(viewer: &Viewer, title: &str, body: Html) -> Response {
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

/// The query string as pairs.
fn query(req: &Request<Body>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn param(q: &[(String, String)], k: &str) -> String {
    q.iter()
        .find(|(a, _)| a == k)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn csrf(state: &AppState, viewer: &Viewer, action: &str) -> String {
    state
        .console
        .as_deref()
        .map(|c| c.csrf(&viewer.who.serial, action))
        .unwrap_or_default()
}

fn admin(viewer: &Viewer) -> bool {
    viewer.access == ConsoleAccess::Admin
}

fn when(ts: i64) -> Html {
    text(crate::pki::rfc3339(ts))
}

/// `GET /console/`.
pub async fn overview(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let viewer = match gate(&state, &req) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let health = if state.replica.fresh() {
        "in sync with the ledger"
    } else {
        "REVOCATIONS MAY BE STALE: the shared ledger has not been read recently"
    };
    let conns = state.conns.views();
    let ups = views::upstreams(&state).await;
    let refusals = views::recent_refusals(&state, 20).await;
    let body = all([
        el("h2", &[], text("This replica")),
        el(
            "ul",
            &[],
            all([
                el(
                    "li",
                    &[("id", "health")],
                    text(format!(
                        "Ledger: {}; revocations {health} ({} ms since the last read)",
                        if state.authority.ledger().is_shared() {
                            "PostgreSQL (shared)"
                        } else {
                            "sled (this machine)"
                        },
                        state.replica.stale_ms()
                    )),
                ),
                el(
                    "li",
                    &[],
                    text(format!("Open certificate connections: {}", conns.len())),
                ),
                el(
                    "li",
                    &[],
                    text(format!("Revoked serials in force: {}", state.revoked.len())),
                ),
            ]),
        ),
        el("h2", &[], text("Upstreams")),
        table(
            "upstreams",
            &["Name", "Kind", "Connection"],
            ups.iter()
                .map(|u| vec![text(&u.name), text(&u.kind), text(&u.state)])
                .collect(),
        ),
        el("h2", &[], text("Last refusals")),
        table(
            "refusals",
            &["Time", "Event", "Who", "Reason"],
            refusals
                .into_iter()
                .map(|e| vec![text(e.time), text(e.event), text(e.who), text(e.reason)])
                .collect(),
        ),
    ]);
    render(&viewer, "Overview", body)
}

/// `GET /console/certs?q=&status=&role=`.
pub async fn certs(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let viewer = match gate(&state, &req) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let q = query(&req);
    let (needle, status, role) = (param(&q, "q"), param(&q, "status"), param(&q, "role"));
    let now = crate::pki::now().unix_timestamp();
    let records = state.authority.ledger().all().unwrap_or_default();
    let rows: Vec<Vec<Html>> = records
        .iter()
        .filter(|r| needle.is_empty() || r.name.contains(&needle) || r.serial.starts_with(&needle))
        .filter(|r| status.is_empty() || r.status(now).as_str() == status)
        .filter(|r| role.is_empty() || r.role.as_deref() == Some(role.as_str()))
        .map(|r| {
            let href = format!("/console/certs/{}", r.serial);
            vec![
                el("a", &[("href", &href)], text(&r.name)),
                text(r.role.as_deref().unwrap_or("(server)")),
                text(r.status(now).as_str()),
                when(r.not_after),
                text(&r.serial),
            ]
        })
        .collect();
    let policy = state.policy_now();
    let filter = el(
        "form",
        &[("method", "get"), ("action", "/console/certs")],
        all([
            input("Name or serial", "q", &needle),
            input("Status", "status", &status),
            input("Role", "role", &role),
            el("button", &[("type", "submit")], text("Filter")),
        ]),
    );
    let mut body = all([
        filter,
        table(
            "certs",
            &["Name", "Role", "Status", "Expires", "Serial"],
            rows,
        ),
    ]);
    if admin(&viewer) {
        let roles = all(policy
            .roles()
            .map(|r| el("option", &[("value", r)], text(r))));
        body.push(el("h2", &[], text("Issue a certificate")));
        body.push(form(
            "/console/certs/issue",
            &csrf(&state, &viewer, "/console/certs/issue"),
            all([
                input("Name", "name", ""),
                el(
                    "label",
                    &[],
                    all([text("Role "), el("select", &[("name", "role")], roles)]),
                ),
                input("Lifetime", "ttl", "24h"),
            ]),
            "Issue",
            None,
        ));
    }
    render(&viewer, "Certificates", body)
}

/// `GET /console/certs/SERIAL`.
pub async fn cert(
    State(state): State<Arc<AppState>>,
    Path(serial): Path<String>,
    req: Request<Body>,
) -> Response {
    let viewer = match gate(&state, &req) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Ok(Some(r)) = state.authority.ledger().get(&serial) else {
        return render(
            &viewer,
            "No such certificate",
            text("No certificate has this serial."),
        );
    };
    let now = crate::pki::now().unix_timestamp();
    let link = |s: &Option<String>| match s {
        Some(s) => el("a", &[("href", &format!("/console/certs/{s}"))], text(s)),
        None => text("-"),
    };
    let details = el(
        "dl",
        &[],
        all([
            el("dt", &[], text("Name")),
            el("dd", &[("id", "name")], text(&r.name)),
            el("dt", &[], text("Role")),
            el("dd", &[], text(r.role.as_deref().unwrap_or("(server)"))),
            el("dt", &[], text("Status")),
            el("dd", &[("id", "status")], text(r.status(now).as_str())),
            el("dt", &[], text("Valid")),
            el(
                "dd",
                &[],
                all([when(r.not_before), text(" to "), when(r.not_after)]),
            ),
            el("dt", &[], text("SPIFFE ID")),
            el("dd", &[], text(&r.spiffe_id)),
            el("dt", &[], text("Renewed from")),
            el("dd", &[], link(&r.renewed_from)),
            el("dt", &[], text("Renewed by")),
            el("dd", &[], link(&r.superseded_by)),
        ]),
    );
    let sessions: Vec<Vec<Html>> = state
        .conns
        .views()
        .into_iter()
        .filter(|c| c.serial == r.serial)
        .map(|c| vec![text(c.addr), when(c.since)])
        .collect();
    let grants: Vec<Vec<Html>> = state
        .authority
        .ledger()
        .oauth_grants()
        .unwrap_or_default()
        .into_iter()
        .filter(|g| g.holder.name == r.name)
        .map(|g| {
            vec![
                text(&g.id),
                text(&g.client_id),
                text(if g.revoked.is_some() {
                    "revoked"
                } else {
                    "active"
                }),
            ]
        })
        .collect();
    let links: Vec<Vec<Html>> = state
        .linker
        .as_ref()
        .and_then(|l| l.links(Some(&r.name)).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|l| {
            vec![
                text(l.upstream),
                text(l.scopes.join(" ")),
                when(l.expires_at),
            ]
        })
        .collect();
    let mut body = all([
        details,
        el("h2", &[], text("Live sessions")),
        el(
            "div",
            &[("data-live-sessions", &r.serial)],
            table("cert-sessions", &["Address", "Since"], sessions),
        ),
        el("h2", &[], text("OAuth grants")),
        table("grants", &["Grant", "Client", "State"], grants),
        el("h2", &[], text("Linked upstreams")),
        table("links", &["Upstream", "Scopes", "Token expires"], links),
    ]);
    if admin(&viewer) && r.revocation.is_none() {
        let action = format!("/console/certs/{}/revoke", r.serial);
        let reasons = all([
            "unspecified",
            "key-compromise",
            "affiliation-changed",
            "superseded",
            "cessation-of-operation",
        ]
        .iter()
        .map(|x| el("option", &[("value", x)], text(x))));
        body.push(el("h2", &[], text("Revoke")));
        body.push(form(
            &action,
            &csrf(&state, &viewer, &action),
            all([
                el(
                    "label",
                    &[],
                    all([
                        text("Reason "),
                        el("select", &[("name", "reason")], reasons),
                    ]),
                ),
                el(
                    "label",
                    &[],
                    all([
                        text("Type the name to confirm "),
                        void("input", &[("name", "confirm"), ("autocomplete", "off")]),
                    ]),
                ),
            ]),
            "Revoke",
            Some("Revoke this certificate? Its sessions end at once."),
        ));
    }
    render(&viewer, &format!("Certificate {}", r.name), body)
}

/// `GET /console/sessions`.
pub async fn sessions(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let viewer = match gate(&state, &req) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let act = admin(&viewer);
    let rows: Vec<Vec<Html>> = state
        .conns
        .views()
        .into_iter()
        .map(|c| {
            let mut row = vec![
                el(
                    "a",
                    &[("href", &format!("/console/certs/{}", c.serial))],
                    text(&c.name),
                ),
                text(&c.role),
                text(&c.addr),
                when(c.since),
            ];
            if act {
                let action = format!("/console/sessions/{}/cut", c.serial);
                row.push(form(
                    &action,
                    &csrf(&state, &viewer, &action),
                    Html::default(),
                    "Cut",
                    None,
                ));
            }
            row
        })
        .collect();
    let head: &[&str] = if act {
        &["Holder", "Role", "Address", "Since", ""]
    } else {
        &["Holder", "Role", "Address", "Since"]
    };
    let body = el(
        "div",
        &[("data-live-sessions", "")],
        table("sessions", head, rows),
    );
    render(&viewer, "Sessions", body)
}

/// `GET /console/audit?q=&event=`.
pub async fn audit(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let viewer = match gate(&state, &req) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let q = query(&req);
    let (needle, event) = (param(&q, "q"), param(&q, "event"));
    let found = views::search_audit(&state, &needle, &event, 200).await;
    let filter = el(
        "form",
        &[("method", "get"), ("action", "/console/audit")],
        all([
            input("Text", "q", &needle),
            input("Event", "event", &event),
            el("button", &[("type", "submit")], text("Search")),
        ]),
    );
    let body = all([
        el("h2", &[], text("Live")),
        el(
            "ol",
            &[("id", "live"), ("data-stream", "/console/audit/stream")],
            Html::default(),
        ),
        el(
            "h2",
            &[],
            text("Search (log and rotated files, newest first)"),
        ),
        filter,
        el(
            "ol",
            &[("id", "found")],
            all(found
                .into_iter()
                .map(|l| el("li", &[], el("code", &[], text(l))))),
        ),
    ]);
    render(&viewer, "Audit", body)
}

/// `GET /console/access`.
pub async fn access(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let viewer = match gate(&state, &req) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let policy = state.policy_now();
    let items = views::catalog(&state).await;
    let mut body = Html::default();
    for role in policy.roles() {
        let rows: Vec<Vec<Html>> = items
            .iter()
            .map(|(kind, name, provider)| {
                let (ok, why) = policy.decide(role, *kind, name);
                vec![
                    text(kind.as_str()),
                    text(name),
                    text(provider),
                    text(if ok { "allowed" } else { "hidden" }),
                    text(why),
                ]
            })
            .collect();
        body.push(el("h2", &[], text(format!("Role {role}"))));
        body.push(table(
            &format!("role-{role}"),
            &["Kind", "Name", "Provider", "Access", "Decided by"],
            rows,
        ));
    }
    if admin(&viewer) {
        let current = std::fs::read_to_string(state.authority.home().policy()).unwrap_or_default();
        body.push(el("h2", &[], text("Check a change")));
        body.push(form(
            "/console/access/check",
            &csrf(&state, &viewer, "/console/access/check"),
            el(
                "textarea",
                &[("name", "policy"), ("rows", "24"), ("cols", "90")],
                multiline(current),
            ),
            "Check",
            None,
        ));
    }
    render(&viewer, "Access", body)
}

/// `GET /console/upstreams`.
pub async fn upstreams(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let viewer = match gate(&state, &req) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let ups = views::upstreams(&state).await;
    let body = table(
        "upstreams",
        &["Name", "Kind", "Connection", "Exposed as", "Tools"],
        ups.into_iter()
            .map(|u| {
                vec![
                    text(u.name),
                    text(u.kind),
                    text(u.state),
                    text(u.prefix),
                    all(u.tools.into_iter().map(|(t, d)| {
                        el(
                            "div",
                            &[("class", "tool")],
                            all([el("b", &[], text(t)), text(" "), text(d)]),
                        )
                    })),
                ]
            })
            .collect(),
    );
    render(&viewer, "Upstreams", body)
}

/// `GET /console/oauth`.
pub async fn oauth(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let viewer = match gate(&state, &req) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let ledger = state.authority.ledger();
    let clients = table(
        "clients",
        &["Client", "Name", "Kind"],
        ledger
            .oauth_clients()
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                vec![
                    text(&c.client_id),
                    text(c.name.as_deref().unwrap_or("")),
                    text(format!("{:?}", c.kind).to_lowercase()),
                ]
            })
            .collect(),
    );
    let act = admin(&viewer);
    let grants = table(
        "grants",
        &["Grant", "Holder", "Client", "State", ""],
        ledger
            .oauth_grants()
            .unwrap_or_default()
            .into_iter()
            .map(|g| {
                let action = format!("/console/oauth/grants/{}/revoke", g.id);
                vec![
                    text(&g.id),
                    text(&g.holder.name),
                    text(&g.client_id),
                    text(if g.revoked.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }),
                    if act && g.revoked.is_none() {
                        form(
                            &action,
                            &csrf(&state, &viewer, &action),
                            Html::default(),
                            "Revoke",
                            None,
                        )
                    } else {
                        Html::default()
                    },
                ]
            })
            .collect(),
    );
    let body = all([
        el("h2", &[], text("Clients")),
        clients,
        el("h2", &[], text("Grants")),
        grants,
    ]);
    render(&viewer, "OAuth", body)
}
