//! `connect` and `client-config`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::{ClientConfigArgs, ClientKind, ConnectArgs, CredArgs, RenewArgs};
use crate::bridge::{self, upstream::Upstream, Credentials};
use crate::ca::Home;

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolve {}", p.display()))
}

/// Resolves certificate, key and CA paths: explicit flags win, `--name` fills in the files
/// `issue` wrote under HOME.
pub fn credentials(home: &Home, args: &CredArgs) -> Result<Credentials> {
    let from_name = |ext: &str| {
        args.name
            .as_ref()
            .map(|n| home.clients().join(format!("{n}.{ext}")))
    };
    let cert = args.cert.clone().or_else(|| from_name("crt"));
    let key = args.key.clone().or_else(|| from_name("key"));
    let ca = args.ca.clone().unwrap_or_else(|| home.ca_cert());
    let (Some(cert), Some(key)) = (cert, key) else {
        bail!("say which certificate to use: --name NAME (files from `mcp-zt issue`) or --cert FILE --key FILE");
    };
    for p in [&cert, &key, &ca] {
        if !p.exists() {
            bail!("{} does not exist", p.display());
        }
    }
    Ok(Credentials {
        cert: absolute(&cert)?,
        key: absolute(&key)?,
        ca: absolute(&ca)?,
    })
}

/// Runs the bridge; returns the process exit code.
pub fn run(home: &Home, args: ConnectArgs) -> Result<i32> {
    let url = reqwest::Url::parse(&args.url).with_context(|| format!("URL {:?}", args.url))?;
    if url.scheme() != "https" {
        bail!("URL {url}: mcp-zt servers speak https only");
    }
    let creds = credentials(home, &args.creds)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let result = runtime.block_on(async move {
        // A certificate due for renewal is renewed before the first request.
        if !args.no_renew && bridge::renew::due(&creds.cert)? {
            match bridge::renew::renew(&creds, url.as_str()).await {
                Ok(serial) => eprintln!("mcp-zt connect: certificate renewed, new serial {serial}"),
                Err(e) if e.is_fatal() => return Err(e.into()),
                Err(e) => eprintln!("mcp-zt connect: renewal failed, will retry: {e}"),
            }
        }
        if let Some(addr) = args.listen {
            let opts = bridge::listen::ListenOptions {
                addr,
                url_file: args.url_file,
            };
            return Ok(bridge::listen::run(opts, url.to_string(), &creds, !args.no_renew).await?);
        }
        let up = std::sync::Arc::new(Upstream::new(url.as_str(), &creds)?);
        if !args.no_renew {
            let (up2, creds2, url2) = (up.clone(), creds.clone(), url.to_string());
            tokio::spawn(bridge::renew::renew_loop(creds2, url2, move |c| {
                up2.set_credentials(c)
            }));
        }
        eprintln!(
            "mcp-zt connect: bridging stdio to {url} as {}",
            creds.describe()
        );
        Ok(bridge::stdio::run(up, creds.describe()).await)
    });
    // The stdin reader may sit in a blocking read that nothing can interrupt: do not wait.
    runtime.shutdown_background();
    result
}

/// `renew`: renews the certificate now.
pub fn renew(home: &Home, args: RenewArgs) -> Result<()> {
    let creds = credentials(home, &args.creds)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let serial = runtime.block_on(bridge::renew::renew(&creds, &args.url))?;
    eprintln!(
        "renewed: {} now holds serial {serial} (key and certificate replaced)",
        creds.cert.display()
    );
    super::commands::print_out(&format!("{serial}\n"))
}

/// Prints the MCP configuration snippet for a client.
pub fn client_config(home: &Home, args: ClientConfigArgs) -> Result<()> {
    crate::pki::validate_name(&args.name)?;
    let cert = home.clients().join(format!("{}.crt", args.name));
    if !cert.exists() {
        bail!(
            "{} does not exist: issue a certificate for {:?} first (mcp-zt issue --name {} --role ROLE)",
            cert.display(),
            args.name,
            args.name
        );
    }
    let exe = std::env::current_exe().context("locate the mcp-zt binary")?;
    let exe = exe.display().to_string();
    let home_abs = absolute(home.dir())?.display().to_string();
    let cmd_args = vec![
        "--home".to_string(),
        home_abs,
        "connect".to_string(),
        "--name".to_string(),
        args.name.clone(),
        args.url.clone(),
    ];
    let server = json!({"command": exe, "args": cmd_args});
    let key = args.server_name.clone();
    let snippet = match args.client {
        ClientKind::ClaudeDesktop | ClientKind::Cursor => json!({"mcpServers": {key: server}}),
        ClientKind::ClaudeCode => json!({"mcpServers": {key: {
            "type": "stdio", "command": server["command"], "args": server["args"]}}}),
        ClientKind::Vscode => json!({"servers": {key: {
            "type": "stdio", "command": server["command"], "args": server["args"]}}}),
        ClientKind::Json => server,
    };
    let where_ = match args.client {
        ClientKind::ClaudeDesktop => {
            "claude_desktop_config.json (Settings > Developer > Edit Config)"
        }
        ClientKind::ClaudeCode => ".mcp.json in your project (or: claude mcp add-json NAME 'JSON')",
        ClientKind::Vscode => ".vscode/mcp.json in your workspace",
        ClientKind::Cursor => "~/.cursor/mcp.json (or .cursor/mcp.json in a project)",
        ClientKind::Json => "any client that launches a stdio MCP server",
    };
    eprintln!("# merge into {where_}");
    if args.client == ClientKind::Json {
        // The HTTP endpoint's URL holds a secret made at each launch: no static config can
        // carry it, so the client reads it from the file the bridge writes.
        let listen: Vec<String> = cmd_args[..cmd_args.len() - 1]
            .iter()
            .cloned()
            .chain(["--listen", "127.0.0.1:0", "--url-file", "FILE"].map(String::from))
            .chain([args.url.clone()])
            .collect();
        eprintln!(
            "# clients that only speak streamable HTTP: run `{exe} {}` and point them at the \
URL in FILE (mode 0600; a new secret path at every launch, so read it after each start)",
            listen.join(" ")
        );
    }
    super::commands::print_out(&format!("{}\n", serde_json::to_string_pretty(&snippet)?))
}
