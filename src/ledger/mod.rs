//! The ledger: every certificate the CA ever issued and every revocation.
//!
//! Two backends behind one type: sled in `HOME/ledger` (the embedded default, one process at a
//! time) and PostgreSQL (`--ledger postgres://...`), the shared ledger of a fleet of replicas.
//! Both give the same guarantees, each in its own way: a record is durable before the call
//! returns; a serial is never written twice; a revocation is a compare-and-swap; renewal and
//! revocation of one chain are serial; CRL numbers only go up. sled gets them from its
//! transactions and flushes, PostgreSQL from constraints, row locks and transactions (see
//! [`pg`]), never from a lock in this process.

/// Ledger record types. Each carries a version so later releases can migrate old records.
mod record {

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
        /// For a renewed certificate: the serial of the first certificate of its renewal chain
        /// (the one an operator issued). Absent on that first certificate itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub chain_root: Option<String>,
        /// For a renewed certificate: when the operator issued the chain's first certificate
        /// (Unix seconds). Renewal chains have a maximum age counted from here.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub chain_started: Option<i64>,
        /// Serial of the intermediate that signed it; absent in a single-CA home. Each
        /// intermediate publishes its own CRL of the certificates it signed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub issuer: Option<String>,
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
        /// The serial of the first certificate of this certificate's renewal chain.
        pub fn chain_root(&self) -> &str {
            self.chain_root.as_deref().unwrap_or(&self.serial)
        }

        /// When the operator issued the first certificate of this renewal chain.
        pub fn chain_started(&self) -> i64 {
            self.chain_started.unwrap_or(self.issued_at)
        }

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
        /// The CA certificate's notAfter (Unix seconds); the root's in a hierarchy.
        pub not_after: i64,
        /// How HOME's CA is laid out. Homes made before the hierarchy have no such field and
        /// are [`Layout::Single`].
        #[serde(default)]
        pub layout: Layout,
        /// Whether the root key was written outside HOME at `ca init` (`--offline-root`).
        #[serde(default)]
        pub root_offline: bool,
        /// The CRL distribution point put into issued certificates (`ca init --crl-url`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub crl_url: Option<String>,
    }

    /// How a CA home is laid out.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Layout {
        /// One self-signed CA (`ca.crt`, `ca.key`) signs everything.
        #[default]
        Single,
        /// A root (`ca.crt`) and intermediates (`intermediate.crt`, `intermediates/`): the
        /// current intermediate signs.
        Hierarchy,
        /// An intermediate issued by an organization's PKI (`ca import`): `ca.crt` is that
        /// PKI's root, `intermediate.crt` the imported chain.
        Imported,
    }

    impl Layout {
        /// The name `doctor` and `ca init` print.
        pub fn as_str(self) -> &'static str {
            match self {
                Layout::Single => "single CA",
                Layout::Hierarchy => "root + intermediate",
                Layout::Imported => "intermediate of an imported PKI",
            }
        }
    }
}

mod foreign;
pub mod migrate;
pub mod oauth;
pub mod pg;
mod sled_store;
pub mod target;
pub mod uplink;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use foreign::ForeignRevocation;
pub use record::{CaMeta, CertKind, CertRecord, Layout, Revocation, Status, RECORD_VERSION};
pub use sled_store::SledLedger;
pub use target::LedgerSpec;

use crate::pki::build::Reason;

/// How long to wait for another process that holds the ledger.
pub const LOCK_WAIT: Duration = Duration::from_secs(15);

