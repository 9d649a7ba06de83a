//! `mcp-zt link`, `unlink`, `links`, `secret ...`, `secrets rotate-key`: per-holder upstream
//! credentials from the command line.
//!
//! `link` runs on the holder's machine with their certificate: it asks the server to start a
//! link (over mTLS, so the server knows who), listens on a loopback port for the upstream's
//! redirect, and hands the code back over mTLS. No public name is needed, and the code never
//! reaches a server but mcp-zt's, with the holder's certificate.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use axum::extract::Query;
use axum::response::Html;
use zeroize::Zeroizing;

use super::commands::{print_json, print_out};
use super::{LinkArgs, SecretCommand, SecretsCommand};
use crate::ca::{Authority, Home};
use crate::ledger::uplink::SecretKind;
use crate::server::ctl::{self, CtlRequest};
use crate::server::link::{FinishBody, SecretBody, StartAnswer, StartBody};
use crate::upstream::oauth::admin::{UplinkAnswer, UplinkOp};

/// Longest wait for the browser to come back.
const WAIT: Duration = Duration::from_secs(600);

/// Runs an operator command through the server, or on the ledger when none runs.
pub fn admin(home: &Home, op: UplinkOp) -> Result<UplinkAnswer> {
    if ctl::server_running(&home.ctl_socket()) {
        let r = ctl::call(&home.ctl_socket(), &CtlRequest::Uplink { action: op })
            .map_err(|e| anyhow!(e))?;
        return r.uplink.ok_or_else(|| anyhow!("the server sent no answer"));
    }
    let authority = Authority::open(home)?;
    let linker = std::sync::Arc::new(local_linker(home, &authority)?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    Ok(rt.block_on(crate::upstream::oauth::admin::run(&linker, op))?)
}

/// Without a server, revoking a certificate ends its holder's upstream tokens here: revoked
/// at each upstream that can, and deleted, as the server does.
pub(super) fn revoked_locally(
    home: &Home,
    authority: &Authority,
    records: &[crate::ledger::CertRecord],
) {
    let clients: Vec<_> = records
        .iter()
        .filter(|r| r.kind == crate::ledger::CertKind::Client)
        .collect();
    let has_any = authority
        .ledger()
        .upstream_links()
        .is_ok_and(|l| !l.is_empty())
        || authority
            .ledger()
            .holder_secrets()
            .is_ok_and(|s| !s.is_empty());
    if clients.is_empty() || !has_any {
        return;
    }
    let linker = match local_linker(home, authority) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mcp-zt: upstream tokens of the revoked holder(s) not revoked: {e:#}");
            return;
        }
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    for r in clients {
        rt.block_on(linker.holder_revoked(&r.name, &r.serial));
    }
}

/// A linker over HOME's ledger, for commands run without a server.
pub(super) fn local_linker(
    home: &Home,
    authority: &Authority,
) -> Result<crate::upstream::oauth::linker::Linker> {
    let audit = crate::audit::Audit::open(&home.audit_log(), false)
        .with_context(|| format!("open {}", home.audit_log().display()))?;
    Ok(crate::upstream::oauth::linker::Linker::new(
        authority.ledger().clone(),
        home.dir().to_path_buf(),
        crate::secrets::load_existing(home.dir())?,
        authority.meta().trust_domain.clone(),
        std::sync::Arc::new(audit),
        crate::upstream::config::load(home.dir())?,
        Default::default(),
    ))
}

fn endpoint(mcp_url: &str, path: &str) -> Result<reqwest::Url> {
    let mut u = reqwest::Url::parse(mcp_url).with_context(|| format!("URL {mcp_url:?}"))?;
    if u.scheme() != "https" {
        bail!("URL {u}: mcp-zt servers speak https only");
    }
    u.set_path(path);
    u.set_query(None);
    Ok(u)
}

async fn answer<T: serde::de::DeserializeOwned>(r: reqwest::Response) -> Result<T> {
    let status = r.status();
    let bytes = r.bytes().await.context("read the server's answer")?;
    if !status.is_success() {
        let why = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        bail!(
            "the server refused ({status}): {}",
            crate::audit::escape_for_terminal(&why)
        );
    }
    serde_json::from_slice(&bytes).context("the server's answer")
}

#[derive(serde::Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `mcp-zt link UPSTREAM --url URL ...`.
pub fn link(home: &Home, args: LinkArgs) -> Result<()> {
    let creds = super::connect::credentials(home, &args.creds)?;
    let client = creds.client()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
            .await
            .with_context(|| format!("listen on 127.0.0.1:{}", args.port))?;
        let port = listener.local_addr()?.port();
        let started: StartAnswer = answer(
            client
                .post(endpoint(&args.url, "/link/start")?)
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(&StartBody {
                    upstream: args.upstream.clone(),
                    port,
                    scopes: args.scopes.clone(),
                })?)
                .send()
                .await
                .map_err(|e| anyhow!(crate::bridge::BridgeError::from_reqwest(&e)))?,
        )
        .await?;
        eprintln!(
            "mcp-zt: open this URL to link your {} account (waiting up to {} minutes):",
            args.upstream,
            WAIT.as_secs() / 60
        );
        println!("{}", started.url);
        if args.open {
            open_browser(&started.url);
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Callback>(1);
        let app = axum::Router::new().route(
            "/callback",
            axum::routing::get(move |Query(c): Query<Callback>| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(c).await;
                    Html("<!doctype html><title>mcp-zt</title><p>Back to the terminal: mcp-zt finishes the link there. You can close this tab.</p>")
                }
            }),
        );
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let got = loop {
            let c = tokio::time::timeout(WAIT, rx.recv())
                .await
                .map_err(|_| anyhow!("no answer from the browser within {} minutes", WAIT.as_secs() / 60))?
                .ok_or_else(|| anyhow!("the loopback listener stopped"))?;
            // Another page on this machine could call the port: only our state counts.
            if c.state.as_deref() == Some(started.state.as_str()) {
                break c;
            }
            eprintln!("mcp-zt: ignored a callback with another state");
        };
        server.abort();
        if let Some(e) = got.error {
            bail!(
                "the upstream refused: {} {}",
                crate::audit::escape_for_terminal(&e),
                crate::audit::escape_for_terminal(&got.error_description.unwrap_or_default())
            );
        }
        let code = Zeroizing::new(got.code.ok_or_else(|| anyhow!("the callback has no code"))?);
        let row: crate::upstream::oauth::linker::LinkRow = answer(
            client
                .post(endpoint(&args.url, "/link/finish")?)
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(&FinishBody {
                    state: started.state.clone(),
                    code: code.to_string(),
                })?)
                .send()
                .await
                .map_err(|e| anyhow!(crate::bridge::BridgeError::from_reqwest(&e)))?,
        )
        .await?;
        eprintln!(
            "mcp-zt: linked {} for {} (scopes: {}; token expires {})",
            row.upstream,
            crate::audit::escape_for_terminal(&row.holder),
            if row.scopes.is_empty() { "-".into() } else { row.scopes.join(" ") },
            if row.expires_at == 0 { "-".into() } else { crate::pki::rfc3339(row.expires_at) }
        );
        Ok(())
    })
}

