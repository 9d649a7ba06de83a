//! `mcp-zt upstream add|list|remove`: edit and show HOME/upstreams.toml, the MCP servers the
//! gateway fronts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde::Serialize;

use crate::ca::{CaError, Home};
use crate::upstream::config::{self, Document, NewUpstream, Secret, Share, Transport, Upstream};

const EDIT_NOTE: &str = "add and remove rewrite HOME/upstreams.toml whole: other upstreams are \
kept, comments are not. A running server picks the change up on SIGHUP or restart.";

/// `mcp-zt upstream ...`
#[derive(Debug, Subcommand)]
pub enum UpstreamCommand {
    /// Add an MCP server for the gateway to front: a stdio child (`-- COMMAND ARGS...`) or a
    /// streamable HTTP endpoint (`--url`).
    #[command(after_help = EDIT_NOTE)]
    Add(Box<UpstreamAddArgs>),
    /// List the upstreams (secret values are never shown).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an upstream.
    #[command(after_help = EDIT_NOTE)]
    Remove {
        /// The upstream's name.
        name: String,
    },
    /// Connect to the upstreams (or one), print what each offers and what every role of the
    /// policy would see through mcp-zt; exit 1 on clashing names or an unreachable upstream.
    Check {
        /// Only this upstream (the built-in tools are always included).
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// How many children a stdio upstream runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShareArg {
    /// One child serves every caller.
    Global,
    /// One child per client certificate.
    PerIdentity,
}

/// `mcp-zt upstream add ...`
#[derive(Debug, clap::Args)]
pub struct UpstreamAddArgs {
    /// Name: 1 to 32 characters among a-z, 0-9, - and _.
    pub name: String,
    /// Streamable HTTP endpoint (http:// or https://).
    #[arg(long, conflicts_with = "command", required_unless_present = "command")]
    pub url: Option<String>,
    /// The stdio server to run, after `--`: COMMAND ARGS...
    #[arg(last = true, value_name = "COMMAND", required_unless_present = "url")]
    pub command: Vec<String>,
    /// Prefix of the exposed names (default NAME__; "" for none).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Stdio: one child for all callers, or one per client certificate.
    #[arg(long, value_enum)]
    pub share: Option<ShareArg>,
    /// Stdio with --share per-identity: most live children (default 32).
    #[arg(long)]
    pub max_children: Option<usize>,
    /// Per-request timeout, 1s to 1h (default 30s).
    #[arg(long)]
    pub timeout: Option<String>,
    /// HTTP: send the caller's identity as x-mcp-zt-* headers.
    #[arg(long)]
    pub forward_identity: bool,
    /// HTTP: a header with a literal value (visible in ps and shell history: prefer
    /// --header-from-file or --header-from-env for tokens).
    #[arg(long, value_name = "NAME=VALUE", value_parser = key_value)]
    pub header: Vec<(String, String)>,
    /// HTTP: a header whose value is read from FILE at each use.
    #[arg(long, value_name = "NAME=FILE", value_parser = key_value)]
    pub header_from_file: Vec<(String, String)>,
    /// HTTP: a header whose value is the server's environment variable VAR.
    #[arg(long, value_name = "NAME=VAR", value_parser = key_value)]
    pub header_from_env: Vec<(String, String)>,
    /// HTTPS: PEM file of the roots to trust instead of the system's.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// HTTPS: certificate to present (PEM).
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// HTTPS: key of --client-cert (PEM).
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Stdio: an environment variable with a literal value.
    #[arg(long, value_name = "NAME=VALUE", value_parser = key_value)]
    pub env: Vec<(String, String)>,
    /// Stdio: an environment variable whose value is read from FILE at each start.
    #[arg(long, value_name = "NAME=FILE", value_parser = key_value)]
    pub env_from_file: Vec<(String, String)>,
    /// Stdio: an environment variable whose value is the server's environment variable VAR.
    #[arg(long, value_name = "NAME=VAR", value_parser = key_value)]
    pub env_from_env: Vec<(String, String)>,
    /// Stdio: working folder of the child.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

/// Runs one `upstream` subcommand.
pub fn run(home: &Home, cmd: UpstreamCommand) -> Result<()> {
    // A typo in --home must not silently create a stray file or list nothing.
    if !home.dir().is_dir() || !home.ca_cert().exists() {
        return Err(CaError::NotInitialized(home.display()).into());
    }
    match cmd {
        UpstreamCommand::Add(args) => add(home, *args),
        UpstreamCommand::List { json } => list(home, json),
        UpstreamCommand::Check { name, json } => {
            let policy = crate::ca::load_policy(home)?;
            super::upstream_check::run(home, &policy, name.as_deref(), json)
        }
        UpstreamCommand::Remove { name } => {
            let mut doc = Document::open(home.dir())?;
            doc.remove(&name)?;
            doc.save()?;
            note_comments(&doc);
            eprintln!("removed upstream {name}; {}", reload_hint());
            Ok(())
        }
    }
}

fn reload_hint() -> &'static str {
    "a running server picks it up on SIGHUP (kill -HUP $(pidof mcp-zt)) or restart"
}

fn note_comments(doc: &Document) {
    if doc.had_comments() {
        eprintln!(
            "note: the comment lines of {} were not kept",
            doc.path().display()
        );
    }
}

/// A path as the server will find it: the file resolves relative paths against HOME, the
/// operator meant the current folder.
fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot make {} absolute", p.display()))
}

