//! `mcp-zt doctor`: consistency and hygiene checks of a CA home.
//!
//! Errors are states that must not exist (a certificate file the ledger does not know, a
//! revocation missing from the CRL, a CRL number that went down, a loose `ca.key`); warnings are
//! things to act on soon (certificates or the CRL near their end, a policy that no longer
//! knows a role still in use).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Authority, CaError};
use crate::fsutil;
use crate::ledger::{CertRecord, Layout, Status};
use crate::pki::{self, inspect};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// An inconsistency or a security problem.
    Error,
    /// Needs attention soon.
    Warning,
    /// What the home is (its layout); nothing to do.
    Info,
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// Which check found it.
    pub check: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

/// What the CRL file says.
#[derive(Debug, Clone, Default)]
pub struct CrlState {
    /// The CRL number.
    pub number: u64,
    /// Revoked serials (hex).
    pub serials: BTreeSet<String>,
    /// nextUpdate (Unix seconds).
    pub next_update: Option<i64>,
}

/// Parses a PEM CRL.
pub fn read_crl(pem: &str) -> Option<CrlState> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let (_, crl) = x509_parser::parse_x509_crl(&block.contents).ok()?;
    let number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n.clone()).ok())
        .unwrap_or(0);
    let serials = crl
        .iter_revoked_certificates()
        .map(|r| hex::encode(r.raw_serial()))
        .collect();
    Some(CrlState {
        number,
        serials,
        next_update: crl.next_update().map(|t| t.timestamp()),
    })
}

/// Revoked serials of the ledger that the CRL on disk does not list.
pub fn missing_from_crl(records: &[CertRecord], crl: &CrlState) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.revocation.is_some() && !crl.serials.contains(&r.serial))
        .map(|r| r.serial.clone())
        .collect()
}

