//! `connect`, `renew` and `client-config`.
//!
//! On the CA's machine `--name` finds the files `issue` wrote under HOME. On a holder's machine
//! there is no HOME: `--cert/--key/--ca`, `--p12` or `--bundle` name every file, and nothing
//! under HOME is read or created.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use zeroize::Zeroizing;

use super::{ClientConfigArgs, ClientKind, ConnectArgs, CredArgs, HolderFiles, RenewArgs};
use crate::bridge::{self, upstream::Upstream, Credentials};
use crate::ca::{self, Home};

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolve {}", p.display()))
}

/// An input file that must exist, as an absolute path.
fn existing(p: &Path, what: &str) -> Result<PathBuf> {
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => absolute(p),
        Ok(_) => bail!("{what} {} is not a file", p.display()),
        Err(e) => bail!("{what} {}: {e}", p.display()),
    }
}

/// Where the credentials come from, with every path absolute: what `client-config` writes
/// into the command line it prints.
enum Resolved {
    /// HOME/clients/NAME.* on the CA's machine.
    Named { home: PathBuf, name: String },
    /// Separate PEM files.
    Files {
        cert: PathBuf,
        key: PathBuf,
        ca: PathBuf,
    },
    /// One PEM bundle, and perhaps a CA that replaces its own.
    Bundle { path: PathBuf, ca: Option<PathBuf> },
    /// A PKCS#12 file, its password file, and perhaps a CA that replaces its own.
    Pkcs12 {
        path: PathBuf,
        password_file: PathBuf,
        ca: Option<PathBuf>,
    },
}

impl Resolved {
    fn new(home: &Home, name: Option<&str>, files: &HolderFiles) -> Result<Resolved> {
        let ca = files
            .ca
            .as_deref()
            .map(|p| existing(p, "CA certificate"))
            .transpose()?;
        if let Some(path) = &files.p12 {
            let Some(pass) = &files.p12_password_file else {
                bail!(
                    "--p12 needs the bundle's password: --p12-password-file FILE \
                     (or MCP_ZT_P12_PASSWORD_FILE)"
                );
            };
            return Ok(Resolved::Pkcs12 {
                path: existing(path, "PKCS#12 file")?,
                password_file: existing(pass, "password file")?,
                ca,
            });
        }
        if let Some(path) = &files.bundle {
            return Ok(Resolved::Bundle {
                path: existing(path, "bundle")?,
                ca,
            });
        }
        if let (Some(cert), Some(key)) = (&files.cert, &files.key) {
            let ca = match ca {
                Some(ca) => ca,
                None if home.ca_cert().is_file() => absolute(&home.ca_cert())?,
                None => bail!(
                    "no CA certificate: give the one your operator handed over with --ca FILE \
                     ({} does not exist)",
                    home.ca_cert().display()
                ),
            };
            return Ok(Resolved::Files {
                cert: existing(cert, "certificate")?,
                key: existing(key, "key")?,
                ca,
            });
        }
        let Some(name) = name else {
            bail!(
                "say which certificate to use: --cert FILE --key FILE --ca FILE, --p12 FILE \
                 --p12-password-file FILE, --bundle FILE, or (on the CA's machine) --name NAME"
            );
        };
        crate::pki::validate_name(name)?;
        let cert = home.clients().join(format!("{name}.crt"));
        if !cert.exists() {
            bail!(
                "{} does not exist: issue a certificate for {name:?} first \
                 (mcp-zt issue --name {name} --role ROLE)",
                cert.display()
            );
        }
        if let Some(ca) = ca {
            // Another CA than HOME's: name every file.
            return Ok(Resolved::Files {
                cert: absolute(&cert)?,
                key: absolute(&home.clients().join(format!("{name}.key")))?,
                ca,
            });
        }
        Ok(Resolved::Named {
            home: absolute(home.dir())?,
            name: name.to_string(),
        })
    }

    /// The credentials these files hold (the PKCS#12 password is read here).
    fn credentials(&self) -> Result<Credentials> {
        Ok(match self {
            Resolved::Named { home, name } => {
                let home = Home::new(home);
                let clients = home.clients();
                Credentials::files(
                    clients.join(format!("{name}.crt")),
                    clients.join(format!("{name}.key")),
                    home.ca_cert(),
                )
            }
            Resolved::Files { cert, key, ca } => {
                Credentials::files(cert.clone(), key.clone(), ca.clone())
            }
            Resolved::Bundle { path, ca } => Credentials::pem_bundle(path.clone(), ca.clone()),
            Resolved::Pkcs12 {
                path,
                password_file,
                ca,
            } => {
                let bytes = ca::read_passphrase(password_file)?;
                let text = std::str::from_utf8(&bytes).with_context(|| {
                    format!("{}: the password must be UTF-8", password_file.display())
                })?;
                Credentials::pkcs12(path.clone(), Zeroizing::new(text.to_string()), ca.clone())
            }
        })
    }