/// Ledger failures.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// sled failed. sled's error is in the message and so not also the source: `{:#}` would
    /// say it twice.
    #[error("ledger storage error: {0}")]
    Storage(sled::Error),
    /// The PostgreSQL ledger cannot be reached (down, refused, timed out). Nothing the call
    /// asked for was done, unless it was a commit whose answer was lost (then the operation is
    /// safe to repeat: a second revoke reports "already revoked").
    #[error("the ledger database {target} is unreachable: {message}")]
    Unreachable {
        /// user@host:port/database, never the password.
        target: String,
        /// What failed.
        message: String,
    },
    /// The PostgreSQL ledger answered with an error.
    #[error("the ledger database {target} failed: {message}")]
    Database {
        /// user@host:port/database, never the password.
        target: String,
        /// PostgreSQL's error code and message.
        message: String,
    },
    /// The ledger already holds a CA.
    #[error("the ledger already holds a CA")]
    AlreadyInitialized,
    /// This sled ledger was moved to PostgreSQL by `ledger migrate`: it is read-only.
    #[error("HOME/ledger was moved to {0} by `ledger migrate` and is read-only: run with --ledger URL (or MCP_ZT_LEDGER)")]
    Moved(String),
    /// A `--ledger` URL or option that cannot be used.
    #[error("--ledger: {0}")]
    Config(String),
    /// Another process kept the ledger for longer than [`LOCK_WAIT`].
    #[error("the ledger at {0} is in use by another mcp-zt process (waited {1:?}); if `mcp-zt serve` runs on this HOME, it should answer on its control socket: is it stuck?")]
    Busy(String, Duration),
    /// A record that does not decode.
    #[error("corrupt ledger record {key}: {message}")]
    Corrupt {
        /// Which record.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A serial that is already in the ledger (a collision of 128 random bits, or a bug).
    #[error("serial {0} is already in the ledger")]
    DuplicateSerial(String),
    /// The certificate was revoked before.
    #[error("certificate {serial} ({name}) is already revoked")]
    AlreadyRevoked {
        /// Its serial.
        serial: String,
        /// Its holder.
        name: String,
    },
    /// No such serial.
    #[error("no certificate with serial {0}")]
    NotFound(String),
    /// The certificate was renewed before.
    #[error("certificate {0} was already renewed; use its successor")]
    AlreadyRenewed(String),
    /// A renewal the ledger refuses: the certificate is revoked or expired at commit time.
    #[error("certificate {serial} is {why}")]
    NotRenewable {
        /// The certificate that was to be renewed.
        serial: String,
        /// "revoked" or "expired".
        why: &'static str,
    },
}

impl From<sled::Error> for LedgerError {
    fn from(e: sled::Error) -> Self {
        LedgerError::Storage(e)
    }
}

/// The longest renewal chain followed; a longer one means a corrupt ledger (a loop).
const MAX_CHAIN: usize = 100_000;

/// What [`Ledger::revoke_chain`] did.
#[derive(Debug, Clone, Default)]
pub struct ChainRevocation {
    /// Certificates revoked by this call.
    pub newly: Vec<CertRecord>,
    /// Certificates of the chain that were revoked before (superseded ones included).
    pub already: Vec<CertRecord>,
}

/// An open ledger, on either backend. Cheap to clone (handles are shared).
#[derive(Clone)]
pub enum Ledger {
    /// sled in `HOME/ledger`.
    Sled(SledLedger),
    /// A PostgreSQL database shared by replicas.
    Postgres(Arc<pg::PgLedger>),
}

impl Ledger {
    /// Opens the ledger HOME is configured for: PostgreSQL when a `--ledger` URL was given,
    /// otherwise sled in `HOME/ledger` (waiting up to [`LOCK_WAIT`] for another process).
    /// PostgreSQL schema migrations are applied here.
    pub fn open(dir: &Path, spec: Option<&LedgerSpec>) -> Result<Ledger, LedgerError> {
        match spec {
            Some(spec) => Ok(Ledger::Postgres(Arc::new(pg::PgLedger::open(spec)?))),
            None => Ok(Ledger::Sled(SledLedger::open(dir, LOCK_WAIT)?)),
        }
    }

    /// Opens a sled ledger at `dir`.
    pub fn open_sled(dir: &Path, wait: Duration) -> Result<Ledger, LedgerError> {
        Ok(Ledger::Sled(SledLedger::open(dir, wait)?))
    }

    /// Where this ledger lives, for messages (never a password).
    pub fn describe(&self) -> String {
        match self {
            Ledger::Sled(s) => format!("sled at {}", s.path().display()),
            Ledger::Postgres(p) => format!("PostgreSQL at {}", p.target()),
        }
    }

    /// Whether other processes share this ledger (and may revoke behind this one's back).
    pub fn is_shared(&self) -> bool {
        matches!(self, Ledger::Postgres(_))
    }

    /// Makes every write so far durable (PostgreSQL commits are durable already).
    pub fn flush(&self) -> Result<(), LedgerError> {
        match self {
            Ledger::Sled(s) => s.flush(),
            Ledger::Postgres(_) => Ok(()),
        }
    }