fn cert_files(dir: &Path) -> Vec<PathBuf> {
    files_with(dir, "crt")
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// The first certificate of a PEM file: (serial, notAfter).
fn serial_and_end(path: &Path) -> Option<(String, i64)> {
    let pem = std::fs::read_to_string(path).ok()?;
    let der = inspect::pem_to_der(&pem).ok()?;
    let (_, c) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some((
        hex::encode(c.raw_serial()),
        c.validity().not_after.timestamp(),
    ))
}

fn current_intermediate_end(home: &super::Home) -> Option<i64> {
    serial_and_end(&home.intermediate_cert()).map(|(_, end)| end)
}

/// The CRLs a home publishes, with the issuer field of the records each covers: crl.pem for
/// a single CA; for a hierarchy, the CRL of every intermediate that has not expired.
fn crl_files(authority: &Authority, now: i64) -> Vec<(Option<String>, PathBuf)> {
    let home = authority.home();
    if !home.has_intermediate() {
        return vec![(None, home.crl())];
    }
    let mut out = Vec::new();
    if let Some((serial, _)) = serial_and_end(&home.intermediate_cert()) {
        out.push((Some(serial), home.crl()));
    }
    for path in files_with(&home.intermediates(), "crt") {
        if let Some((serial, end)) = serial_and_end(&path) {
            // One whose key was removed (retired by hand) no longer publishes a CRL.
            if end > now && home.intermediate_key_of(&serial).exists() {
                let crl = home.intermediate_crl_of(&serial);
                out.push((Some(serial), crl));
            }
        }
    }
    out
}

/// What `doctor` says the home is.
fn layout_line(authority: &Authority) -> String {
    let home = authority.home();
    let meta = authority.meta();
    match meta.layout {
        Layout::Single => "single CA: ca.crt signs every certificate with ca.key".into(),
        layout => {
            let root = match (layout, home.root_key().exists()) {
                (Layout::Imported, _) => "ca.crt is the organization's root",
                (_, true) => "root key in HOME (root.key)",
                (_, false) => "root key offline",
            };
            let current = serial_and_end(&home.intermediate_cert())
                .map(|(s, end)| format!("intermediate {s} signs, ends {}", pki::rfc3339(end)))
                .unwrap_or_else(|| "intermediate.crt unreadable".into());
            let all = files_with(&home.intermediates(), "crt").len();
            format!(
                "{}: {root}; {current}; {all} intermediate(s) made",
                layout.as_str()
            )
        }
    }
}

/// Runs every check.
pub fn check(authority: &Authority) -> Result<Vec<Finding>, CaError> {
    let home = authority.home();
    let now = pki::now().unix_timestamp();
    let mut out = Vec::new();
    let mut add = |severity, check, message: String| {
        out.push(Finding {
            severity,
            check,
            message,
        })
    };

    add(Severity::Info, "layout", layout_line(authority));

    // Permissions of every CA key HOME holds.
    let mut keys = vec![
        home.ca_key(),
        home.root_key(),
        super::rollover::pending_root_key(home),
    ];
    keys.extend(files_with(&home.intermediates(), "key"));
    for key in keys.iter().filter(|k| k.exists()) {
        let shown = key
            .strip_prefix(home.dir())
            .unwrap_or(key)
            .display()
            .to_string();
        match fsutil::exposed_mode_of(key) {
            Ok(Some(m)) => add(
                Severity::Error,
                "permissions",
                format!("{shown} has mode {m:04o}: check it was not exposed, then chmod 600"),
            ),
            Ok(None) => {}
            Err(e) => add(Severity::Error, "permissions", e.to_string()),
        }
    }
    if authority.meta().root_offline
        && (home.root_key().exists() || super::rollover::pending_root_key(home).exists())
    {
        add(
            Severity::Error,
            "root-key",
            "root.key is in HOME although the root was made offline (`ca init --offline-root`): move it back to offline storage".into(),
        );
    }
    if let Ok(Some(m)) = fsutil::exposed_mode_of(home.dir()) {
        add(
            Severity::Warning,
            "permissions",
            format!("HOME has mode {m:04o}; 0700 keeps the ledger and keys private"),
        );
    }

    let records = authority.ledger().all()?;
    let by_serial: BTreeMap<&str, &CertRecord> =
        records.iter().map(|r| (r.serial.as_str(), r)).collect();

    // Every record's certificate carries the serial it is filed under.
    for r in &records {
        if r.cert_pem.is_empty() {
            continue;
        }
        match inspect::pem_to_der(&r.cert_pem)
            .and_then(|d| inspect::fields_from_der(&d, &authority.meta().role_oid))
        {
            Ok(f) if f.serial == r.serial => {}
            Ok(f) => add(
                Severity::Error,
                "ledger",
                format!(
                    "record {} holds a certificate with serial {}",
                    r.serial, f.serial
                ),
            ),
            Err(e) => add(
                Severity::Error,
                "ledger",
                format!("record {}: {e}", r.serial),
            ),
        }
    }

    // Every certificate file is known to the ledger, and no serial was issued twice.
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for path in cert_files(&home.clients())
        .into_iter()
        .chain(cert_files(&home.server()))
    {
        let Ok(pem) = std::fs::read_to_string(&path) else {
            add(
                Severity::Error,
                "files",
                format!("cannot read {}", path.display()),
            );
            continue;
        };
        let fields = inspect::pem_to_der(&pem)
            .and_then(|d| inspect::fields_from_der(&d, &authority.meta().role_oid));
        let Ok(f) = fields else {
            add(
                Severity::Error,
                "files",
                format!("{} is not a certificate", path.display()),
            );
            continue;
        };
        match by_serial.get(f.serial.as_str()) {
            None => add(
                Severity::Error,
                "files",
                format!(
                    "{} has serial {} that the ledger does not know",
                    path.display(),
                    f.serial
                ),
            ),
            // The file holds the certificate, then its intermediate.
            Some(r) if !pem.starts_with(&r.cert_pem) => add(
                Severity::Error,
                "files",
                format!(
                    "{} differs from the ledger's certificate {}",
                    path.display(),
                    f.serial
                ),
            ),
            Some(_) => {}
        }
        if let Some(prev) = seen.insert(f.serial.clone(), pem.clone()) {
            if prev != pem {
                add(
                    Severity::Error,
                    "serials",
                    format!("serial {} appears in two different certificates", f.serial),
                );
            }
        }
    }

    // Each CRL lists every revocation of its CA, never went backwards, and is not about to
    // lapse: crl.pem for a single CA; each intermediate's own for a hierarchy.
    let counter = authority.ledger().crl_number()?;
    for (issuer, path) in crl_files(authority, now) {
        let shown = path
            .strip_prefix(home.dir())
            .unwrap_or(&path)
            .display()
            .to_string();
        let mine: Vec<CertRecord> = records
            .iter()
            .filter(|r| r.issuer == issuer)
            .cloned()
            .collect();
        let Some(crl) = std::fs::read_to_string(&path)
            .ok()
            .as_deref()
            .and_then(read_crl)
        else {
            add(
                Severity::Error,
                "crl",
                format!("{shown} is missing or unreadable: run `mcp-zt doctor --repair`"),
            );
            continue;
        };
        let missing = missing_from_crl(&mine, &crl);
        if !missing.is_empty() {
            add(
                Severity::Error,
                "crl",
                format!(
                    "{} revoked serial(s) missing from {shown} (e.g. {}): run `mcp-zt doctor --repair`",
                    missing.len(),
                    missing[0]
                ),
            );
        }
        if crl.number > counter {
            add(
                Severity::Error,
                "crl",
                format!(
                    "{shown} has number {} but the ledger only handed out {counter}: the CRL number went down",
                    crl.number
                ),
            );
        }
        match crl.next_update {
            Some(n) if n <= now => add(
                Severity::Error,
                "crl",
                format!("{shown} is past its nextUpdate: run `mcp-zt crl`"),
            ),
            Some(n) if n - now < 86_400 => add(
                Severity::Warning,
                "crl",
                format!("{shown} reaches its nextUpdate at {}", pki::rfc3339(n)),
            ),
            _ => {}
        }
    }
    if let Some(end) = current_intermediate_end(home) {
        if end - now < 90 * 86_400 {
            add(
                Severity::Warning,
                "expiry",
                format!(
                    "the intermediate that signs ends {}: run `mcp-zt ca rotate`",
                    pki::rfc3339(end)
                ),
            );
        }
    }

    // Lifetimes.
    if authority.meta().not_after - now < 90 * 86_400 {
        add(
            Severity::Warning,
            "expiry",
            format!(
                "the CA certificate ends {}",
                pki::rfc3339(authority.meta().not_after)
            ),
        );
    }
    for r in records.iter().filter(|r| r.status(now) == Status::Active) {
        let third = (r.not_after - r.not_before) / 3;
        if r.not_after - now < third.min(7 * 86_400) && r.superseded_by.is_none() {
            add(
                Severity::Warning,
                "expiry",
                format!(
                    "{} ({}) ends {}: renew it (`mcp-zt renew`)",
                    r.name,
                    r.serial,
                    pki::rfc3339(r.not_after)
                ),
            );
        }
    }

    // Policy.
    match authority.policy() {
        Err(e) => add(Severity::Error, "policy", e.to_string()),
        Ok(policy) => {
            let orphan: BTreeSet<&str> = records
                .iter()
                .filter(|r| r.status(now) == Status::Active)
                .filter_map(|r| r.role.as_deref())
                .filter(|role| !policy.has_role(role))
                .collect();
            for role in orphan {
                add(
                    Severity::Warning,
                    "policy",
                    format!("active certificates carry role {role:?}, which the policy does not define: they are refused"),
                );
            }
            for (severity, message) in check_trusts(home, policy.trusts(), now) {
                add(severity, "trust", message);
            }
        }
    }
    Ok(out)
}

/// Each foreign trust with a CRL file: its CA bundle and CRL load as the server would load
/// them, and the CRL is not stale. Trusts with a `crl_url` are checked by the server only.
fn check_trusts(
    home: &super::Home,
    trusts: &[crate::policy::TrustConfig],
    now: i64,
) -> Vec<(Severity, String)> {
    use crate::policy::trust::CrlSource;
    let mut out = Vec::new();
    for t in trusts {
        let CrlSource::File(crl) = &t.crl else {
            continue;
        };
        let loaded = fsutil::read(&home.dir().join(&t.ca))
            .map_err(|e| e.to_string())
            .and_then(|ca| {
                let crl = fsutil::read(&home.dir().join(crl)).map_err(|e| e.to_string())?;
                crate::tls::foreign::ForeignTrust::build(t.clone(), &ca, crl, &[])
                    .map_err(|e| e.to_string())
            });
        if let Ok(l) = &loaded {
            for why in &l.refused {
                out.push((
                    Severity::Warning,
                    format!("trust {:?}: its CRL file: {why}", t.name),
                ));
            }
        }
        match loaded.map(|l| l.trust) {
            Err(e) if e.starts_with("trust ") => out.push((
                Severity::Error,
                format!("{e}: its certificates are refused until it loads"),
            )),
            Err(e) => out.push((
                Severity::Error,
                format!(
                    "trust {:?}: {e}: its certificates are refused until it loads",
                    t.name
                ),
            )),
            Ok(ft) if ft.crl_next_update.saturating_add(t.crl_grace_secs) < now => out.push((
                Severity::Error,
                format!(
                    "trust {:?}: its CRL is stale since {} (nextUpdate plus {} s of grace): every handshake of its certificates is refused; install a fresh CRL",
                    t.name,
                    pki::rfc3339(ft.crl_next_update.saturating_add(t.crl_grace_secs)),
                    t.crl_grace_secs
                ),
            )),
            Ok(ft) if ft.crl_next_update < now => out.push((
                Severity::Warning,
                format!(
                    "trust {:?}: its CRL is past nextUpdate ({}), within its grace: install a fresh one",
                    t.name,
                    pki::rfc3339(ft.crl_next_update)
                ),
            )),
            Ok(ft) if ft.crl_next_update - now < 86_400 => out.push((
                Severity::Warning,
                format!(
                    "trust {:?}: its CRL reaches nextUpdate at {}",
                    t.name,
                    pki::rfc3339(ft.crl_next_update)
                ),
            )),
            Ok(_) => {}
        }
    }
    out
}
