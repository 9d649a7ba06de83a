//! Editing upstreams.toml for `upstream add` and `upstream remove`.
//!
//! The file is read as a plain TOML table, changed, and written back whole: other upstreams
//! survive, comments and layout do not. The new text is validated with the same rules as
//! [`super::load`] before anything is written, then written atomically with mode 0600, so a
//! running server never reads a half-written or invalid file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{
    check, parse, path_in, read_private, valid_name, Secret, Share, Upstream, UpstreamConfigError,
    Upstreams,
};
use crate::fsutil::{self, FsError};

const TOP: &str = "upstreams";

/// What `upstream add` was told, before validation. Paths are written as given: give absolute
/// ones (relative paths in the file are relative to HOME).
#[derive(Debug, Clone, Default)]
pub struct NewUpstream {
    /// Streamable HTTP endpoint; exclusive with `command`.
    pub url: Option<String>,
    /// The stdio child: the program, then its arguments; exclusive with `url`.
    pub command: Vec<String>,
    /// Exposed-name prefix (`None`: the default `NAME__`; may be empty).
    pub prefix: Option<String>,
    /// Stdio: one shared child or one per identity (`None`: global).
    pub share: Option<Share>,
    /// Stdio, per-identity: most live children.
    pub max_children: Option<usize>,
    /// Per-request timeout as written, e.g. `30s`.
    pub timeout: Option<String>,
    /// HTTP: send the caller's identity headers.
    pub forward_identity: bool,
    /// HTTP: extra headers.
    pub headers: Vec<(String, Secret)>,
    /// Stdio: extra environment variables.
    pub env: Vec<(String, Secret)>,
    /// Stdio: working folder.
    pub cwd: Option<PathBuf>,
    /// HTTPS: PEM roots to trust.
    pub ca: Option<PathBuf>,
    /// HTTPS: (certificate, key) to present.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

fn string(s: &str) -> toml::Value {
    toml::Value::String(s.to_string())
}

fn path_value(p: &Path, what: &str) -> Result<toml::Value, String> {
    p.to_str()
        .map(string)
        .ok_or_else(|| format!("{what} {} is not UTF-8", p.display()))
}

fn one(key: &str, value: toml::Value) -> toml::Value {
    let mut t = toml::Table::new();
    t.insert(key.into(), value);
    toml::Value::Table(t)
}

impl NewUpstream {
    /// The TOML table of this upstream, or a message naming what cannot be written.
    fn to_table(&self) -> Result<toml::Table, String> {
        let mut t = toml::Table::new();
        if let Some(url) = &self.url {
            t.insert("url".into(), string(url));
        }
        if let Some((command, args)) = self.command.split_first() {
            t.insert("command".into(), string(command));
            if !args.is_empty() {
                let args = args.iter().map(|a| string(a)).collect();
                t.insert("args".into(), toml::Value::Array(args));
            }
        }
        for (key, list, fold) in [("env", &self.env, false), ("headers", &self.headers, true)] {
            if list.is_empty() {
                continue;
            }
            let mut map = toml::Table::new();
            let mut seen = BTreeSet::new();
            for (k, secret) in list {
                // Header names are case-insensitive; environment names are not.
                let id = if fold {
                    k.to_ascii_lowercase()
                } else {
                    k.clone()
                };
                if !seen.insert(id) {
                    return Err(format!("{key}: {k} is given twice"));
                }
                let value = match secret {
                    Secret::Literal(v) => string(v),
                    Secret::File(p) => one("file", path_value(p, "secret file")?),
                    Secret::Env(v) => one("env", string(v)),
                };
                map.insert(k.clone(), value);
            }
            t.insert(key.into(), toml::Value::Table(map));
        }
        if let Some(cwd) = &self.cwd {
            t.insert("cwd".into(), path_value(cwd, "cwd")?);
        }
        if let Some(share) = self.share {
            t.insert("share".into(), string(share.as_str()));
        }
        if let Some(m) = self.max_children {
            let m = i64::try_from(m).map_err(|_| format!("max_children {m} is too large"))?;
            t.insert("max_children".into(), toml::Value::Integer(m));
        }
        if let Some(ca) = &self.ca {
            t.insert("ca".into(), path_value(ca, "ca")?);
        }
        if let Some((cert, key)) = &self.client_cert {
            let mut cc = toml::Table::new();
            cc.insert("cert".into(), path_value(cert, "client certificate")?);
            cc.insert("key".into(), path_value(key, "client key")?);
            t.insert("client_cert".into(), toml::Value::Table(cc));
        }
        if self.forward_identity {
            t.insert("forward_identity".into(), toml::Value::Boolean(true));
        }
        if let Some(prefix) = &self.prefix {
            t.insert("prefix".into(), string(prefix));
        }
        if let Some(timeout) = &self.timeout {
            t.insert("timeout".into(), string(timeout));
        }
        Ok(t)
    }
}

/// upstreams.toml opened for editing.
#[derive(Debug)]
pub struct Document {
    path: PathBuf,
    table: toml::Table,
    /// The text as read (`None`: no file), to detect a concurrent edit before writing.
    original: Option<String>,
}

impl Document {
    /// Opens `HOME/upstreams.toml` (an absent file is an empty document). Only the TOML syntax
    /// is checked here, so that `remove` can still drop a broken upstream.
    pub fn open(home: &Path) -> Result<Document, UpstreamConfigError> {
        let path = path_in(home);
        let original = read_private(&path)?;
        let table = match &original {
            Some(text) => toml::from_str::<toml::Table>(text)
                .map_err(|e| check::toml_error(&e, text, &path))?,
            None => toml::Table::new(),
        };
        if table.get(TOP).is_some_and(|v| !v.is_table()) {
            return Err(UpstreamConfigError::Parse {
                path,
                message: "upstreams must be a table of [upstreams.NAME] sections".into(),
            });
        }
        Ok(Document {
            path,
            table,
            original,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file as read has comment lines, which writing it back drops.
    pub fn had_comments(&self) -> bool {
        self.original
            .as_deref()
            .is_some_and(|t| t.lines().any(|l| l.trim_start().starts_with('#')))
    }

    /// The upstream names in the document, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .upstreams()
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    fn upstreams(&self) -> Option<&toml::Table> {
        self.table.get(TOP).and_then(toml::Value::as_table)
    }

    /// Adds an upstream after checking it alone with the file's rules; refuses a name the
    /// document has. Returns the validated upstream. Nothing is written until [`Self::save`].
    pub fn add(&mut self, name: &str, new: &NewUpstream) -> Result<Upstream, UpstreamConfigError> {
        if !valid_name(name) {
            return Err(UpstreamConfigError::BadName(name.to_string()));
        }
        if self.upstreams().is_some_and(|t| t.contains_key(name)) {
            return Err(UpstreamConfigError::Exists(name.to_string()));
        }
        let entry_err = |message: String| UpstreamConfigError::Entry {
            name: name.to_string(),
            message,
        };
        let entry = new
            .to_table()
            .map_err(|m| entry_err(format!("upstream {name}: {m}")))?;
        // Checked alone first, so that a mistake in the new entry is reported without the line
        // numbers of a text the operator never saw.
        let mut alone = toml::Table::new();
        alone.insert(TOP.into(), one(name, toml::Value::Table(entry.clone())));
        let upstream = match parse(&to_text(&alone, &self.path)?, &self.path) {
            Ok(mut u) if u.list.len() == 1 => u.list.remove(0),
            Ok(_) => return Err(entry_err(format!("upstream {name}: not recognised"))),
            Err(UpstreamConfigError::Invalid { message, .. })
            | Err(UpstreamConfigError::Parse { message, .. }) => return Err(entry_err(message)),
            Err(e) => return Err(e),
        };
        let top = self
            .table
            .entry(TOP)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = top {
            t.insert(name.to_string(), toml::Value::Table(entry));
        }
        Ok(upstream)
    }

    /// Removes an upstream; an unknown name is refused with the list of known ones.
    pub fn remove(&mut self, name: &str) -> Result<(), UpstreamConfigError> {
        let removed = match self.table.get_mut(TOP) {
            Some(toml::Value::Table(t)) => t.remove(name).is_some(),
            _ => false,
        };
        if !removed {
            let names = self.names();
            return Err(UpstreamConfigError::Unknown {
                name: name.to_string(),
                known: if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                },
            });
        }
        Ok(())
    }

    /// The document as TOML text.
    pub fn to_text(&self) -> Result<String, UpstreamConfigError> {
        to_text(&self.table, &self.path)
    }

    /// Validates the document and writes it (temp file, fsync, rename; mode 0600). Refuses to
    /// write if the file changed since [`Self::open`] (that edit would be lost) or if the result
    /// would not load.
    pub fn save(&self) -> Result<Upstreams, UpstreamConfigError> {
        let text = self.to_text()?;
        let upstreams = match parse(&text, &self.path) {
            Ok(u) => u,
            // When the mistake was already on disk, point at its line there.
            Err(e) => {
                let on_disk = self
                    .original
                    .as_deref()
                    .and_then(|o| parse(o, &self.path).err());
                return Err(on_disk.unwrap_or(e));
            }
        };
        if read_private(&self.path)? != self.original {
            return Err(UpstreamConfigError::Changed(self.path.clone()));
        }
        let written = match self.original {
            Some(_) => fsutil::write_atomic(&self.path, text.as_bytes(), fsutil::SECRET_MODE),
            // A no-replace link: two first adds cannot overwrite each other.
            None => fsutil::write_new(&self.path, text.as_bytes(), fsutil::SECRET_MODE),
        };
        match written {
            Err(FsError::Exists(_)) => Err(UpstreamConfigError::Changed(self.path.clone())),
            other => other.map(|()| upstreams).map_err(Into::into),
        }
    }
}

/// The order keys are written in, as in the documented example; others follow.
const KEY_ORDER: [&str; 13] = [
    "command",
    "args",
    "env",
    "cwd",
    "share",
    "max_children",
    "url",
    "headers",
    "ca",
    "client_cert",
    "forward_identity",
    "prefix",
    "timeout",
];

/// Renders the document the way it is written by hand: one `[upstreams.NAME]` section per
/// upstream, each value on one line (`env = { TOKEN = { file = "..." } }`). A document of
/// another shape (which validation then refuses) is rendered by the generic writer.
fn to_text(table: &toml::Table, path: &Path) -> Result<String, UpstreamConfigError> {
    let err = |e: toml::ser::Error| UpstreamConfigError::Parse {
        path: path.to_path_buf(),
        message: format!("cannot write TOML: {e}"),
    };
    let entries = match table.get(TOP) {
        Some(toml::Value::Table(t))
            if table.len() == 1 && t.values().all(toml::Value::is_table) =>
        {
            t
        }
        None if table.is_empty() => return Ok(String::new()),
        _ => return toml::to_string(table).map_err(err),
    };
    let mut out = String::new();
    for (name, entry) in entries {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("[{TOP}.{}]\n", key(name).map_err(err)?));
        let mut fields: Vec<(&String, &toml::Value)> =
            entry.as_table().into_iter().flatten().collect();
        fields.sort_by_key(|(k, _)| {
            KEY_ORDER
                .iter()
                .position(|o| o == k)
                .unwrap_or(KEY_ORDER.len())
        });
        for (k, v) in fields {
            out.push_str(&format!(
                "{} = {}\n",
                key(k).map_err(err)?,
                inline(v).map_err(err)?
            ));
        }
    }
    Ok(out)
}

fn key(k: &str) -> Result<String, toml::ser::Error> {
    let bare = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        Ok(k.to_string())
    } else {
        inline(&string(k))
    }
}

/// A value in inline form (tables as `{ k = v }`).
fn inline(v: &toml::Value) -> Result<String, toml::ser::Error> {
    use serde::Serialize;
    let mut out = String::new();
    v.serialize(toml::ser::ValueSerializer::new(&mut out))?;
    Ok(out)
}
