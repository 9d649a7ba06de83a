//! The rules of upstreams.toml: raw serde shapes with spans, turned into [`Upstream`] values or
//! an error naming the line.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    valid_name, Auth, OAuthSettings, Secret, Share, Transport, Upstream, UpstreamConfigError,
    Upstreams, DEFAULT_MAX_CHILDREN, DEFAULT_TIMEOUT, IDENTITY_ENV, MAX_CHILDREN_LIMIT,
    MAX_PREFIX_LEN, MAX_TIMEOUT, MIN_TIMEOUT,
};

/// Headers the gateway owns on the upstream connection: hop-by-hop headers (RFC 9110 §7.6.1),
/// the ones the HTTP client computes, and the MCP session headers the gateway negotiates.
/// Letting the file set them would break framing or sessions.
const FORBIDDEN_HEADERS: [&str; 13] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "mcp-session-id",
    "mcp-protocol-version",
];

/// The namespace of [`super::IDENTITY_HEADERS`], reserved whole so later identity headers are
/// covered too.
const IDENTITY_HEADER_PREFIX: &str = "x-mcp-zt-";
/// The namespace of [`IDENTITY_ENV`].
const IDENTITY_ENV_PREFIX: &str = "MCP_ZT_";

type Table<T> = BTreeMap<Spanned<String>, T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    upstreams: Table<RawUpstream>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    command: Option<Spanned<String>>,
    args: Option<Spanned<Vec<Spanned<String>>>>,
    env: Option<Spanned<Table<Spanned<toml::Value>>>>,
    cwd: Option<Spanned<PathBuf>>,
    share: Option<Spanned<RawShare>>,
    max_children: Option<Spanned<i64>>,
    url: Option<Spanned<String>>,
    headers: Option<Spanned<Table<Spanned<toml::Value>>>>,
    ca: Option<Spanned<PathBuf>>,
    client_cert: Option<Spanned<RawClientCert>>,
    forward_identity: Option<Spanned<bool>>,
    prefix: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    auth: Option<Spanned<String>>,
    oauth_scopes: Option<Spanned<Vec<Spanned<String>>>>,
    oauth_client_id: Option<Spanned<String>>,
    oauth_client_secret: Option<Spanned<toml::Value>>,
    oauth_allow_private: Option<Spanned<bool>>,
    holder_secrets: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawShare {
    Global,
    PerIdentity,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientCert {
    cert: PathBuf,
    key: PathBuf,
}

/// A broken rule and where: turned into [`UpstreamConfigError::Invalid`] with a line.
struct Bad {
    span: Range<usize>,
    message: String,
}

fn bad(span: Range<usize>, message: String) -> Bad {
    Bad { span, message }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |t| t.matches('\n').count() + 1)
}

/// A TOML syntax or shape error, with its line when toml knows it.
pub(super) fn toml_error(e: &toml::de::Error, text: &str, path: &Path) -> UpstreamConfigError {
    let message = e.message().trim().to_string();
    match e.span() {
        Some(span) => UpstreamConfigError::Invalid {
            path: path.to_path_buf(),
            line: line_of(text, span.start),
            message,
        },
        None => UpstreamConfigError::Parse {
            path: path.to_path_buf(),
            message,
        },
    }
}

pub(super) fn parse(text: &str, path: &Path) -> Result<Upstreams, UpstreamConfigError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(&e, text, path))?;
    let base = path.parent().unwrap_or(Path::new(""));
    let list = raw
        .upstreams
        .into_iter()
        .map(|(name, up)| build(name, up, base))
        .collect::<Result<Vec<_>, Bad>>()
        .map_err(|b| UpstreamConfigError::Invalid {
            path: path.to_path_buf(),
            line: line_of(text, b.span.start),
            message: b.message,
        })?;
    // The map was sorted by name already.
    Ok(Upstreams { list })
}

/// Refuses `key`, when present, on an upstream that is not of `kind`.
fn only_with<T>(field: &Option<Spanned<T>>, key: &str, kind: &str, name: &str) -> Result<(), Bad> {
    match field {
        Some(v) => Err(bad(
            v.span(),
            format!("upstream {name}: {key} applies to {kind} upstreams only"),
        )),
        None => Ok(()),
    }
}

