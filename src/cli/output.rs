//! What the CLI prints: dedicated output structs (stable JSON) and their table forms.

use serde::Serialize;

use crate::ledger::{CertKind, CertRecord};
use crate::pki::rfc3339;

/// One certificate as `list`, `show`, `issue` and `revoke` print it.
#[derive(Debug, Serialize)]
pub struct CertView {
    /// Serial, hex.
    pub serial: String,
    /// Holder name.
    pub name: String,
    /// Role (client certificates).
    pub role: Option<String>,
    /// client or server.
    pub kind: CertKind,
    /// SPIFFE ID.
    pub spiffe_id: String,
    /// RFC 3339.
    pub not_before: String,
    /// RFC 3339.
    pub not_after: String,
    /// active, revoked or expired.
    pub status: &'static str,
    /// RFC 3339, when revoked.
    pub revoked_at: Option<String>,
    /// Reason, when revoked.
    pub revocation_reason: Option<&'static str>,
    /// For a renewed certificate: the serial it replaced.
    pub renewed_from: Option<String>,
    /// For a renewed-away certificate: its successor.
    pub superseded_by: Option<String>,
    /// The first certificate of the renewal chain (the operator's `issue`); revoking any
    /// certificate of a chain revokes all of it.
    pub chain_root: String,
    /// RFC 3339: when the chain began; renewals stop at a maximum age from here.
    pub chain_started: String,
}

impl CertView {
    /// Builds the view of a record at `now`.
    pub fn new(r: &CertRecord, now: i64) -> CertView {
        CertView {
            serial: r.serial.clone(),
            name: r.name.clone(),
            role: r.role.clone(),
            kind: r.kind,
            spiffe_id: r.spiffe_id.clone(),
            not_before: rfc3339(r.not_before),
            not_after: rfc3339(r.not_after),
            status: r.status(now).as_str(),
            revoked_at: r.revocation.map(|x| rfc3339(x.at)),
            revocation_reason: r.revocation.map(|x| x.reason.as_str()),
            renewed_from: r.renewed_from.clone(),
            superseded_by: r.superseded_by.clone(),
            chain_root: r.chain_root().to_string(),
            chain_started: rfc3339(r.chain_started()),
        }
    }

    fn status_text(&self) -> String {
        let status = match (&self.revoked_at, self.revocation_reason) {
            (Some(at), Some("superseded")) => format!("superseded {at}"),
            (Some(at), Some(reason)) => format!("revoked {at} ({reason})"),
            _ => self.status.to_string(),
        };
        // The table shows where a renewed certificate comes from.
        match &self.renewed_from {
            Some(prev) => format!("{status}, renewed from {}", short(prev)),
            None => status,
        }
    }
}

/// The first 8 hex digits of a serial, for tables.
fn short(serial: &str) -> String {
    match serial.get(..8) {
        Some(head) if serial.len() > 8 => format!("{head}…"),
        _ => serial.to_string(),
    }
}

/// A table of certificates.
pub fn table(views: &[CertView]) -> String {
    let mut out = format!(
        "{:<32}  {:<16}  {:<8}  {:<6}  {:<20}  {:<20}  STATUS\n",
        "SERIAL", "NAME", "ROLE", "KIND", "NOT BEFORE", "NOT AFTER"
    );
    for v in views {
        let kind = match v.kind {
            CertKind::Client => "client",
            CertKind::Server => "server",
        };
        out.push_str(&format!(
            "{:<32}  {:<16}  {:<8}  {:<6}  {:<20}  {:<20}  {}\n",
            v.serial,
            v.name,
            v.role.as_deref().unwrap_or("-"),
            kind,
            v.not_before,
            v.not_after,
            v.status_text()
        ));
    }
    out
}

/// Detailed text for `show`.
pub fn detail(v: &CertView, fields: Option<&crate::pki::inspect::CertFields>) -> String {
    let mut out = String::new();
    let mut line = |k: &str, val: &str| out.push_str(&format!("{k:<18} {val}\n"));
    line("serial", &v.serial);
    line("name", &v.name);
    line("kind", &format!("{:?}", v.kind).to_lowercase());
    line("role (ledger)", v.role.as_deref().unwrap_or("-"));
    line("spiffe id", &v.spiffe_id);
    line("not before", &v.not_before);
    line("not after", &v.not_after);
    line("status", &v.status_text());
    if let Some(s) = &v.renewed_from {
        line("renewed from", s);
    }
    if let Some(s) = &v.superseded_by {
        line("superseded by", s);
    }
    if v.renewed_from.is_some() || v.superseded_by.is_some() {
        line("chain began with", &v.chain_root);
        line("chain began at", &v.chain_started);
    }
    if let Some(f) = fields {
        line(
            "role (decoded)",
            f.role.as_deref().unwrap_or("(no valid role extension)"),
        );
        line(
            "role ext critical",
            if f.role_critical { "yes" } else { "no" },
        );
        line("uri SANs", &f.uris.join(", "));
        line("dns/ip SANs", &f.names.join(", "));
        let mut eku = Vec::new();
        if f.client_auth {
            eku.push("clientAuth");
        }
        if f.server_auth {
            eku.push("serverAuth");
        }
        line("extended usage", &eku.join(", "));
    }
    out
}
