//! The embedded backend: sled in `HOME/ledger`, one process at a time.
//!
//! Trees: `certs` (serial bytes → [`CertRecord`] as JSON) and `meta` (the CA's [`CaMeta`] and
//! the CRL number). Every write is flushed before the call returns, so a record the caller was
//! told about survives `kill -9`. sled allows one process per database; [`SledLedger::open`]
//! waits briefly for another mcp-zt process to finish instead of failing.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{decode, encode, ChainRevocation, LedgerError, MAX_CHAIN};
use super::{CaMeta, CertRecord, Revocation};
use crate::pki::build::Reason;

const TREE_CERTS: &str = "certs";
const TREE_META: &str = "meta";
const KEY_CA: &[u8] = b"ca";
const KEY_CRL_NUMBER: &[u8] = b"crl_number";
/// Set by `ledger migrate`: where the ledger went. The sled copy is read-only from then on.
const KEY_MOVED_TO: &[u8] = b"moved_to";

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
pub struct SledLedger {
    moved_to: Option<String>,
    path: std::path::PathBuf,
    db: sled::Db,
    certs: sled::Tree,
    meta: sled::Tree,
}

impl SledLedger {
    /// Opens (or creates) the ledger at `dir`, waiting up to `wait` while another process holds it.
    pub fn open(dir: &Path, wait: Duration) -> Result<SledLedger, LedgerError> {
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
        let moved_to = meta
            .get(KEY_MOVED_TO)?
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        Ok(SledLedger {
            moved_to,
            path: dir.to_path_buf(),
            db,
            certs,
            meta,
        })
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<(), LedgerError> {
        self.db.flush()?;
        Ok(())
    }

    /// Another tree of the same database (foreign revocations).
    pub(super) fn tree(&self, name: &str) -> Result<sled::Tree, LedgerError> {
        Ok(self.db.open_tree(name)?)
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
        self.writable()?;
        self.meta.insert(KEY_CA, encode(meta)?)?;
        self.flush()
    }

    /// Adds a new certificate record; durable when this returns. A serial already present is
    /// refused, never overwritten.
    pub fn insert_new(&self, rec: &CertRecord) -> Result<(), LedgerError> {
        self.writable()?;
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
        self.writable()?;
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
        self.writable()?;
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
    /// and not renewed before, and a concurrent [`SledLedger::revoke_chain`] either commits first
    /// (and this fails) or sees the new link (and revokes `new` as well). Durable on return.
    pub fn record_renewal(&self, old: &str, new: &CertRecord, now: i64) -> Result<(), LedgerError> {
        self.writable()?;
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
        self.writable()?;
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
        self.writable()?;
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

    /// Raises the CRL counter to at least `n`; durable on return.
    pub fn raise_crl_number(&self, n: u64) -> Result<(), LedgerError> {
        self.writable()?;
        self.meta.fetch_and_update(KEY_CRL_NUMBER, |old| {
            let cur = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes);
            Some(cur.max(n).to_be_bytes().to_vec())
        })?;
        self.flush()
    }

    /// The database folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuses writes to a ledger `ledger migrate` moved to PostgreSQL: two ledgers taking
    /// revocations apart would each miss the other's.
    pub(super) fn writable(&self) -> Result<(), LedgerError> {
        match &self.moved_to {
            Some(to) => Err(LedgerError::Moved(to.clone())),
            None => Ok(()),
        }
    }

    /// Marks this ledger as moved to `to` (read-only from now on); durable on return.
    pub fn mark_moved(&self, to: &str) -> Result<(), LedgerError> {
        self.meta.insert(KEY_MOVED_TO, to.as_bytes())?;
        self.flush()
    }

    /// Where `ledger migrate` moved this ledger, if it did.
    pub fn moved_to(&self) -> Option<&str> {
        self.moved_to.as_deref()
    }

    /// Writes the CA metadata if there is none (compare-and-swap); durable on return.
    pub fn init_ca_meta(&self, meta: &CaMeta) -> Result<(), LedgerError> {
        self.writable()?;
        let swapped =
            self.meta
                .compare_and_swap(KEY_CA, None as Option<&[u8]>, Some(encode(meta)?))?;
        if swapped.is_err() {
            return Err(LedgerError::AlreadyInitialized);
        }
        self.flush()
    }
}
