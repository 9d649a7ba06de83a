//! `mcp-zt doctor`: consistency and hygiene checks of a CA home.
//!
//! Errors are states that must not exist (a certificate file the ledger does not know, a
//! revocation missing from the CRL, a CRL number that went down, a loose `ca.key`); warnings are
//! things to act on soon (certificates or the CRL near their end, a policy that no longer
//! knows a role still in use).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use super::{Authority, CaError};
use crate::fsutil;
use crate::ledger::{CertRecord, Status};
use crate::pki::{self, inspect};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// An inconsistency or a security problem.
    Error,
    /// Needs attention soon.
    Warning,
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

fn cert_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "crt"))
        .collect();
    v.sort();
    v
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

    // Permissions.
    match fsutil::exposed_mode_of(&home.ca_key()) {
        Ok(Some(m)) => add(
            Severity::Error,
            "permissions",
            format!("ca.key has mode {m:04o}: check it was not exposed, then chmod 600"),
        ),
        Ok(None) => {}
        Err(e) => add(Severity::Error, "permissions", e.to_string()),
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
            Some(r) if r.cert_pem != pem => add(
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

    // The CRL lists every revocation, never went backwards, and is not about to lapse.
    match std::fs::read_to_string(home.crl())
        .ok()
        .as_deref()
        .and_then(read_crl)
    {
        None => add(
            Severity::Error,
            "crl",
            "crl.pem is missing or unreadable: run `mcp-zt doctor --repair`".into(),
        ),
        Some(crl) => {
            let missing = missing_from_crl(&records, &crl);
            if !missing.is_empty() {
                add(
                    Severity::Error,
                    "crl",
                    format!(
                        "{} revoked serial(s) missing from crl.pem (e.g. {}): run `mcp-zt doctor --repair`",
                        missing.len(),
                        missing[0]
                    ),
                );
            }
            let counter = authority.ledger().crl_number()?;
            if crl.number > counter {
                add(
                    Severity::Error,
                    "crl",
                    format!(
                        "crl.pem has number {} but the ledger only handed out {counter}: the CRL number went down",
                        crl.number
                    ),
                );
            }
            match crl.next_update {
                Some(n) if n <= now => add(
                    Severity::Error,
                    "crl",
                    "crl.pem is past its nextUpdate: run `mcp-zt crl`".into(),
                ),
                Some(n) if n - now < 86_400 => add(
                    Severity::Warning,
                    "crl",
                    format!("crl.pem reaches its nextUpdate at {}", pki::rfc3339(n)),
                ),
                _ => {}
            }
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
        }
    }
    Ok(out)
}
