//! `HOME/upstreams.toml`: which MCP servers the gateway fronts, how to reach them, and under
//! which names their items are exposed.
//!
//! ```toml
//! [upstreams.github]                 # NAME: a-z 0-9 - _ (1 to 32 characters)
//! command = "npx"                    # a stdio child: command, args, env, cwd
//! args = ["-y", "@modelcontextprotocol/server-github"]
//! env = { GITHUB_TOKEN = { file = "/etc/mcp-zt/github-token" } }
//! share = "per-identity"             # one child per client certificate (default "global")
//! max_children = 32                  # per-identity: most live children
//!
//! [upstreams.docs]
//! url = "https://docs.internal:3000/mcp"   # streamable HTTP
//! headers = { Authorization = { env = "DOCS_TOKEN" } }
//! ca = "docs-ca.pem"                 # https: trust these roots instead of the system's
//! client_cert = { cert = "gw.crt", key = "gw.key" }
//! forward_identity = true            # send the caller's identity as x-mcp-zt-* headers
//! prefix = ""                        # exposed names: PREFIX + upstream name (default "NAME__")
//! timeout = "30s"                    # per request, 1s to 1h
//! ```
//!
//! A value of `env` or `headers` is a literal string, `{ file = PATH }` or `{ env = VAR }`;
//! relative paths are relative to the folder of the file (HOME).
//!
//! The whole file is validated before anything uses it, into immutable values ([`Upstreams`]):
//! the gateway can publish a new set on reload and keep the old one when the new file is wrong.
//! Because tokens may be written literally, the file must not be accessible by group or others,
//! and `Debug` never prints a literal secret.

mod check;
mod edit;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_auth;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fsutil::{self, FsError};

pub use edit::{Document, NewUpstream};

/// The file's name inside HOME.
pub const FILE_NAME: &str = "upstreams.toml";
/// Per-request timeout when the file gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Shortest `timeout` accepted.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest `timeout` accepted: a longer wait ties up a caller's connection for no benefit.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Live children of a per-identity upstream when `max_children` is not given: without a cap,
/// every certificate that connects once would cost a process.
pub const DEFAULT_MAX_CHILDREN: usize = 32;
/// Highest `max_children` accepted.
pub const MAX_CHILDREN_LIMIT: usize = 1024;
/// Longest upstream name.
pub const MAX_NAME_LEN: usize = 32;
/// Longest `prefix`.
pub const MAX_PREFIX_LEN: usize = 64;
/// Environment variables the gateway sets for a child to carry the caller's identity; the
/// `MCP_ZT_` namespace is reserved so the file cannot forge them.
pub const IDENTITY_ENV: [&str; 4] = [
    "MCP_ZT_NAME",
    "MCP_ZT_ROLE",
    "MCP_ZT_SERIAL",
    "MCP_ZT_SPIFFE_ID",
];
/// Headers the gateway sets itself with `forward_identity`; the `x-mcp-zt-` namespace is
/// reserved so the file cannot forge them.
pub const IDENTITY_HEADERS: [&str; 4] = [
    "x-mcp-zt-name",
    "x-mcp-zt-role",
    "x-mcp-zt-serial",
    "x-mcp-zt-spiffe-id",
];

impl Upstream {
    /// Whether each client certificate gets a connection of its own: per-identity stdio
    /// children, and HTTP upstreams that are sent the caller's identity.
    pub fn identity_bound(&self) -> bool {
        match &self.transport {
            Transport::Stdio { .. } => self.share == Share::PerIdentity,
            Transport::Http { .. } => self.forward_identity || self.oauth().is_some(),
        }
    }

    /// Its OAuth settings, when each holder logs in on their own.
    pub fn oauth(&self) -> Option<&OAuthSettings> {
        match &self.auth {
            Auth::OAuth(o) => Some(o),
            Auth::Static => None,
        }
    }
}

