//! `mcp-zt oauth ...`: clients, grants (through the running server when there is one), and
//! approving a waiting authorization from the command line with the holder's certificate.

use std::io::{BufRead, Write};

use anyhow::{anyhow, bail, Context, Result};

use super::commands::{print_json, print_out};
use super::{ApproveArgs, OAuthClientCommand, OAuthCommand};
use crate::ca::{Authority, Home};
use crate::oauth::admin::{self, AdminAnswer, AdminOp};
use crate::server::ctl::{self, CtlRequest};

/// Runs one `oauth` command.
pub fn run(home: &Home, cmd: OAuthCommand) -> Result<()> {
    match cmd {
        OAuthCommand::Client(OAuthClientCommand::Add {
            name,
            redirect_uris,
            confidential,
            secret_out,
        }) => {
            let answer = admin_op(
                home,
                AdminOp::AddClient {
                    name: name.clone(),
                    redirect_uris,
                    confidential,
                },
            )?;
            println!("client_id {name}");
            if let Some(secret) = answer.secret {
                let path = match secret_out {
                    Some(p) => p,
                    None => {
                        let dir = home.dir().join("oauth-clients");
                        crate::fsutil::ensure_private_dir(&dir)?;
                        dir.join(format!("{name}.secret"))
                    }
                };
                crate::fsutil::write_new(
                    &path,
                    format!("{secret}\n").as_bytes(),
                    crate::fsutil::SECRET_MODE,
                )
                .with_context(|| format!("write the client secret to {}", path.display()))?;
                println!("client_secret written to {} (mode 0600)", path.display());
            }
            Ok(())
        }
        OAuthCommand::Clients { json } => {
            let answer = admin_op(home, AdminOp::Clients)?;
            if json {
                return print_json(&answer.clients);
            }
            let mut out = format!(
                "{:<28} {:<14} {:<12} REDIRECT URIS\n",
                "CLIENT_ID", "KIND", "SECRET"
            );
            for c in &answer.clients {
                out.push_str(&format!(
                    "{:<28} {:<14} {:<12} {}\n",
                    printable(&c.client_id),
                    format!("{:?}", c.kind).to_lowercase(),
                    if c.confidential { "yes" } else { "no" },
                    printable(&c.redirect_uris.join(" ")),
                ));
            }
            print_out(out.trim_end())
        }
        OAuthCommand::Grants { name, json } => {
            let answer = admin_op(home, AdminOp::Grants { name })?;
            if json {
                return print_json(&answer.grants);
            }
            let now = crate::pki::now().unix_timestamp();
            let mut out = format!(
                "{:<18} {:<16} {:<10} {:<28} {:<10} STATUS\n",
                "GRANT", "HOLDER", "ROLE", "CLIENT", "BOUND"
            );
            for g in &answer.grants {
                let status = match (&g.revoked, g.expires_at <= now) {
                    (Some(r), _) => format!("revoked ({})", r.reason),
                    (None, true) => "expired".into(),
                    (None, false) => "active".into(),
                };
                out.push_str(&format!(
                    "{:<18} {:<16} {:<10} {:<28} {:<10} {}\n",
                    g.id,
                    printable(&g.holder.name),
                    g.holder.role,
                    printable(&g.client_id),
                    if g.cnf.is_some() { "cert" } else { "-" },
                    status
                ));
            }
            print_out(out.trim_end())
        }
        OAuthCommand::Revoke {
            grant,
            client,
            name,
        } => {
            let answer = admin_op(
                home,
                AdminOp::Revoke {
                    grant,
                    client,
                    name,
                },
            )?;
            for g in &answer.grants {
                eprintln!(
                    "revoked grant {} ({} via {})",
                    g.id,
                    printable(&g.holder.name),
                    printable(&g.client_id)
                );
            }
            if answer.grants.is_empty() {
                eprintln!("nothing to revoke: the matching grants were already revoked");
            }
            Ok(())
        }
        OAuthCommand::Approve(args) => approve(home, args),
    }
}

/// Text from the ledger or a server (names clients chose), safe for a terminal.
fn printable(s: &str) -> String {
    crate::audit::escape_for_terminal(s).into_owned()
}

/// Runs an admin operation through the server, or on the ledger when none runs.
fn admin_op(home: &Home, op: AdminOp) -> Result<AdminAnswer> {
    if ctl::server_running(&home.ctl_socket()) {
        let r = ctl::call(&home.ctl_socket(), &CtlRequest::OAuth { action: op })
            .map_err(|e| anyhow!(e))?;
        return r.oauth.ok_or_else(|| anyhow!("the server sent no answer"));
    }
    let authority = Authority::open(home)?;
    let now = crate::pki::now().unix_timestamp();
    Ok(admin::run(authority.ledger(), &op, now)?)
}

/// `oauth approve CODE`: shows what is asked, asks, approves with the holder's certificate.
fn approve(home: &Home, args: ApproveArgs) -> Result<()> {
    let base = args.url.trim_end_matches('/').to_string();
    if !base.starts_with("https://") {
        bail!("--url {base}: the login URL must be https://");
    }
    let code: String = args
        .code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    if code.len() != 8 {
        bail!(
            "{:?} is not an approval code (8 letters and digits)",
            args.code
        );
    }
    let creds = super::connect::credentials(home, &args.creds)?;
    let client = creds.client_trusting(true)?;
    let url = format!("{base}/authorize/code/{code}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let info: crate::server::oauth::ApprovalInfo = runtime.block_on(async {
        let r = client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("reach {base}"))?;
        let body = answer(r, "the server refused the code").await?;
        Ok::<_, anyhow::Error>(serde_json::from_value(body)?)
    })?;
    let p = |s: &str| printable(s);
    eprintln!("An application asks to use mcp-zt as you:");
    eprintln!(
        "  client:         {}",
        match &info.client_name {
            Some(n) => format!("{} ({})", p(n), p(&info.client_id)),
            None => p(&info.client_id),
        }
    );
    eprintln!("  answer goes to: {}", p(&info.redirect_host));
    eprintln!("  you are:        {}", p(&info.holder));
    let role = info
        .requested_role
        .clone()
        .filter(|r| info.roles.contains(r))
        .or_else(|| info.roles.first().cloned())
        .ok_or_else(|| anyhow!("the server offered no role"))?;
    eprintln!("  role granted:   {role}");
    eprintln!("Approve only a request you started yourself, from this client.");
    if !args.yes {
        eprint!("Approve? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("read the answer")?;
        if !matches!(line.trim(), "y" | "Y" | "yes" | "YES") {
            runtime.block_on(decide(&client, &url, "deny", None))?;
            eprintln!("denied");
            return Ok(());
        }
    }
    runtime.block_on(decide(&client, &url, "approve", Some(role)))?;
    eprintln!("approved: the browser page goes on by itself");
    Ok(())
}

async fn decide(
    client: &reqwest::Client,
    url: &str,
    decision: &str,
    role: Option<String>,
) -> Result<()> {
    let r = client
        .post(url)
        .json(&serde_json::json!({"decision": decision, "role": role}))
        .send()
        .await
        .context("send the decision")?;
    answer(r, "the server refused the decision").await?;
    Ok(())
}

/// The JSON body of a successful answer; an error answer's `error` (else `refused`) as the
/// error.
async fn answer(r: reqwest::Response, refused: &str) -> Result<serde_json::Value> {
    let status = r.status();
    let body: serde_json::Value = r.json().await.context("the server's answer")?;
    if !status.is_success() {
        bail!("{}", body["error"].as_str().unwrap_or(refused));
    }
    Ok(body)
}