fn build(name: Spanned<String>, raw: RawUpstream, base: &Path) -> Result<Upstream, Bad> {
    let span = name.span();
    let name = name.into_inner();
    if !valid_name(&name) {
        return Err(bad(
            span,
            format!(
                "invalid upstream name {name:?}: use 1 to 32 characters among a-z, 0-9, - and _"
            ),
        ));
    }
    let n = name.as_str();
    let (transport, share, max_children, forward_identity) = match (&raw.command, &raw.url) {
        (Some(_), Some(url)) => {
            return Err(bad(
                url.span(),
                format!("upstream {n}: give either command (a stdio child) or url (streamable HTTP), not both"),
            ))
        }
        (None, None) => {
            return Err(bad(
                span,
                format!("upstream {n} needs command = \"PROGRAM\" (a stdio child) or url = \"https://...\" (streamable HTTP)"),
            ))
        }
        (Some(command), None) => {
            only_with(&raw.headers, "headers", "url", n)?;
            only_with(&raw.ca, "ca", "url", n)?;
            only_with(&raw.client_cert, "client_cert", "url", n)?;
            only_with(&raw.forward_identity, "forward_identity", "url", n)?;
            let share = match raw.share.as_ref().map(|s| *s.get_ref()) {
                Some(RawShare::PerIdentity) => Share::PerIdentity,
                Some(RawShare::Global) | None => Share::Global,
            };
            let max_children = max_children(&raw.max_children, share, n)?;
            let transport = stdio(command, &raw, base, n)?;
            (transport, share, max_children, false)
        }
        (None, Some(url)) => {
            only_with(&raw.args, "args", "command", n)?;
            only_with(&raw.env, "env", "command", n)?;
            only_with(&raw.cwd, "cwd", "command", n)?;
            only_with(&raw.share, "share", "command", n)?;
            only_with(&raw.max_children, "max_children", "command", n)?;
            let transport = http(url, &raw, base, n)?;
            let forward = raw.forward_identity.as_ref().is_some_and(|f| *f.get_ref());
            (transport, Share::Global, DEFAULT_MAX_CHILDREN, forward)
        }
    };
    let prefix = match &raw.prefix {
        Some(p) => {
            check_prefix(p.get_ref()).map_err(|m| bad(p.span(), format!("upstream {n}: {m}")))?;
            p.get_ref().clone()
        }
        None => format!("{name}__"),
    };
    let timeout = match &raw.timeout {
        Some(t) => {
            parse_timeout(t.get_ref()).map_err(|m| bad(t.span(), format!("upstream {n}: {m}")))?
        }
        None => DEFAULT_TIMEOUT,
    };
    let auth = auth(&raw, &transport, base, n)?;
    let holder_secrets = holder_secrets(
        &raw,
        &transport,
        share,
        forward_identity || matches!(auth, Auth::OAuth(_)),
        n,
    )?;
    Ok(Upstream {
        name,
        transport,
        prefix,
        timeout,
        share,
        forward_identity,
        max_children,
        auth,
        holder_secrets,
    })
}

/// `holder_secrets`: the names each holder may give a value of their own for. An allowlist,
/// because a holder's value lands in a process or a request the operator configured: an
/// environment variable such as `LD_PRELOAD` or `NODE_OPTIONS` would run the holder's code on
/// the gateway, a header such as `Host` would reach another service. Only on connections of
/// each holder's own, never over a name the file sets itself.
fn holder_secrets(
    raw: &RawUpstream,
    transport: &Transport,
    share: Share,
    per_holder_http: bool,
    n: &str,
) -> Result<Vec<String>, Bad> {
    let Some(list) = &raw.holder_secrets else {
        return Ok(Vec::new());
    };
    let mut out: Vec<String> = Vec::new();
    for name in list.get_ref() {
        let v = name.get_ref();
        let checked = match transport {
            Transport::Stdio { env, .. } => {
                if share != Share::PerIdentity {
                    return Err(bad(list.span(), format!("upstream {n}: holder_secrets needs share = \"per-identity\" (each holder's own child)")));
                }
                check_env_name(v).and_then(|()| {
                    if env.iter().any(|(k, _)| k == v) {
                        Err(format!("{v} is set in env already"))
                    } else {
                        Ok(())
                    }
                })
            }
            Transport::Http { headers, .. } => {
                if !per_holder_http {
                    return Err(bad(list.span(), format!("upstream {n}: holder_secrets needs a connection of each holder's own (auth = \"oauth\" or forward_identity = true)")));
                }
                check_header_name(v).and_then(|()| {
                    if v.eq_ignore_ascii_case("authorization")
                        && per_holder_http
                        && raw.auth.is_some()
                    {
                        Err(
                            "with auth = \"oauth\" the holder's token is the Authorization header"
                                .into(),
                        )
                    } else if headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(v)) {
                        Err(format!("{v} is set in headers already"))
                    } else {
                        Ok(())
                    }
                })
            }
        };
        checked.map_err(|m| bad(name.span(), format!("upstream {n}: holder_secrets: {m}")))?;
        if out.iter().any(|o| o.eq_ignore_ascii_case(v)) {
            return Err(bad(
                name.span(),
                format!("upstream {n}: holder_secrets: {v} is given twice"),
            ));
        }
        out.push(v.clone());
    }
    Ok(out)
}

