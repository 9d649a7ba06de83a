//! Static per-holder secrets: an API key each holder gives for themselves (or an operator
//! gives for them), sent as a header on their own upstream connection or set in their own
//! per-identity child's environment, never anyone else's. Sealed like upstream tokens.

use zeroize::Zeroizing;

use super::linker::{LinkError, Linker};
use crate::audit::Event;
use crate::ledger::uplink::{HolderSecret, SecretKind};
use crate::ledger::LedgerError;
use crate::secrets::Binding;
use crate::upstream::config::Transport;

/// Largest secret value.
pub const MAX_VALUE: usize = 8 * 1024;

/// One row of `secret list` (never the value).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SecretRow {
    /// The upstream.
    pub upstream: String,
    /// The holder.
    pub holder: String,
    /// `header` or `env`.
    pub kind: String,
    /// The header's or variable's name.
    pub name: String,
    /// When set (Unix seconds).
    pub set_at: i64,
    /// Who set it.
    pub set_by: String,
}

fn purpose(kind: SecretKind, name: &str) -> String {
    format!("secret:{}:{name}", kind.as_str())
}

/// The certificate chain of a holder known only by name (an operator's command): a foreign
/// holder's name starts with its trust (`TRUST:`).
pub fn chain_for_name(linker: &Linker, holder: &str) -> String {
    linker.chain_for(holder.split_once(':').map(|(t, _)| t))
}

/// Stores a secret for `holder` after checking the upstream takes it: a name its
/// `holder_secrets` lists (checked there: an environment variable of a per-identity child, or
/// a header of a per-holder HTTP connection, never one the file sets itself).
#[allow(clippy::too_many_arguments)]
pub fn set(
    linker: &Linker,
    holder: &str,
    chain: &str,
    upstream: &str,
    kind: SecretKind,
    name: &str,
    value: &[u8],
    by: &str,
) -> Result<(), LinkError> {
    let bad = |m: String| LinkError::Refused(m);
    let cfg = linker
        .any_upstream(upstream)
        .ok_or_else(|| bad(format!("no upstream {upstream:?} in upstreams.toml")))?;
    let right_kind = match &cfg.transport {
        Transport::Stdio { .. } => kind == SecretKind::Env,
        Transport::Http { .. } => kind == SecretKind::Header,
    };
    let listed = cfg.holder_secrets.iter().any(|h| {
        if kind == SecretKind::Header {
            h.eq_ignore_ascii_case(name)
        } else {
            h == name
        }
    });
    if !right_kind || !listed {
        let want = match &cfg.transport {
            Transport::Stdio { .. } => "--env",
            Transport::Http { .. } => "--header",
        };
        return Err(bad(format!(
            "upstream {upstream} takes holder secrets only as {want} of the names its holder_secrets lists ({}): the operator adds names in upstreams.toml",
            if cfg.holder_secrets.is_empty() { "none".to_string() } else { cfg.holder_secrets.join(", ") }
        )));
    }
    if kind == SecretKind::Header && http::HeaderValue::from_bytes(value).is_err() {
        return Err(bad("the value is not a valid HTTP header value".into()));
    }
    if value.is_empty() || value.len() > MAX_VALUE {
        return Err(bad(format!("the value must be 1 to {MAX_VALUE} bytes")));
    }
    let p = purpose(kind, name);
    let sealed = linker.key()?.seal(
        &Binding {
            purpose: &p,
            upstream,
            holder,
            chain,
        },
        value,
    )?;
    linker.ledger().put_holder_secret(&HolderSecret {
        upstream: upstream.to_string(),
        holder: holder.to_string(),
        chain: chain.to_string(),
        kind,
        name: name.to_string(),
        value: sealed,
        set_at: crate::pki::now().unix_timestamp(),
        set_by: by.to_string(),
    })?;
    linker.audit().log(
        Event::new("secret_set")
            .holder_name(holder)
            .item(format!("upstream:{upstream}"))
            .reason(format!("{} {name}, set by {by}", kind.as_str())),
    );
    Ok(())
}

/// Secrets, optionally of one holder.
pub fn list(linker: &Linker, holder: Option<&str>) -> Result<Vec<SecretRow>, LedgerError> {
    let mut rows: Vec<SecretRow> = linker
        .ledger()
        .holder_secrets()?
        .into_iter()
        .filter(|s| holder.is_none_or(|h| h == s.holder))
        .map(|s| SecretRow {
            upstream: s.upstream,
            holder: s.holder,
            kind: s.kind.as_str().into(),
            name: s.name,
            set_at: s.set_at,
            set_by: s.set_by,
        })
        .collect();
    rows.sort_by(|a, b| (&a.holder, &a.upstream, &a.name).cmp(&(&b.holder, &b.upstream, &b.name)));
    Ok(rows)
}

/// Deletes a holder's secrets (of one upstream, or all); each deletion audited.
pub fn delete_all(
    linker: &Linker,
    holder: &str,
    upstream: Option<&str>,
    why: &str,
) -> Result<usize, LedgerError> {
    let mut n = 0;
    for s in linker.ledger().holder_secrets()? {
        if s.holder != holder || upstream.is_some_and(|u| u != s.upstream) {
            continue;
        }
        if linker.ledger().remove_holder_secret(&s)? {
            n += 1;
            linker.audit().log(
                Event::new("secret_deleted")
                    .holder_name(holder)
                    .item(format!("upstream:{}", s.upstream))
                    .reason(format!("{} {}; {why}", s.kind.as_str(), s.name)),
            );
        }
    }
    Ok(n)
}

/// The opened secrets of `kind` for a holder's connection to `upstream`: (name, value).
/// A value that does not open is left out and audited (never a partial value).
pub fn for_connection(
    linker: &Linker,
    holder: &str,
    chain: &str,
    upstream: &str,
    kind: SecretKind,
) -> Vec<(String, Zeroizing<String>)> {
    let Ok(all) = linker.ledger().holder_secrets() else {
        return Vec::new();
    };
    let mine: Vec<HolderSecret> = all
        .into_iter()
        .filter(|s| {
            s.holder == holder && s.upstream == upstream && s.kind == kind && s.chain == chain
        })
        .collect();
    if mine.is_empty() {
        return Vec::new();
    }
    let key = match linker.key() {
        Ok(k) => k,
        Err(e) => {
            linker.audit().log(
                Event::new("secret_unusable")
                    .holder_name(holder)
                    .item(format!("upstream:{upstream}"))
                    .reason(e.to_string()),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for s in mine {
        let p = purpose(kind, &s.name);
        let b = Binding {
            purpose: &p,
            upstream,
            holder,
            chain,
        };
        match key.open_text(&b, &s.value) {
            Ok(v) => out.push((s.name, v)),
            Err(e) => linker.audit().log(
                Event::new("secret_unusable")
                    .holder_name(holder)
                    .item(format!("upstream:{upstream}"))
                    .reason(format!("{} {}: {e}", kind.as_str(), s.name)),
            ),
        }
    }
    out
}