fn secrets(
    literal: Vec<(String, String)>,
    file: Vec<(String, String)>,
    env: Vec<(String, String)>,
) -> Result<Vec<(String, Secret)>> {
    let mut out: Vec<(String, Secret)> = literal
        .into_iter()
        .map(|(k, v)| (k, Secret::Literal(v)))
        .collect();
    for (k, p) in file {
        out.push((k, Secret::File(absolute(Path::new(&p))?)));
    }
    out.extend(env.into_iter().map(|(k, v)| (k, Secret::Env(v))));
    Ok(out)
}

fn add(home: &Home, a: UpstreamAddArgs) -> Result<()> {
    let new = NewUpstream {
        url: a.url,
        command: a.command,
        prefix: a.prefix,
        share: a.share.map(|s| match s {
            ShareArg::Global => Share::Global,
            ShareArg::PerIdentity => Share::PerIdentity,
        }),
        max_children: a.max_children,
        timeout: a.timeout,
        forward_identity: a.forward_identity,
        headers: secrets(a.header, a.header_from_file, a.header_from_env)?,
        env: secrets(a.env, a.env_from_file, a.env_from_env)?,
        cwd: a.cwd.as_deref().map(absolute).transpose()?,
        ca: a.ca.as_deref().map(absolute).transpose()?,
        client_cert: match (a.client_cert, a.client_key) {
            (Some(c), Some(k)) => Some((absolute(&c)?, absolute(&k)?)),
            _ => None,
        },
    };
    let mut doc = Document::open(home.dir())?;
    let upstream = doc.add(&a.name, &new)?;
    doc.save()?;
    note_comments(&doc);
    eprintln!(
        "added upstream {} ({}); {}",
        upstream.name,
        target(&upstream),
        reload_hint()
    );
    Ok(())
}

/// One upstream as `upstream list` prints it; secret values never appear.
#[derive(Debug, Serialize)]
struct UpstreamView {
    name: String,
    /// stdio or http.
    transport: &'static str,
    /// The URL, or the command and its arguments.
    target: String,
    prefix: String,
    /// global or per-identity (stdio only).
    share: Option<&'static str>,
    /// e.g. 30s, 5m, 1h.
    timeout: String,
    /// Per-identity stdio only.
    max_children: Option<usize>,
    forward_identity: bool,
    cwd: Option<PathBuf>,
    ca: Option<PathBuf>,
    client_cert: Option<BTreeMap<&'static str, PathBuf>>,
    /// NAME → "<literal>", {"file": PATH} or {"env": VAR}.
    env: BTreeMap<String, serde_json::Value>,
    /// Same form as env.
    headers: BTreeMap<String, serde_json::Value>,
}