/// `auth` and the `oauth_*` keys: OAuth is for HTTP upstreams, and needs no static
/// `Authorization` header (the holder's token goes there).
fn auth(raw: &RawUpstream, transport: &Transport, base: &Path, n: &str) -> Result<Auth, Bad> {
    let oauth = match &raw.auth {
        None => false,
        Some(a) => match a.get_ref().as_str() {
            "static" => false,
            "oauth" => true,
            other => {
                return Err(bad(
                    a.span(),
                    format!("upstream {n}: auth = {other:?}: use \"static\" (the headers here) or \"oauth\" (each holder's own login)"),
                ))
            }
        },
    };
    if !oauth {
        let need = "auth = \"oauth\"";
        only_with(&raw.oauth_scopes, "oauth_scopes", need, n)?;
        only_with(&raw.oauth_client_id, "oauth_client_id", need, n)?;
        only_with(&raw.oauth_client_secret, "oauth_client_secret", need, n)?;
        only_with(&raw.oauth_allow_private, "oauth_allow_private", need, n)?;
        return Ok(Auth::Static);
    }
    let Transport::Http { headers, .. } = transport else {
        let span = raw.auth.as_ref().map_or(0..0, |a| a.span());
        return Err(bad(
            span,
            format!("upstream {n}: auth = \"oauth\" applies to url upstreams only (a stdio child gets per-holder secrets with `mcp-zt secret set --env`)"),
        ));
    };
    if headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    {
        let span = raw.headers.as_ref().map_or(0..0, |h| h.span());
        return Err(bad(
            span,
            format!("upstream {n}: with auth = \"oauth\" each holder's token is the Authorization header: remove it from headers"),
        ));
    }
    let mut scopes = Vec::new();
    for s in raw.oauth_scopes.iter().flat_map(|v| v.get_ref()) {
        let ok = !s.get_ref().is_empty()
            && s.get_ref()
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        if !ok {
            return Err(bad(
                s.span(),
                format!(
                    "upstream {n}: oauth_scopes: {:?} is not a scope token",
                    s.get_ref()
                ),
            ));
        }
        scopes.push(s.get_ref().clone());
    }
    if let Some(id) = &raw.oauth_client_id {
        no_nul(id, "oauth_client_id", n)?;
        if id.get_ref().is_empty() {
            return Err(bad(
                id.span(),
                format!("upstream {n}: oauth_client_id is empty"),
            ));
        }
    }
    let client_secret = match &raw.oauth_client_secret {
        Some(v) => {
            if raw.oauth_client_id.is_none() {
                return Err(bad(
                    v.span(),
                    format!("upstream {n}: oauth_client_secret needs oauth_client_id"),
                ));
            }
            Some(secret(v, "oauth_client_secret", base, n)?)
        }
        None => None,
    };
    Ok(Auth::OAuth(OAuthSettings {
        scopes,
        client_id: raw.oauth_client_id.as_ref().map(|c| c.get_ref().clone()),
        client_secret,
        allow_private: raw
            .oauth_allow_private
            .as_ref()
            .is_some_and(|b| *b.get_ref()),
    }))
}