    /// The sled tree the demo data tools use when the ledger is sled (one process owns the
    /// database); `None` for PostgreSQL, where the server keeps that data in `HOME/data`.
    pub fn data_tree(&self) -> Result<Option<sled::Tree>, LedgerError> {
        match self {
            Ledger::Sled(s) => Ok(Some(s.data_tree()?)),
            Ledger::Postgres(_) => Ok(None),
        }
    }

    /// The CA's metadata, if `ca init` has written it.
    pub fn ca_meta(&self) -> Result<Option<CaMeta>, LedgerError> {
        match self {
            Ledger::Sled(s) => s.ca_meta(),
            Ledger::Postgres(p) => p.ca_meta(),
        }
    }

    /// Records the CA's metadata (durably).
    pub fn set_ca_meta(&self, meta: &CaMeta) -> Result<(), LedgerError> {
        match self {
            Ledger::Sled(s) => s.set_ca_meta(meta),
            Ledger::Postgres(p) => p.set_ca_meta(meta),
        }
    }

    /// Adds a new certificate record; durable when this returns. A serial already present is
    /// refused ([`LedgerError::DuplicateSerial`]), never overwritten.
    pub fn insert_new(&self, rec: &CertRecord) -> Result<(), LedgerError> {
        match self {
            Ledger::Sled(s) => s.insert_new(rec),
            Ledger::Postgres(p) => p.insert_many(std::slice::from_ref(rec)),
        }
    }

    /// Imports many records at once (bulk loads, migration). A serial that is already present
    /// is an error and nothing is written.
    pub fn insert_many(&self, recs: &[CertRecord]) -> Result<(), LedgerError> {
        match self {
            Ledger::Sled(s) => s.insert_many(recs),
            Ledger::Postgres(p) => p.insert_many(recs),
        }
    }

    /// Looks up one serial (hex).
    pub fn get(&self, serial_hex: &str) -> Result<Option<CertRecord>, LedgerError> {
        match self {
            Ledger::Sled(s) => s.get(serial_hex),
            Ledger::Postgres(p) => p.get(serial_hex),
        }
    }

    /// Every record, oldest issuance first.
    pub fn all(&self) -> Result<Vec<CertRecord>, LedgerError> {
        match self {
            Ledger::Sled(s) => s.all(),
            Ledger::Postgres(p) => p.all(),
        }
    }

    /// Marks a certificate revoked: a compare-and-swap, so two concurrent revokes produce one
    /// revocation and one [`LedgerError::AlreadyRevoked`]. Durable when this returns.
    pub fn revoke(
        &self,
        serial_hex: &str,
        reason: Reason,
        at: i64,
    ) -> Result<CertRecord, LedgerError> {
        match self {
            Ledger::Sled(s) => s.revoke(serial_hex, reason, at),
            Ledger::Postgres(p) => p.revoke(serial_hex, reason, at),
        }
    }

    /// Records a renewal atomically: the successor `new` is inserted and `old` linked to it,
    /// or nothing is written. `old` must be unrevoked, unexpired at `now` and not renewed
    /// before; a concurrent [`Ledger::revoke_chain`] either commits first (and this fails) or
    /// sees the new link (and revokes `new` as well). Durable on return.
    pub fn record_renewal(&self, old: &str, new: &CertRecord, now: i64) -> Result<(), LedgerError> {
        match self {
            Ledger::Sled(s) => s.record_renewal(old, new, now),
            Ledger::Postgres(p) => p.record_renewal(old, new, now),
        }
    }

    /// The first certificate of `rec`'s renewal chain and when it was issued. Records renewed
    /// before chains were recorded carry only the link to their predecessor: walk it back.
    pub fn chain_origin(&self, rec: &CertRecord) -> Result<(String, i64), LedgerError> {
        if let (Some(root), Some(started)) = (&rec.chain_root, rec.chain_started) {
            return Ok((root.clone(), started));
        }
        let mut first = rec.clone();
        for _ in 0..MAX_CHAIN {
            let Some(prev) = first.renewed_from.clone() else {
                break;
            };
            match self.get(&prev)? {
                Some(p) => first = p,
                None => break,
            }
        }
        Ok((first.chain_root().to_string(), first.chain_started()))
    }

