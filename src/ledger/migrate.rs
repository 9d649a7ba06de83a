//! `ledger migrate`: copies a sled ledger into PostgreSQL completely, then proves it.
//!
//! Order matters for a copy that can be interrupted: the records go in (transactions of 5,000),
//! then the CRL counter is raised, and the CA metadata is written last. A database without CA
//! metadata reads as "not initialized", so a copy cut short is never mistaken for a ledger, and
//! running the command again finishes it: records already there must equal the source's and
//! only the missing ones are added. The source is marked moved (read-only) at the end.

use super::{CaMeta, CertRecord, Ledger, LedgerError};

/// What a migration did and checked.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrationReport {
    /// Where the copy went (`PostgreSQL at user@host:port/db`).
    pub target: String,
    /// Records in both ledgers.
    pub records: usize,
    /// Of which revoked.
    pub revoked: usize,
    /// The target's CRL number after the copy (never below the source's).
    pub crl_number: u64,
    /// Whether the records were already there (a second run).
    pub resumed: bool,
}

/// Copies `src` into `dst` and verifies every record, the CA metadata and the CRL counter.
pub fn copy_and_verify(src: &Ledger, dst: &Ledger) -> Result<MigrationReport, LedgerError> {
    let meta = src
        .ca_meta()?
        .ok_or_else(|| LedgerError::Config("the source ledger holds no CA".into()))?;
    let records = src.all()?;
    let existing_meta = dst.ca_meta()?;
    if let Some(m) = &existing_meta {
        if *m != meta {
            return Err(LedgerError::Config(format!(
                "{} already holds another CA ({}); refusing to mix two CAs in one ledger",
                dst.describe(),
                m.name
            )));
        }
    }
    // Records already in the target (an earlier run, cut short) must be exactly the source's;
    // the missing ones are added.
    let present = dst.all()?;
    let resumed = !present.is_empty();
    let by_serial: std::collections::HashMap<&str, &CertRecord> =
        records.iter().map(|r| (r.serial.as_str(), r)).collect();
    if let Some(stray) = present
        .iter()
        .find(|p| by_serial.get(p.serial.as_str()) != Some(p))
    {
        return Err(LedgerError::Config(format!(
            "{} already holds record {} that differs from this ledger's or is not in it; \
             refusing to merge",
            dst.describe(),
            stray.serial
        )));
    }
    let have: std::collections::HashSet<&str> = present.iter().map(|p| p.serial.as_str()).collect();
    let missing: Vec<CertRecord> = records
        .iter()
        .filter(|r| !have.contains(r.serial.as_str()))
        .cloned()
        .collect();
    for chunk in missing.chunks(5_000) {
        dst.insert_many(chunk)?;
    }
    dst.raise_crl_number(src.crl_number()?)?;
    // Foreign serials seen revoked stay refused on the fleet too.
    let foreign = src.foreign_revocations(i64::MIN)?;
    dst.remember_foreign_revocations(&foreign)?;
    let copied: std::collections::HashSet<String> = dst
        .foreign_revocations(i64::MIN)?
        .into_iter()
        .map(|c| c.key)
        .collect();
    if let Some(lost) = foreign.iter().find(|f| !copied.contains(&f.key)) {
        return Err(LedgerError::Corrupt {
            key: dst.describe(),
            message: format!(
                "verification after the copy failed: foreign revocation {} is missing",
                lost.key
            ),
        });
    }
    if existing_meta.is_none() {
        dst.init_ca_meta(&meta)?;
    }
    verify(src, dst, &meta, &records)?;
    // From now on the sled copy must not take revocations the fleet would never see.
    if let Ledger::Sled(s) = src {
        if s.moved_to().is_none() {
            s.mark_moved(&dst.describe())?;
        }
    }
    Ok(MigrationReport {
        target: dst.describe(),
        records: records.len(),
        revoked: records.iter().filter(|r| r.revocation.is_some()).count(),
        crl_number: dst.crl_number()?,
        resumed,
    })
}

/// Reads everything back from `dst` and compares it with what was copied.
fn verify(
    src: &Ledger,
    dst: &Ledger,
    meta: &CaMeta,
    records: &[CertRecord],
) -> Result<(), LedgerError> {
    let mismatch = |what: String| LedgerError::Corrupt {
        key: dst.describe(),
        message: format!("verification after the copy failed: {what}"),
    };
    if dst.ca_meta()?.as_ref() != Some(meta) {
        return Err(mismatch("the CA metadata differs".into()));
    }
    let copied = dst.all()?;
    if copied.len() != records.len() {
        return Err(mismatch(format!(
            "{} records in the source, {} in the copy",
            records.len(),
            copied.len()
        )));
    }
    if let Some((a, _)) = records.iter().zip(&copied).find(|(a, b)| a != b) {
        return Err(mismatch(format!("record {} differs", a.serial)));
    }
    // What replicas query: the indexed revocation column, not only the documents.
    let mut want: Vec<String> = records
        .iter()
        .filter(|r| r.revocation.is_some())
        .map(|r| r.serial.clone())
        .collect();
    let mut got = dst.revoked_serials()?;
    want.sort_unstable();
    got.sort_unstable();
    if want != got {
        return Err(mismatch(format!(
            "{} revoked in the source, {} marked revoked in the copy",
            want.len(),
            got.len()
        )));
    }
    if dst.crl_number()? < src.crl_number()? {
        return Err(mismatch("the CRL number went down".into()));
    }
    Ok(())
}