fn max_children(field: &Option<Spanned<i64>>, share: Share, n: &str) -> Result<usize, Bad> {
    let Some(m) = field else {
        return Ok(DEFAULT_MAX_CHILDREN);
    };
    if share != Share::PerIdentity {
        return Err(bad(
            m.span(),
            format!("upstream {n}: max_children applies to share = \"per-identity\" only"),
        ));
    }
    match usize::try_from(*m.get_ref()) {
        Ok(v) if (1..=MAX_CHILDREN_LIMIT).contains(&v) => Ok(v),
        _ => Err(bad(
            m.span(),
            format!("upstream {n}: max_children must be from 1 to {MAX_CHILDREN_LIMIT}"),
        )),
    }
}

fn stdio(
    command: &Spanned<String>,
    raw: &RawUpstream,
    base: &Path,
    n: &str,
) -> Result<Transport, Bad> {
    if command.get_ref().trim().is_empty() {
        return Err(bad(
            command.span(),
            format!("upstream {n}: command is empty"),
        ));
    }
    no_nul(command, "command", n)?;
    let mut args = Vec::new();
    for a in raw.args.iter().flat_map(|a| a.get_ref()) {
        no_nul(a, "an argument", n)?;
        args.push(a.get_ref().clone());
    }
    let mut env = Vec::new();
    for (key, value) in raw.env.iter().flat_map(|e| e.get_ref()) {
        check_env_name(key.get_ref())
            .map_err(|m| bad(key.span(), format!("upstream {n}: env {m}")))?;
        let what = format!("env {}", key.get_ref());
        env.push((key.get_ref().clone(), secret(value, &what, base, n)?));
    }
    let cwd = match &raw.cwd {
        Some(c) => Some(path_value(c, "cwd", base, n)?),
        None => None,
    };
    Ok(Transport::Stdio {
        command: command.get_ref().clone(),
        args,
        env,
        cwd,
    })
}

fn http(url: &Spanned<String>, raw: &RawUpstream, base: &Path, n: &str) -> Result<Transport, Bad> {
    let parsed =
        check_url(url.get_ref()).map_err(|m| bad(url.span(), format!("upstream {n}: {m}")))?;
    let https = parsed.scheme() == "https";
    let mut headers = Vec::new();
    let mut seen = BTreeSet::new();
    for (key, value) in raw.headers.iter().flat_map(|h| h.get_ref()) {
        let k = key.get_ref();
        check_header_name(k).map_err(|m| bad(key.span(), format!("upstream {n}: {m}")))?;
        if !seen.insert(k.to_ascii_lowercase()) {
            return Err(bad(
                key.span(),
                format!("upstream {n}: header {k} is given twice (names are case-insensitive)"),
            ));
        }
        let s = secret(value, &format!("header {k}"), base, n)?;
        if let Secret::Literal(v) = &s {
            if http::HeaderValue::from_str(v).is_err() {
                return Err(bad(
                    value.span(),
                    format!("upstream {n}: header {k} has a value that is not a valid HTTP header value"),
                ));
            }
        }
        headers.push((k.clone(), s));
    }
    for (key, span) in [
        ("ca", raw.ca.as_ref().map(Spanned::span)),
        ("client_cert", raw.client_cert.as_ref().map(Spanned::span)),
    ] {
        if let (Some(span), false) = (span, https) {
            return Err(bad(span, format!("upstream {n}: {key} needs an https url")));
        }
    }
    let ca = match &raw.ca {
        Some(c) => Some(path_value(c, "ca", base, n)?),
        None => None,
    };
    let client_cert = match &raw.client_cert {
        Some(cc) => {
            let s = cc.span();
            let path =
                |p: &PathBuf, what| path_value(&Spanned::new(s.clone(), p.clone()), what, base, n);
            Some((
                path(&cc.get_ref().cert, "client_cert.cert")?,
                path(&cc.get_ref().key, "client_cert.key")?,
            ))
        }
        None => None,
    };
    Ok(Transport::Http {
        url: parsed.to_string(),
        headers,
        ca,
        client_cert,
    })
}

fn no_nul(s: &Spanned<String>, what: &str, n: &str) -> Result<(), Bad> {
    if s.get_ref().contains('\0') {
        return Err(bad(
            s.span(),
            format!("upstream {n}: {what} contains a NUL character"),
        ));
    }
    Ok(())
}