    /// Revokes every certificate of the renewal chain `serial` belongs to, atomically: its
    /// predecessors still valid in their grace period and every successor. Durable on return.
    pub fn revoke_chain(
        &self,
        serial: &str,
        reason: Reason,
        at: i64,
    ) -> Result<ChainRevocation, LedgerError> {
        match self {
            Ledger::Sled(s) => s.revoke_chain(serial, reason, at),
            Ledger::Postgres(p) => p.revoke_chain(serial, reason, at),
        }
    }

    /// Reserves the next CRL number: strictly greater than every number handed out before,
    /// durable before it is returned.
    pub fn next_crl_number(&self) -> Result<u64, LedgerError> {
        match self {
            Ledger::Sled(s) => s.next_crl_number(),
            Ledger::Postgres(p) => p.next_crl_number(),
        }
    }

    /// The revoked records and `count` CRL numbers reserved (the first is returned), read
    /// atomically: a CRL with a higher number never lists fewer revocations than one with a
    /// lower number, whichever process signs them.
    pub fn crl_snapshot(&self, count: u64) -> Result<(Vec<CertRecord>, u64), LedgerError> {
        let count = count.max(1);
        match self {
            Ledger::Sled(s) => {
                let revoked: Vec<CertRecord> = s
                    .all()?
                    .into_iter()
                    .filter(|r| r.revocation.is_some())
                    .collect();
                let first = s.next_crl_number()?;
                for _ in 1..count {
                    s.next_crl_number()?;
                }
                Ok((revoked, first))
            }
            Ledger::Postgres(p) => p.crl_snapshot(count),
        }
    }

    /// Writes the CA's metadata only if there is none yet (`ca init`, `ledger migrate`):
    /// two racing initializations give one CA and one [`LedgerError::AlreadyInitialized`].
    pub fn init_ca_meta(&self, meta: &CaMeta) -> Result<(), LedgerError> {
        match self {
            Ledger::Sled(s) => s.init_ca_meta(meta),
            Ledger::Postgres(p) => p.init_ca_meta(meta),
        }
    }

    /// Renewals whose old and new certificates are both unrevoked: `(new, old, new's
    /// issued_at)`. PostgreSQL answers from its indexed columns, without reading every record.
    pub fn pending_renewals(&self) -> Result<Vec<(String, String, i64)>, LedgerError> {
        match self {
            Ledger::Sled(s) => {
                let all = s.all()?;
                let active: std::collections::HashSet<&str> = all
                    .iter()
                    .filter(|r| r.revocation.is_none())
                    .map(|r| r.serial.as_str())
                    .collect();
                Ok(all
                    .iter()
                    .filter(|r| r.revocation.is_none())
                    .filter_map(|r| {
                        let old = r.renewed_from.as_ref()?;
                        active
                            .contains(old.as_str())
                            .then(|| (r.serial.clone(), old.clone(), r.issued_at))
                    })
                    .collect())
            }
            Ledger::Postgres(p) => p.pending_renewals(),
        }
    }

    /// Every revoked serial, as the backend indexes them (PostgreSQL: the `revoked` column).
    pub fn revoked_serials(&self) -> Result<Vec<String>, LedgerError> {
        match self {
            Ledger::Sled(s) => Ok(s
                .all()?
                .into_iter()
                .filter(|r| r.revocation.is_some())
                .map(|r| r.serial)
                .collect()),
            Ledger::Postgres(p) => p.revoked_serials(),
        }
    }

    /// The last CRL number handed out (0 if none).
    pub fn crl_number(&self) -> Result<u64, LedgerError> {
        match self {
            Ledger::Sled(s) => s.crl_number(),
            Ledger::Postgres(p) => p.crl_number(),
        }
    }

    /// Raises the CRL counter to at least `n` (migration: the copy must never hand out a
    /// number the source already used).
    pub fn raise_crl_number(&self, n: u64) -> Result<(), LedgerError> {
        match self {
            Ledger::Sled(s) => s.raise_crl_number(n),
            Ledger::Postgres(p) => p.raise_crl_number(n),
        }
    }
}

pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, LedgerError> {
    serde_json::to_vec(v).map_err(|e| LedgerError::Corrupt {
        key: "(new record)".into(),
        message: e.to_string(),
    })
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    key: &str,
    bytes: &[u8],
) -> Result<T, LedgerError> {
    serde_json::from_slice(bytes).map_err(|e| LedgerError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