/// What went wrong with the upstreams file or one of its secrets; each message says what to
/// change.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamConfigError {
    /// TOML syntax, an unknown key, a wrong type or a broken rule, at a known line.
    #[error("{path} line {line}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A TOML error without a position.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The file is not UTF-8.
    #[error("{0} is not UTF-8 text")]
    NotUtf8(PathBuf),
    /// Group or others may access the file, which may hold tokens.
    #[error(
        "{path} has mode {mode:04o}: it may hold secrets, so group and others must not access \
         it; check it was not exposed, then run: chmod 600 {path}"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A `{ file = PATH }` secret that cannot be used.
    #[error("secret file {path}: {reason}")]
    SecretFile {
        /// The secret's file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// An `{ env = VAR }` secret that cannot be used.
    #[error("environment variable {var} (named by upstreams.toml): {reason}")]
    SecretEnv {
        /// The variable.
        var: String,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// An upstream given to `upstream add` breaks a rule.
    #[error("{message}")]
    Entry {
        /// The upstream.
        name: String,
        /// What is wrong (names the upstream).
        message: String,
    },
    /// A name that breaks the naming rule.
    #[error("invalid upstream name {0:?}: use 1 to 32 characters among a-z, 0-9, - and _")]
    BadName(String),
    /// `upstream add` of a name the file has.
    #[error("upstream {0} already exists: run `mcp-zt upstream remove {0}` first to replace it")]
    Exists(String),
    /// `upstream remove` of a name the file lacks.
    #[error("no upstream {name:?}; the upstreams are: {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names the file has, comma-separated, or "none".
        known: String,
    },
    /// Someone else wrote the file between reading and writing it.
    #[error("{0} changed while it was being edited; nothing was written: try again")]
    Changed(PathBuf),
    /// Reading or writing a file.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// Every configured upstream, sorted by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Upstreams {
    /// The upstreams, sorted by name (names are unique).
    pub list: Vec<Upstream>,
}

impl Upstreams {
    /// The upstream called `name`.
    pub fn get(&self, name: &str) -> Option<&Upstream> {
        self.list
            .binary_search_by(|u| u.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.list[i])
    }

    /// Whether no upstream is configured (the gateway then serves only the built-in tools).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// One validated upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// Its name in the file (`[upstreams.NAME]`).
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
    /// Put before each of its item names when exposed; `NAME__` unless the file says otherwise
    /// (may be empty).
    pub prefix: String,
    /// Most time one request may take.
    pub timeout: Duration,
    /// One child for everyone or one per certificate (always `Global` for HTTP).
    pub share: Share,
    /// HTTP: send the caller's identity headers ([`IDENTITY_HEADERS`]).
    pub forward_identity: bool,
    /// Per-identity stdio: most live children.
    pub max_children: usize,
    /// How requests to it are authenticated: the file's headers, or each holder's own login.
    pub auth: Auth,
    /// Names (environment variables of a per-identity child, or headers of a per-holder
    /// HTTP connection) each holder may give a secret value of their own for.
    pub holder_secrets: Vec<String>,
}

/// How the gateway authenticates to an upstream.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Auth {
    /// The headers in the file (or none): one identity for every caller.
    #[default]
    Static,
    /// Each holder's own OAuth login: mcp-zt is the OAuth client, one connection per holder,
    /// each with that holder's token (`auth = "oauth"`).
    OAuth(OAuthSettings),
}

/// `auth = "oauth"` settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OAuthSettings {
    /// Scopes to ask for; empty = what the upstream's challenge or metadata asks.
    pub scopes: Vec<String>,
    /// A client id registered with the upstream's authorization server beforehand.
    pub client_id: Option<String>,
    /// Its secret (a confidential client).
    pub client_secret: Option<Secret>,
    /// Whether the upstream's authorization server may be on a private or loopback address
    /// other than the upstream's own host (an upstream explicitly known to be local).
    pub allow_private: bool,
}

/// Whether callers share one upstream session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// One child (or HTTP session) serves every caller.
    Global,
    /// One child per client certificate, so an upstream that keeps per-user state or acts with
    /// the caller's identity never mixes callers (stdio only).
    PerIdentity,
}

impl Share {
    /// The spelling in the file: `global` or `per-identity`.
    pub fn as_str(self) -> &'static str {
        match self {
            Share::Global => "global",
            Share::PerIdentity => "per-identity",
        }
    }
}

