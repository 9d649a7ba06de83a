//! The ledger: every certificate the CA ever issued and every revocation, in sled.
//!
//! Trees: `certs` (serial bytes → [`CertRecord`] as JSON) and `meta` (the CA's [`CaMeta`] and
//! the CRL number). Every write is flushed before the call returns, so a record the caller was
//! told about survives `kill -9`. sled allows one process per database; [`Ledger::open`] waits
//! briefly for another mcp-zt process to finish instead of failing.

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

use std::path::Path;
use std::time::{Duration, Instant};

pub use record::{CaMeta, CertKind, CertRecord, Layout, Revocation, Status, RECORD_VERSION};

use crate::pki::build::Reason;

const TREE_CERTS: &str = "certs";
const TREE_META: &str = "meta";
const KEY_CA: &[u8] = b"ca";
const KEY_CRL_NUMBER: &[u8] = b"crl_number";

/// How long to wait for another process that holds the ledger.
pub const LOCK_WAIT: Duration = Duration::from_secs(15);

/// Ledger failures.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// sled failed.
    #[error("ledger storage error: {0}")]
    Storage(#[from] sled::Error),
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

type TxResult<T> = Result<T, sled::transaction::ConflictableTransactionError<LedgerError>>;

fn abort<T>(e: LedgerError) -> TxResult<T> {
    Err(sled::transaction::ConflictableTransactionError::Abort(e))
}

fn tx_error(e: sled::transaction::TransactionError<LedgerError>) -> LedgerError {
    match e {
        sled::transaction::TransactionError::Abort(e) => e,
        sled::transaction::TransactionError::Storage(e) => LedgerError::Storage(e),
    }
}

fn serial_key(serial_hex: &str) -> Result<Vec<u8>, LedgerError> {
    hex::decode(serial_hex).map_err(|_| LedgerError::NotFound(serial_hex.into()))
}

fn tx_get(
    tx: &sled::transaction::TransactionalTree,
    serial_hex: &str,
) -> TxResult<Option<CertRecord>> {
    let Ok(key) = hex::decode(serial_hex) else {
        return Ok(None);
    };
    match tx.get(key)? {
        Some(bytes) => match decode(serial_hex, &bytes) {
            Ok(rec) => Ok(Some(rec)),
            Err(e) => abort(e),
        },
        None => Ok(None),
    }
}

fn tx_put(tx: &sled::transaction::TransactionalTree, rec: &CertRecord) -> TxResult<()> {
    let key = match serial_key(&rec.serial) {
        Ok(k) => k,
        Err(e) => return abort(e),
    };
    let value = match encode(rec) {
        Ok(v) => v,
        Err(e) => return abort(e),
    };
    tx.insert(key, value)?;
    Ok(())
}

fn is_lock_error(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

/// An open ledger.
#[derive(Clone)]
pub struct Ledger {
    db: sled::Db,
    certs: sled::Tree,
    meta: sled::Tree,
}

impl Ledger {
    /// Opens (or creates) the ledger at `dir`, waiting up to `wait` while another process holds it.
    pub fn open(dir: &Path, wait: Duration) -> Result<Ledger, LedgerError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(5);
        let db = loop {
            match sled::Config::new().path(dir).open() {
                Ok(db) => break db,
                Err(e) if is_lock_error(&e) && start.elapsed() < wait => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) if is_lock_error(&e) => {
                    return Err(LedgerError::Busy(dir.display().to_string(), wait))
                }
                Err(e) => return Err(e.into()),
            }
        };
        let certs = db.open_tree(TREE_CERTS)?;
        let meta = db.open_tree(TREE_META)?;
        Ok(Ledger { db, certs, meta })
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<(), LedgerError> {
        self.db.flush()?;
        Ok(())
    }

    /// The tree the server's data tools use (same database: one process owns it all).
    pub fn data_tree(&self) -> Result<sled::Tree, LedgerError> {
        Ok(self.db.open_tree("data")?)
    }

    /// The CA's metadata, if `ca init` has written it.
    pub fn ca_meta(&self) -> Result<Option<CaMeta>, LedgerError> {
        self.meta
            .get(KEY_CA)?
            .map(|v| decode("meta/ca", &v))
            .transpose()
    }

    /// Records the CA's metadata (durably).
    pub fn set_ca_meta(&self, meta: &CaMeta) -> Result<(), LedgerError> {
        self.meta.insert(KEY_CA, encode(meta)?)?;
        self.flush()
    }

    /// Adds a new certificate record; durable when this returns. A serial already present is
    /// refused, never overwritten.
    pub fn insert_new(&self, rec: &CertRecord) -> Result<(), LedgerError> {
        let key = hex::decode(&rec.serial).map_err(|e| LedgerError::Corrupt {
            key: rec.serial.clone(),
            message: e.to_string(),
        })?;
        let swapped =
            self.certs
                .compare_and_swap(key, None as Option<&[u8]>, Some(encode(rec)?))?;
        if swapped.is_err() {
            return Err(LedgerError::DuplicateSerial(rec.serial.clone()));
        }
        self.flush()
    }

    /// Imports many records in one batch and one flush (bulk loads, benchmarks). A serial that
    /// is already present is an error and nothing is written.
    pub fn insert_many(&self, recs: &[CertRecord]) -> Result<(), LedgerError> {
        let mut batch = sled::Batch::default();
        for rec in recs {
            let key = hex::decode(&rec.serial).map_err(|e| LedgerError::Corrupt {
                key: rec.serial.clone(),
                message: e.to_string(),
            })?;
            if self.certs.contains_key(&key)? {
                return Err(LedgerError::DuplicateSerial(rec.serial.clone()));
            }
            batch.insert(key, encode(rec)?);
        }
        self.certs.apply_batch(batch)?;
        self.flush()
    }

    /// Looks up one serial (hex).
    pub fn get(&self, serial_hex: &str) -> Result<Option<CertRecord>, LedgerError> {
        let Ok(key) = hex::decode(serial_hex) else {
            return Ok(None);
        };
        self.certs
            .get(key)?
            .map(|v| decode(serial_hex, &v))
            .transpose()
    }

    /// Every record, oldest issuance first.
    pub fn all(&self) -> Result<Vec<CertRecord>, LedgerError> {
        let mut out = Vec::new();
        for item in self.certs.iter() {
            let (k, v) = item?;
            out.push(decode(&hex::encode(&k), &v)?);
        }
        out.sort_by(|a: &CertRecord, b| {
            a.issued_at
                .cmp(&b.issued_at)
                .then_with(|| a.serial.cmp(&b.serial))
        });
        Ok(out)
    }

    /// Marks a certificate revoked: a compare-and-swap, so two concurrent revokes produce one
    /// revocation and one [`LedgerError::AlreadyRevoked`]. Durable when this returns.
    pub fn revoke(
        &self,
        serial_hex: &str,
        reason: Reason,
        at: i64,
    ) -> Result<CertRecord, LedgerError> {
        let key = hex::decode(serial_hex).map_err(|_| LedgerError::NotFound(serial_hex.into()))?;
        loop {
            let old = self
                .certs
                .get(&key)?
                .ok_or_else(|| LedgerError::NotFound(serial_hex.into()))?;
            let mut rec: CertRecord = decode(serial_hex, &old)?;
            if rec.revocation.is_some() {
                return Err(LedgerError::AlreadyRevoked {
                    serial: rec.serial,
                    name: rec.name,
                });
            }
            rec.revocation = Some(Revocation { at, reason });
            let new = encode(&rec)?;
            if self
                .certs
                .compare_and_swap(&key, Some(old), Some(new))?
                .is_ok()
            {
                self.flush()?;
                return Ok(rec);
            }
        }
    }

    /// Records a renewal in one transaction: the successor `new` is inserted and `old` is
    /// linked to it, or nothing is written. The transaction is the compare-and-swap that makes
    /// renewal and revocation of one chain serial: `old` must be unrevoked, unexpired at `now`
    /// and not renewed before, and a concurrent [`Ledger::revoke_chain`] either commits first
    /// (and this fails) or sees the new link (and revokes `new` as well). Durable on return.
    pub fn record_renewal(&self, old: &str, new: &CertRecord, now: i64) -> Result<(), LedgerError> {
        self.certs
            .transaction(|tx| {
                let Some(mut rec) = tx_get(tx, old)? else {
                    return abort(LedgerError::NotFound(old.into()));
                };
                if rec.revocation.is_some() {
                    return abort(LedgerError::NotRenewable {
                        serial: old.into(),
                        why: "revoked",
                    });
                }
                if now > rec.not_after {
                    return abort(LedgerError::NotRenewable {
                        serial: old.into(),
                        why: "expired",
                    });
                }
                if rec.superseded_by.is_some() {
                    return abort(LedgerError::AlreadyRenewed(old.into()));
                }
                if tx_get(tx, &new.serial)?.is_some() {
                    return abort(LedgerError::DuplicateSerial(new.serial.clone()));
                }
                rec.superseded_by = Some(new.serial.clone());
                tx_put(tx, &rec)?;
                tx_put(tx, new)
            })
            .map_err(tx_error)?;
        self.flush()
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

    /// Revokes every certificate of the renewal chain `serial` belongs to: its predecessors
    /// that are still valid (in their renewal grace period) and every certificate renewed from
    /// it, forward to the newest. One transaction, so a renewal racing this either lands before
    /// (and its certificate is revoked here too) or fails. Durable on return.
    pub fn revoke_chain(
        &self,
        serial: &str,
        reason: Reason,
        at: i64,
    ) -> Result<ChainRevocation, LedgerError> {
        let out = self
            .certs
            .transaction(|tx| {
                let Some(mut first) = tx_get(tx, serial)? else {
                    return abort(LedgerError::NotFound(serial.into()));
                };
                // Back to the first certificate of the chain...
                for _ in 0..MAX_CHAIN {
                    let Some(prev) = first.renewed_from.clone() else {
                        break;
                    };
                    match tx_get(tx, &prev)? {
                        Some(p) => first = p,
                        None => break,
                    }
                }
                // ...then forward through every successor.
                let mut out = ChainRevocation::default();
                let mut next = Some(first);
                let mut steps = 0;
                while let Some(mut rec) = next.take() {
                    steps += 1;
                    if steps > MAX_CHAIN {
                        return abort(LedgerError::Corrupt {
                            key: serial.into(),
                            message: "renewal chain loops".into(),
                        });
                    }
                    let successor = rec.superseded_by.clone();
                    if rec.revocation.is_some() {
                        out.already.push(rec);
                    } else {
                        rec.revocation = Some(Revocation { at, reason });
                        tx_put(tx, &rec)?;
                        out.newly.push(rec);
                    }
                    if let Some(s) = successor {
                        next = tx_get(tx, &s)?;
                    }
                }
                Ok(out)
            })
            .map_err(tx_error)?;
        self.flush()?;
        Ok(out)
    }

    /// Reserves the next CRL number: strictly greater than every number handed out before,
    /// durable before it is returned.
    pub fn next_crl_number(&self) -> Result<u64, LedgerError> {
        let next = self.meta.update_and_fetch(KEY_CRL_NUMBER, |old| {
            let n = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes);
            Some(n.saturating_add(1).to_be_bytes().to_vec())
        })?;
        self.flush()?;
        Ok(next
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(1, u64::from_be_bytes))
    }

    /// The last CRL number handed out (0 if none).
    pub fn crl_number(&self) -> Result<u64, LedgerError> {
        Ok(self
            .meta
            .get(KEY_CRL_NUMBER)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, LedgerError> {
    serde_json::to_vec(v).map_err(|e| LedgerError::Corrupt {
        key: "(new record)".into(),
        message: e.to_string(),
    })
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, LedgerError> {
    serde_json::from_slice(bytes).map_err(|e| LedgerError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(serial: &str, name: &str) -> CertRecord {
        CertRecord {
            v: RECORD_VERSION,
            serial: serial.into(),
            name: name.into(),
            role: Some("viewer".into()),
            kind: CertKind::Client,
            spiffe_id: format!("spiffe://example.org/client/{name}"),
            sans: vec![],
            not_before: 0,
            not_after: i64::MAX / 2,
            issued_at: 1,
            cert_pem: String::new(),
            revocation: None,
            renewed_from: None,
            superseded_by: None,
            chain_root: None,
            chain_started: None,
            issuer: None,
        }
    }

    fn successor(old: &CertRecord, serial: &str) -> CertRecord {
        CertRecord {
            serial: serial.into(),
            renewed_from: Some(old.serial.clone()),
            chain_root: Some(old.chain_root().to_string()),
            chain_started: Some(old.chain_started()),
            ..record(serial, &old.name)
        }
    }

    #[test]
    fn revoking_any_certificate_of_a_chain_revokes_the_whole_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = Ledger::open(dir.path(), LOCK_WAIT).expect("open");
        let a = record("0a", "alice");
        l.insert_new(&a).expect("insert");
        let b = successor(&a, "0b");
        l.record_renewal("0a", &b, 10).expect("renew a");
        let c = successor(&b, "0c");
        l.record_renewal("0b", &c, 11).expect("renew b");
        // The middle one was retired as superseded already.
        l.revoke("0b", Reason::Superseded, 12).expect("retire b");
        let out = l
            .revoke_chain("0a", Reason::KeyCompromise, 13)
            .expect("chain");
        let newly: Vec<&str> = out.newly.iter().map(|r| r.serial.as_str()).collect();
        assert_eq!(newly, ["0a", "0c"]);
        assert_eq!(out.already.len(), 1);
        for s in ["0a", "0b", "0c"] {
            assert!(l.get(s).expect("get").expect("rec").revocation.is_some());
        }
        assert_eq!(l.get("0c").expect("get").expect("c").chain_root(), "0a");
        // Once revoked, nothing in the chain can be renewed.
        let d = successor(&c, "0d");
        assert!(matches!(
            l.record_renewal("0c", &d, 14),
            Err(LedgerError::NotRenewable { why: "revoked", .. })
        ));
        assert!(l.get("0d").expect("get").is_none());
    }

    #[test]
    fn a_renewal_is_refused_for_expired_or_already_renewed_certificates_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = Ledger::open(dir.path(), LOCK_WAIT).expect("open");
        let a = CertRecord {
            not_after: 100,
            ..record("0a", "alice")
        };
        l.insert_new(&a).expect("insert");
        assert!(matches!(
            l.record_renewal("0a", &successor(&a, "0b"), 101),
            Err(LedgerError::NotRenewable { why: "expired", .. })
        ));
        l.record_renewal("0a", &successor(&a, "0c"), 99)
            .expect("renew");
        assert!(matches!(
            l.record_renewal("0a", &successor(&a, "0d"), 99),
            Err(LedgerError::AlreadyRenewed(_))
        ));
        let serials: Vec<String> = l
            .all()
            .expect("all")
            .into_iter()
            .map(|r| r.serial)
            .collect();
        assert_eq!(serials.len(), 2, "{serials:?}");
        assert_eq!(
            l.get("0a")
                .expect("get")
                .expect("a")
                .superseded_by
                .as_deref(),
            Some("0c")
        );
    }

    #[test]
    fn revoke_is_compare_and_swap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = Ledger::open(dir.path(), LOCK_WAIT).expect("open");
        l.insert_new(&record("01aa", "alice")).expect("insert");
        assert!(matches!(
            l.insert_new(&record("01aa", "mallory")),
            Err(LedgerError::DuplicateSerial(_))
        ));
        let r = l.revoke("01aa", Reason::KeyCompromise, 5).expect("revoke");
        assert_eq!(r.revocation.map(|x| x.reason), Some(Reason::KeyCompromise));
        assert!(matches!(
            l.revoke("01aa", Reason::Superseded, 6),
            Err(LedgerError::AlreadyRevoked { .. })
        ));
        assert!(matches!(
            l.revoke("02bb", Reason::Superseded, 6),
            Err(LedgerError::NotFound(_))
        ));
        assert_eq!(l.all().expect("all")[0].name, "alice");
    }

    #[test]
    fn crl_numbers_only_go_up_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let l = Ledger::open(dir.path(), LOCK_WAIT).expect("open");
            assert_eq!(l.next_crl_number().expect("n"), 1);
            assert_eq!(l.next_crl_number().expect("n"), 2);
        }
        let l = Ledger::open(dir.path(), LOCK_WAIT).expect("reopen");
        assert_eq!(l.crl_number().expect("n"), 2);
        assert_eq!(l.next_crl_number().expect("n"), 3);
    }
}