fn open_browser(url: &str) {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(program).arg(url).spawn() {
        eprintln!("mcp-zt: could not start {program} ({e}): open the URL yourself");
    }
}

/// `mcp-zt unlink UPSTREAM --name HOLDER`.
pub fn unlink(home: &Home, upstream: String, name: String) -> Result<()> {
    let a = admin(
        home,
        UplinkOp::Unlink {
            upstream: upstream.clone(),
            name: name.clone(),
        },
    )?;
    if a.count == 0 {
        bail!("{name} has no link or secret for upstream {upstream}");
    }
    eprintln!("mcp-zt: unlinked {upstream} for {name} ({} record(s) removed; see the audit log for the upstream's answer)", a.count);
    Ok(())
}

/// `mcp-zt links`.
pub fn links(home: &Home, name: Option<String>, json: bool) -> Result<()> {
    let a = admin(home, UplinkOp::Links { name })?;
    if json {
        return print_json(&a.links);
    }
    let mut out = String::from("HOLDER\tUPSTREAM\tSCOPES\tEXPIRES\tREFRESH\tLINKED\n");
    for l in &a.links {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            crate::audit::escape_for_terminal(&l.holder),
            l.upstream,
            if l.scopes.is_empty() {
                "-".into()
            } else {
                l.scopes.join(" ")
            },
            if l.expires_at == 0 {
                "-".into()
            } else {
                crate::pki::rfc3339(l.expires_at)
            },
            if l.refreshable { "yes" } else { "no" },
            crate::pki::rfc3339(l.linked_at),
        ));
    }
    print_out(&out)
}