/// A path from the file, relative to the file's folder unless absolute.
fn path_value(p: &Spanned<PathBuf>, what: &str, base: &Path, n: &str) -> Result<PathBuf, Bad> {
    let path = p.get_ref();
    if path.as_os_str().is_empty() {
        return Err(bad(
            p.span(),
            format!("upstream {n}: {what} is an empty path"),
        ));
    }
    if path.as_os_str().as_encoded_bytes().contains(&0) {
        return Err(bad(
            p.span(),
            format!("upstream {n}: {what} contains a NUL character"),
        ));
    }
    Ok(base.join(path))
}

fn secret(v: &Spanned<toml::Value>, what: &str, base: &Path, n: &str) -> Result<Secret, Bad> {
    let wrong = || {
        bad(
            v.span(),
            format!("upstream {n}: {what} must be a string, {{ file = \"PATH\" }} or {{ env = \"VAR\" }}"),
        )
    };
    match v.get_ref() {
        toml::Value::String(s) => Ok(Secret::Literal(s.clone())),
        toml::Value::Table(t) if t.len() == 1 => match t.iter().next() {
            Some((k, toml::Value::String(p))) if k == "file" => Ok(Secret::File(path_value(
                &Spanned::new(v.span(), PathBuf::from(p)),
                &format!("{what} file"),
                base,
                n,
            )?)),
            Some((k, toml::Value::String(var))) if k == "env" => {
                if !env_name_syntax(var) {
                    return Err(bad(
                        v.span(),
                        format!(
                            "upstream {n}: {what}: {var:?} is not an environment variable name"
                        ),
                    ));
                }
                Ok(Secret::Env(var.clone()))
            }
            _ => Err(wrong()),
        },
        _ => Err(wrong()),
    }
}

fn env_name_syntax(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A child's environment variable name: `[A-Za-z_][A-Za-z0-9_]*`, outside the `MCP_ZT_`
/// namespace where the gateway puts the caller's identity.
pub(super) fn check_env_name(s: &str) -> Result<(), String> {
    if !env_name_syntax(s) {
        return Err(format!(
            "{s:?} is not a valid name: use A-Z, a-z, 0-9 and _, not starting with a digit"
        ));
    }
    if s.to_ascii_uppercase().starts_with(IDENTITY_ENV_PREFIX) {
        return Err(format!(
            "{s}: names starting with {IDENTITY_ENV_PREFIX} are reserved for the caller's identity ({})",
            IDENTITY_ENV.join(", ")
        ));
    }
    Ok(())
}

/// A header name the file may set.
pub(super) fn check_header_name(s: &str) -> Result<(), String> {
    if http::HeaderName::from_bytes(s.as_bytes()).is_err() {
        return Err(format!("{s:?} is not a valid HTTP header name"));
    }
    let lower = s.to_ascii_lowercase();
    if lower.starts_with(IDENTITY_HEADER_PREFIX) {
        return Err(format!(
            "header {s}: x-mcp-zt-* headers are set by the gateway itself (forward_identity = true sends the caller's identity)"
        ));
    }
    if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
        return Err(format!(
            "header {s} is managed by the gateway and cannot be set"
        ));
    }
    Ok(())
}

/// An upstream URL: http or https, with a host, without credentials (which would show in
/// listings and logs: put them in `headers`).
pub(super) fn check_url(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("invalid url {s:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("url {s:?}: the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("url {s:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "url {s:?} carries credentials: put them in headers, e.g. Authorization = {{ env = \"VAR\" }}"
        ));
    }
    Ok(url)
}

/// A prefix: at most 64 characters among `A-Z a-z 0-9 _ . -` (MCP tool name characters), may
/// be empty.
pub(super) fn check_prefix(s: &str) -> Result<(), String> {
    if s.len() > MAX_PREFIX_LEN {
        return Err(format!(
            "prefix {s:?} is longer than {MAX_PREFIX_LEN} characters"
        ));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(format!("prefix {s:?}: use only A-Z, a-z, 0-9, _, . and -"));
    }
    Ok(())
}

/// A timeout such as `30s`, `2m` or `1h`, from 1s to 1h.
pub(super) fn parse_timeout(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("timeout {s:?}: use a number with a unit s, m or h, from 1s to 1h (e.g. 30s)");
    let secs = crate::pki::parse_ttl(s).map_err(|_| bad())?;
    let d = Duration::from_secs(u64::try_from(secs).map_err(|_| bad())?);
    if d < MIN_TIMEOUT || d > MAX_TIMEOUT {
        return Err(bad());
    }
    Ok(d)
}