fn secret_view(s: &Secret) -> serde_json::Value {
    match s {
        Secret::Literal(_) => "<literal>".into(),
        Secret::File(p) => serde_json::json!({ "file": p }),
        Secret::Env(v) => serde_json::json!({ "env": v }),
    }
}

fn secret_map(list: &[(String, Secret)]) -> BTreeMap<String, serde_json::Value> {
    list.iter()
        .map(|(k, s)| (k.clone(), secret_view(s)))
        .collect()
}

impl UpstreamView {
    fn new(u: &Upstream) -> UpstreamView {
        let mut view = UpstreamView {
            name: u.name.clone(),
            transport: u.transport.kind(),
            target: target(u),
            prefix: u.prefix.clone(),
            share: None,
            timeout: duration_text(u.timeout),
            max_children: None,
            forward_identity: u.forward_identity,
            cwd: None,
            ca: None,
            client_cert: None,
            env: BTreeMap::new(),
            headers: BTreeMap::new(),
        };
        match &u.transport {
            Transport::Stdio { env, cwd, .. } => {
                view.share = Some(u.share.as_str());
                view.max_children = (u.share == Share::PerIdentity).then_some(u.max_children);
                view.cwd = cwd.clone();
                view.env = secret_map(env);
            }
            Transport::Http {
                headers,
                ca,
                client_cert,
                ..
            } => {
                view.ca = ca.clone();
                view.client_cert = client_cert
                    .clone()
                    .map(|(c, k)| BTreeMap::from([("cert", c), ("key", k)]));
                view.headers = secret_map(headers);
            }
        }
        view
    }
}

/// What an upstream points at, for messages and tables.
fn target(u: &Upstream) -> String {
    match &u.transport {
        Transport::Http { url, .. } => url.clone(),
        Transport::Stdio { command, args, .. } => std::iter::once(command)
            .chain(args)
            .map(|a| {
                let plain = !a.is_empty()
                    && !a.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'');
                if plain {
                    a.clone()
                } else {
                    format!("{a:?}")
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s > 0 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s > 0 && s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

fn list(home: &Home, json: bool) -> Result<()> {
    let upstreams = config::load(home.dir())?;
    if upstreams.is_empty() {
        eprintln!("no upstreams: add one with mcp-zt upstream add");
    }
    let views: Vec<UpstreamView> = upstreams.list.iter().map(UpstreamView::new).collect();
    if json {
        return super::commands::print_json(&views);
    }
    if views.is_empty() {
        return Ok(());
    }
    super::commands::print_out(&table(&views))
}

fn table(views: &[UpstreamView]) -> String {
    let rows: Vec<[String; 6]> = views
        .iter()
        .map(|v| {
            [
                v.name.clone(),
                v.transport.to_string(),
                v.target.clone(),
                if v.prefix.is_empty() {
                    "\"\"".into()
                } else {
                    v.prefix.clone()
                },
                v.share.unwrap_or("-").to_string(),
                v.timeout.clone(),
            ]
        })
        .collect();
    let header = ["NAME", "TRANSPORT", "TARGET", "PREFIX", "SHARE", "TIMEOUT"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |row: &[String; 6]| {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", cells.join("  ").trim_end())
    };
    let mut out = line(&header);
    for (row, v) in rows.iter().zip(views) {
        out.push_str(&line(row));
        // Names only: the table is for eyes, and values may be tokens.
        for (label, map) in [("env", &v.env), ("headers", &v.headers)] {
            if !map.is_empty() {
                let names: Vec<&str> = map.keys().map(String::as_str).collect();
                out.push_str(&format!("  {label}: {}\n", names.join(", ")));
            }
        }
    }
    out
}