fn read_value(path: &Path) -> Result<Zeroizing<String>> {
    let bytes =
        Zeroizing::new(std::fs::read(path).with_context(|| format!("read {}", path.display()))?);
    let text =
        std::str::from_utf8(&bytes).map_err(|_| anyhow!("{} is not UTF-8 text", path.display()))?;
    let v = text.trim_end_matches(['\n', '\r']);
    if v.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(Zeroizing::new(v.to_string()))
}

/// `mcp-zt secret ...`.
pub fn secret(home: &Home, cmd: SecretCommand) -> Result<()> {
    match cmd {
        SecretCommand::Set(a) => {
            let a = *a;
            let (kind, var) = match (a.header, a.env) {
                (Some(h), None) => (SecretKind::Header, h),
                (None, Some(e)) => (SecretKind::Env, e),
                _ => bail!("give one of --header NAME or --env NAME"),
            };
            let value = read_value(&a.from_file)?;
            match a.url {
                Some(url) => {
                    let creds = super::connect::credentials(home, &a.creds)?;
                    let client = creds.client()?;
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let body = Zeroizing::new(serde_json::to_vec(&SecretBody {
                        upstream: a.upstream.clone(),
                        kind,
                        name: var.clone(),
                        value: value.to_string(),
                    })?);
                    rt.block_on(async {
                        let r = client
                            .post(endpoint(&url, "/link/secret")?)
                            .header("Content-Type", "application/json")
                            .body(body.to_vec())
                            .send()
                            .await
                            .map_err(|e| anyhow!(crate::bridge::BridgeError::from_reqwest(&e)))?;
                        answer::<serde_json::Value>(r).await.map(|_| ())
                    })?;
                    eprintln!(
                        "mcp-zt: set {} {var} for your connections to {}",
                        kind.as_str(),
                        a.upstream
                    );
                }
                None => {
                    let name = a
                        .creds
                        .name
                        .clone()
                        .ok_or_else(|| anyhow!("give --name HOLDER (an operator, on the CA's machine) or --url with your certificate"))?;
                    admin(
                        home,
                        UplinkOp::SecretSet {
                            upstream: a.upstream.clone(),
                            name: name.clone(),
                            kind,
                            var: var.clone(),
                            value: value.to_string(),
                        },
                    )?;
                    eprintln!(
                        "mcp-zt: set {} {var} for {name}'s connections to {}",
                        kind.as_str(),
                        a.upstream
                    );
                }
            }
            Ok(())
        }
        SecretCommand::List { name, json } => {
            let a = admin(home, UplinkOp::Secrets { name })?;
            if json {
                return print_json(&a.secrets);
            }
            let mut out = String::from("HOLDER\tUPSTREAM\tKIND\tNAME\tSET\tBY\n");
            for s in &a.secrets {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\n",
                    crate::audit::escape_for_terminal(&s.holder),
                    s.upstream,
                    s.kind,
                    s.name,
                    crate::pki::rfc3339(s.set_at),
                    crate::audit::escape_for_terminal(&s.set_by),
                ));
            }
            print_out(&out)
        }
        SecretCommand::Delete { upstream, name } => {
            let a = admin(
                home,
                UplinkOp::SecretDelete {
                    upstream: upstream.clone(),
                    name: name.clone(),
                },
            )?;
            if a.count == 0 {
                bail!("{name} has no secret for upstream {upstream}");
            }
            eprintln!(
                "mcp-zt: deleted {} secret(s) of {name} for {upstream}",
                a.count
            );
            Ok(())
        }
    }
}

/// `mcp-zt secrets rotate-key`.
pub fn secrets(home: &Home, cmd: SecretsCommand) -> Result<()> {
    match cmd {
        SecretsCommand::RotateKey => {
            let a = admin(home, UplinkOp::RotateKey)?;
            eprintln!(
                "mcp-zt: {} record(s) re-sealed under key {}; copy {} to every replica, then restart them",
                a.count,
                a.key_id.as_deref().unwrap_or("?"),
                crate::secrets::key_path(home.dir()).display()
            );
            Ok(())
        }
    }
}
