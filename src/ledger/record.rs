//! Ledger record types. Each carries a version so later releases can migrate old records.

use serde::{Deserialize, Serialize};

use crate::pki::build::{KeyAlgorithm, Reason};
use crate::pki::role_ext::Oid;

/// The record format version written by this release.
pub const RECORD_VERSION: u32 = 1;

/// Client or server certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertKind {
    /// Identifies an MCP client; carries a role.
    Client,
    /// The server's own TLS certificate.
    Server,
}

/// A revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// When (Unix seconds).
    pub at: i64,
    /// Why.
    pub reason: Reason,
}

/// One issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    /// Format version.
    pub v: u32,
    /// Serial, lower-case hex.
    pub serial: String,
    /// Holder name (subject CN).
    pub name: String,
    /// Role, for client certificates.
    pub role: Option<String>,
    /// Client or server.
    pub kind: CertKind,
    /// The SPIFFE ID in the URI SAN.
    pub spiffe_id: String,
    /// Extra SANs.
    pub sans: Vec<String>,
    /// Validity start (Unix seconds).
    pub not_before: i64,
    /// Validity end (Unix seconds).
    pub not_after: i64,
    /// When the CA signed it (Unix seconds).
    pub issued_at: i64,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Set once revoked; never cleared.
    pub revocation: Option<Revocation>,
    /// For a renewed certificate: the serial it replaces.
    #[serde(default)]
    pub renewed_from: Option<String>,
    /// For a certificate that was renewed: the serial of its successor.
    #[serde(default)]
    pub superseded_by: Option<String>,
}

/// A certificate's status at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Valid and not revoked.
    Active,
    /// Revoked (whatever its validity).
    Revoked,
    /// Replaced by a renewed certificate (revoked with reason superseded).
    Superseded,
    /// Past its notAfter.
    Expired,
}

impl Status {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Revoked => "revoked",
            Status::Superseded => "superseded",
            Status::Expired => "expired",
        }
    }
}

impl CertRecord {
    /// Status at `now` (Unix seconds).
    pub fn status(&self, now: i64) -> Status {
        if self
            .revocation
            .is_some_and(|r| r.reason == crate::pki::build::Reason::Superseded)
        {
            Status::Superseded
        } else if self.revocation.is_some() {
            Status::Revoked
        } else if now > self.not_after {
            Status::Expired
        } else {
            Status::Active
        }
    }
}

/// What `ca init` decided, recorded once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaMeta {
    /// Format version.
    pub v: u32,
    /// The CA's common name.
    pub name: String,
    /// SPIFFE trust domain for issued identities.
    pub trust_domain: String,
    /// OID of the role extension.
    pub role_oid: Oid,
    /// The CA key's algorithm.
    pub key_algorithm: KeyAlgorithm,
    /// Whether `ca.key` is encrypted at rest.
    pub key_encrypted: bool,
    /// When the CA was created (Unix seconds).
    pub created_at: i64,
    /// The CA certificate's notAfter (Unix seconds).
    pub not_after: i64,
}