/// How the gateway reaches an upstream.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// A child process speaking MCP on stdin/stdout.
    Stdio {
        /// The program (looked up in PATH when it has no `/`).
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment variables, sorted by name.
        env: Vec<(String, Secret)>,
        /// Its working folder.
        cwd: Option<PathBuf>,
    },
    /// A streamable HTTP endpoint.
    Http {
        /// `http://` or `https://` URL (normalised).
        url: String,
        /// Extra request headers, sorted by name.
        headers: Vec<(String, Secret)>,
        /// PEM roots to trust instead of the system's (https).
        ca: Option<PathBuf>,
        /// Certificate and key to present (https): (cert, key).
        client_cert: Option<(PathBuf, PathBuf)>,
    },
}

impl Transport {
    /// `stdio` or `http`.
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Stdio { .. } => "stdio",
            Transport::Http { .. } => "http",
        }
    }
}

/// A value for an environment variable or a header, read when it is used so that a rotated
/// token file needs no edit of upstreams.toml.
#[derive(Clone, PartialEq)]
pub enum Secret {
    /// The value itself, written in the file.
    Literal(String),
    /// The contents of this file, without the trailing newline.
    File(PathBuf),
    /// The value of this environment variable of the server.
    Env(String),
}

impl fmt::Debug for Secret {
    // Configurations end up in logs and panics; a literal token must not.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Literal(_) => f.write_str("<literal>"),
            Secret::File(p) => f.debug_tuple("File").field(p).finish(),
            Secret::Env(v) => f.debug_tuple("Env").field(v).finish(),
        }
    }
}

impl Secret {
    /// The value: the literal, the file's contents without trailing newlines, or the
    /// variable's value. An empty file or variable is refused: it is almost always a mistake
    /// that would otherwise surface as a confusing 401 from the upstream.
    pub fn resolve(&self) -> Result<String, UpstreamConfigError> {
        match self {
            Secret::Literal(s) => Ok(s.clone()),
            Secret::File(path) => {
                let bad = |reason: String| UpstreamConfigError::SecretFile {
                    path: path.clone(),
                    reason,
                };
                let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
                let text = String::from_utf8(bytes).map_err(|_| bad("is not UTF-8 text".into()))?;
                let value = text.trim_end_matches(['\n', '\r']);
                if value.is_empty() {
                    return Err(bad("is empty".into()));
                }
                Ok(value.to_string())
            }
            Secret::Env(var) => {
                let bad = |reason| UpstreamConfigError::SecretEnv {
                    var: var.clone(),
                    reason,
                };
                match std::env::var(var) {
                    Ok(v) if v.is_empty() => Err(bad("is empty")),
                    Ok(v) => Ok(v),
                    Err(std::env::VarError::NotPresent) => Err(bad("is not set")),
                    Err(std::env::VarError::NotUnicode(_)) => Err(bad("is not UTF-8")),
                }
            }
        }
    }
}

/// Whether `name` may name an upstream: 1 to 32 characters among `a-z`, `0-9`, `-` and `_`,
/// so it is safe in file names, log lines and the default prefix.
pub fn valid_name(name: &str) -> bool {
    // `builtin` names the demo tools' provider in audit lines and checks.
    name != "builtin"
        && (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The upstreams file of `home`.
pub fn path_in(home: &Path) -> PathBuf {
    home.join(FILE_NAME)
}

/// Reads and validates `HOME/upstreams.toml`. A missing file means no upstreams.
pub fn load(home: &Path) -> Result<Upstreams, UpstreamConfigError> {
    let path = path_in(home);
    match read_private(&path)? {
        Some(text) => parse(&text, &path),
        None => Ok(Upstreams::default()),
    }
}

/// Validates upstreams text; `path` is named in errors, and relative paths in the text are
/// relative to its folder.
pub fn parse(text: &str, path: &Path) -> Result<Upstreams, UpstreamConfigError> {
    check::parse(text, path)
}

/// Reads the file after refusing it if group or others may access it; `None` if it is absent.
fn read_private(path: &Path) -> Result<Option<String>, UpstreamConfigError> {
    let exposed = match fsutil::exposed_mode_of(path) {
        Ok(exposed) => exposed,
        Err(FsError::Io { error, .. }) if error.kind() == io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(mode) = exposed {
        return Err(UpstreamConfigError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let bytes = fsutil::read(path)?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| UpstreamConfigError::NotUtf8(path.to_path_buf()))
}
