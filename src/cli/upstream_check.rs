//! `mcp-zt upstream check [NAME]`: connects to the upstreams, prints what each offers and what
//! every role of the policy would see through mcp-zt; refuses (exit 1) on clashing names.

use anyhow::{bail, Result};
use serde_json::json;

use crate::ca::Home;
use crate::identity::Identity;
use crate::mcp::provider::Items;
use crate::policy::rules::Kind;
use crate::policy::Policy;
use crate::upstream::config::{self, Upstream};
use crate::upstream::{check_names, conn};

/// Connects to `u` once (as a stand-in identity for per-identity upstreams) and lists it.
async fn probe(u: &Upstream) -> Result<Items, String> {
    if let (
        Some(o),
        config::Transport::Http {
            url,
            ca,
            client_cert,
            ..
        },
    ) = (u.oauth(), &u.transport)
    {
        // Nothing can be listed without a holder's token: check what linking needs.
        let own = conn::http_client(ca.as_deref(), client_cert.as_ref())?;
        let http = crate::upstream::oauth::http::OAuthHttp::new(url, own, o.allow_private)?;
        return Err(match http.discover().await {
            Ok(d) => format!(
                "needs each holder's own login (auth = \"oauth\"): discovery works (authorization server {}, registration: {}); its tools are listed once a holder has linked",
                d.server.issuer,
                if o.client_id.is_some() {
                    "pre-registered client"
                } else if d.server.client_id_metadata_document_supported {
                    "client metadata document (with serve --public-url) or dynamic"
                } else if d.server.registration_endpoint.is_some() {
                    "dynamic"
                } else {
                    "none offered: set oauth_client_id"
                }
            ),
            Err(e) => format!("needs each holder's own login (auth = \"oauth\"), and discovery failed: {e}"),
        });
    }
    let checker = Identity::stand_in("mcp-zt-check");
    let (tx, _rx) = tokio::sync::mpsc::channel(crate::mcp::provider::HUB_QUEUE);
    let (inst, _) = conn::connect(
        u,
        u.identity_bound().then_some(&checker),
        tx,
        None,
        conn::HolderExtras::default(),
    )
    .await?;
    let items = inst.items().await;
    // Waits for the child to exit before the next upstream (and before mcp-zt exits): a child
    // left behind would find its pipes closed mid-write (a Node server's `write EPIPE`).
    inst.close();
    let most =
        conn::DRAIN + crate::upstream::child::STOP_GRACE * 2 + std::time::Duration::from_secs(2);
    if tokio::time::timeout(most, inst.stopped()).await.is_err() {
        eprintln!(
            "mcp-zt: upstream {:?}: its child did not stop within {most:?}",
            u.name
        );
    }
    items.map(|i| (*i).clone())
}

/// Runs the check; prints text or JSON on stdout.
pub fn run(home: &Home, policy: &Policy, name: Option<&str>, as_json: bool) -> Result<()> {
    let cfg = config::load(home.dir())?;
    let chosen: Vec<&Upstream> = match name {
        Some(n) => match cfg.get(n) {
            Some(u) => vec![u],
            None => bail!(
                "no upstream named {n:?}; configured: {}",
                cfg.list
                    .iter()
                    .map(|u| u.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        None => cfg.list.iter().collect(),
    };
    if chosen.is_empty() {
        bail!("no upstreams configured: add one with mcp-zt upstream add");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let results: Vec<(String, String, Result<Items, String>)> = rt.block_on(async {
        let mut out = Vec::new();
        for u in &chosen {
            out.push((u.name.clone(), u.prefix.clone(), probe(u).await));
        }
        out
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));

    let builtin = crate::mcp::builtin::items();
    let mut offers: Vec<(String, String, &Items)> =
        vec![("builtin".into(), String::new(), &builtin)];
    for (n, p, r) in &results {
        if let Ok(items) = r {
            offers.push((n.clone(), p.clone(), items));
        }
    }
    let report = check_names(&offers);

    let mut roles = Vec::new();
    for role in policy.roles() {
        let mut tools = Vec::new();
        let mut prompts = Vec::new();
        let mut resources = Vec::new();
        for (_, prefix, items) in &offers {
            for t in &items.tools {
                let n = format!("{prefix}{}", t.name);
                if policy.permits(role, Kind::Tool, &n) {
                    tools.push(n);
                }
            }
            for p in &items.prompts {
                let n = format!("{prefix}{}", p.name);
                if policy.permits(role, Kind::Prompt, &n) {
                    prompts.push(n);
                }
            }
            for r in &items.resources {
                if policy.permits(role, Kind::Resource, &r.uri) {
                    resources.push(r.uri.clone());
                }
            }
            for r in &items.templates {
                if policy.permits(role, Kind::Resource, &r.uri_template) {
                    resources.push(r.uri_template.clone());
                }
            }
        }
        roles.push((role.to_string(), tools, prompts, resources));
    }

    if as_json {
        let ups: Vec<_> = results
            .iter()
            .map(|(n, p, r)| match r {
                Ok(i) => json!({"name": n, "prefix": p, "ok": true,
                    "tools": i.tools.iter().map(|t| t.name.to_string()).collect::<Vec<_>>(),
                    "prompts": i.prompts.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
                    "resources": i.resources.iter().map(|t| t.uri.clone()).collect::<Vec<_>>(),
                    "resource_templates": i.templates.iter().map(|t| t.uri_template.clone()).collect::<Vec<_>>()}),
                Err(e) => json!({"name": n, "prefix": p, "ok": false, "error": e}),
            })
            .collect();
        let views: Vec<_> = roles
            .iter()
            .map(|(r, t, p, res)| json!({"role": r, "tools": t, "prompts": p, "resources": res}))
            .collect();
        let out = json!({"upstreams": ups, "clashes": report.clashes, "warnings": report.warnings, "roles": views});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (n, p, r) in &results {
            match r {
                Ok(i) => println!(
                    "{n}: ok, prefix {p:?}: {} tool(s), {} prompt(s), {} resource(s), {} template(s)",
                    i.tools.len(),
                    i.prompts.len(),
                    i.resources.len(),
                    i.templates.len()
                ),
                Err(e) => println!("{n}: UNAVAILABLE: {e}"),
            }
        }
        for (r, t, p, res) in &roles {
            println!("role {r}:");
            println!("  tools:     {}", list(t));
            println!("  prompts:   {}", list(p));
            println!("  resources: {}", list(res));
        }
        for w in &report.warnings {
            eprintln!("mcp-zt: warning: {w}");
        }
    }
    if !report.clashes.is_empty() {
        bail!("{}", report.clashes.join("; "));
    }
    if results.iter().any(|(_, _, r)| r.is_err()) {
        bail!("some upstreams are unavailable (see above)");
    }
    Ok(())
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(" ")
    }
}