    /// The arguments of `mcp-zt` that select these files, before the subcommand's own.
    fn args(&self, url: &str) -> Vec<String> {
        let s = |p: &Path| p.display().to_string();
        let mut out: Vec<String> = match self {
            Resolved::Named { home, name } => vec![
                "--home".into(),
                s(home),
                "connect".into(),
                "--name".into(),
                name.clone(),
            ],
            Resolved::Files { cert, key, ca } => vec![
                "connect".into(),
                "--cert".into(),
                s(cert),
                "--key".into(),
                s(key),
                "--ca".into(),
                s(ca),
            ],
            Resolved::Bundle { path, ca } => {
                let mut v = vec!["connect".into(), "--bundle".into(), s(path)];
                v.extend(ca.iter().flat_map(|ca| ["--ca".into(), s(ca)]));
                v
            }
            Resolved::Pkcs12 {
                path,
                password_file,
                ca,
            } => {
                let mut v = vec![
                    "connect".into(),
                    "--p12".into(),
                    s(path),
                    "--p12-password-file".into(),
                    s(password_file),
                ];
                v.extend(ca.iter().flat_map(|ca| ["--ca".into(), s(ca)]));
                v
            }
        };
        out.push(url.to_string());
        out
    }
}

/// Resolves and reads the certificate, key and CA: explicit files win, `--name` finds the files
/// `issue` wrote under HOME. Everything is read and checked here, before any network use.
pub fn credentials(home: &Home, args: &CredArgs) -> Result<Credentials> {
    let creds = Resolved::new(home, args.name.as_deref(), &args.files)?.credentials()?;
    creds.load()?;
    Ok(creds)
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
        if !args.no_renew && bridge::renew::due(&creds)? {
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
        creds.location().display()
    );
    super::commands::print_out(&format!("{serial}\n"))
}

/// One stdio server entry as most clients spell it: `{"command", "args"}`.
#[derive(Serialize)]
struct StdioServer {
    command: String,
    args: Vec<String>,
}

/// The same with an explicit `"type": "stdio"` (Claude Code, VS Code).
#[derive(Serialize)]
struct TypedStdioServer {
    #[serde(rename = "type")]
    kind: &'static str,
    command: String,
    args: Vec<String>,
}

/// The snippet for `client` with the server entry `key`, and where it goes.
///
/// Codex CLI reads `~/.codex/config.toml`: a TOML table `[mcp_servers.NAME]` whose documented
/// keys for a stdio server are `command` (required), `args`, `env`, `env_vars` and `cwd` (the
/// Codex repository's docs/config.md, "MCP integration"); `command` and `args` are written.
/// Gemini CLI reads `~/.gemini/settings.json`: `{"mcpServers": {"NAME": {...}}}` whose
/// documented keys for a stdio server are `command`, `args`, `env`, `cwd`, `timeout` and
/// `trust` (the gemini-cli repository's docs/tools/mcp-server.md); `command` and `args` are
/// written.
fn snippet(client: ClientKind, key: &str, server: StdioServer) -> Result<(String, &'static str)> {
    use std::collections::BTreeMap;
    /// `{top: {key: entry}}` as pretty JSON.
    fn nested<T: Serialize>(top: &str, key: &str, entry: &T) -> Result<String> {
        let one = BTreeMap::from([(key, entry)]);
        Ok(serde_json::to_string_pretty(&BTreeMap::from([(top, one)]))?)
    }
    let typed = TypedStdioServer {
        kind: "stdio",
        command: server.command.clone(),
        args: server.args.clone(),
    };
    Ok(match client {
        ClientKind::ClaudeDesktop => (
            nested("mcpServers", key, &server)?,
            "claude_desktop_config.json (Settings > Developer > Edit Config)",
        ),
        ClientKind::Cursor => (
            nested("mcpServers", key, &server)?,
            "~/.cursor/mcp.json (or .cursor/mcp.json in a project)",
        ),
        ClientKind::GeminiCli => (
            nested("mcpServers", key, &server)?,
            "~/.gemini/settings.json (or .gemini/settings.json in a project)",
        ),
        ClientKind::ClaudeCode => (
            nested("mcpServers", key, &typed)?,
            ".mcp.json in your project (or: claude mcp add-json NAME 'JSON')",
        ),
        ClientKind::Vscode => (
            nested("servers", key, &typed)?,
            ".vscode/mcp.json in your workspace",
        ),
        ClientKind::Codex => (
            toml::to_string(&BTreeMap::from([(
                "mcp_servers",
                BTreeMap::from([(key, &server)]),
            )]))
            .context("write the TOML snippet")?,
            "~/.codex/config.toml (or .codex/config.toml in a trusted project)",
        ),
        ClientKind::Json => (
            serde_json::to_string_pretty(&server)?,
            "any client that launches a stdio MCP server",
        ),
    })
}

/// Prints the MCP configuration snippet for a client.
pub fn client_config(home: &Home, args: ClientConfigArgs) -> Result<()> {
    let resolved = Resolved::new(home, args.name.as_deref(), &args.files)?;
    // Read and check the files now: a wrong password or a missing CA shows here, not in the
    // client app's log at its next start.
    resolved.credentials()?.load()?;
    let exe = std::env::current_exe().context("locate the mcp-zt binary")?;
    let exe = exe.display().to_string();
    let cmd_args = resolved.args(&args.url);
    let server = StdioServer {
        command: exe.clone(),
        args: cmd_args.clone(),
    };
    let (text, where_) = snippet(args.client, &args.server_name, server)?;
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
    super::commands::print_out(&format!("{}\n", text.trim_end()))
}
