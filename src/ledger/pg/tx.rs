//! The transactions behind each ledger operation, and the schema migration. Every function
//! here runs on a connection the caller holds; row locks (`FOR UPDATE`) make each one a
//! compare-and-swap the database enforces.

use futures_util::future::BoxFuture;
use tokio_postgres::{Client, Transaction};

use super::schema::{MIGRATIONS, MIGRATION_LOCK, REVOCATION_CHANNEL};
use super::{OpError, RETRIES};
use crate::ledger::{decode, encode, ChainRevocation, LedgerError, MAX_CHAIN};
use crate::ledger::{CertRecord, Revocation};
use crate::pki::build::Reason;

/// Now, in Unix milliseconds (the revoke time announced to replicas, for propagation lag).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(super) fn json<T: serde::Serialize>(v: &T) -> Result<String, LedgerError> {
    String::from_utf8(encode(v)?).map_err(|e| LedgerError::Corrupt {
        key: "(new record)".into(),
        message: e.to_string(),
    })
}

pub(super) async fn migrate(c: &mut Client) -> Result<(), OpError> {
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    // Up to date (the common case): nothing to create, so replicas can run as a role without
    // CREATE rights on the database.
    let exists: bool = c
        .query_one("SELECT to_regclass('mcpzt_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if exists {
        let current: i32 = c
            .query_one("SELECT COALESCE(max(version), 0) FROM mcpzt_schema", &[])
            .await?
            .get(0);
        if current == known {
            return Ok(());
        }
        if current > known {
            return Err(newer(current, known));
        }
    }
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS mcpzt_schema (\
         version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let current: i32 = tx
        .query_one("SELECT COALESCE(max(version), 0) FROM mcpzt_schema", &[])
        .await?
        .get(0);
    if current > known {
        return Err(newer(current, known));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO mcpzt_schema (version) VALUES ($1)", &[version])
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

fn newer(current: i32, known: i32) -> OpError {
    LedgerError::Config(format!(
        "the ledger database has schema version {current}, newer than this mcp-zt knows \
         ({known}): upgrade mcp-zt before pointing it at this database"
    ))
    .into()
}

/// Runs `body` in a transaction, again (up to [`RETRIES`] times) when PostgreSQL aborted it
/// for a deadlock or serialization failure; commits on success.
pub(super) async fn retrying<T, F>(c: &mut Client, body: F) -> Result<T, OpError>
where
    F: for<'t> Fn(&'t Transaction<'t>) -> BoxFuture<'t, Result<T, OpError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let tx = c.transaction().await?;
        let r = body(&tx).await;
        let r = match r {
            Ok(v) => tx.commit().await.map(|_| v).map_err(OpError::Pg),
            Err(e) => Err(e),
        };
        match r {
            Err(e) if e.retryable() && attempt < RETRIES => continue,
            r => return r,
        }
    }
}

/// Reads one record with its row locked until the transaction ends.
pub(super) async fn locked(
    tx: &Transaction<'_>,
    serial: &str,
) -> Result<Option<CertRecord>, OpError> {
    let row = tx
        .query_opt(
            "SELECT record FROM mcpzt_certs WHERE serial = $1 FOR UPDATE",
            &[&serial],
        )
        .await?;
    Ok(match row {
        Some(r) => Some(decode(serial, r.get::<_, &str>(0).as_bytes())?),
        None => None,
    })
}

/// Writes a revoked record, takes its place in the revocation order and announces it (the
/// announcement is delivered only if the transaction commits).
pub(super) async fn mark_revoked(tx: &Transaction<'_>, rec: &CertRecord) -> Result<(), OpError> {
    let value = json(rec)?;
    tx.execute(
        "UPDATE mcpzt_certs SET record = $2, revoked = true, \
         revocation_seq = nextval('mcpzt_revocation_seq') WHERE serial = $1",
        &[&rec.serial, &value],
    )
    .await?;
    let payload = format!("{} {}", rec.serial, unix_ms());
    tx.execute("SELECT pg_notify($1, $2)", &[&REVOCATION_CHANNEL, &payload])
        .await?;
    Ok(())
}

pub(super) async fn renew_in(
    tx: &Transaction<'_>,
    old: &str,
    new: &CertRecord,
    new_json: &str,
    now: i64,
) -> Result<(), OpError> {
    let Some(mut rec) = locked(tx, old).await? else {
        return Err(LedgerError::NotFound(old.into()).into());
    };
    if rec.revocation.is_some() {
        return Err(LedgerError::NotRenewable {
            serial: old.into(),
            why: "revoked",
        }
        .into());
    }
    if now > rec.not_after {
        return Err(LedgerError::NotRenewable {
            serial: old.into(),
            why: "expired",
        }
        .into());
    }
    if rec.superseded_by.is_some() {
        return Err(LedgerError::AlreadyRenewed(old.into()).into());
    }
    let inserted = tx
        .execute(
            "INSERT INTO mcpzt_certs (serial, record, issued_at, superseded_by) \
             VALUES ($1, $2, $3, NULL)",
            &[&new.serial, &new_json, &new.issued_at],
        )
        .await;
    if let Err(e) = inserted {
        let e = OpError::Pg(e);
        return Err(if e.is_unique_violation() {
            LedgerError::DuplicateSerial(new.serial.clone()).into()
        } else {
            e
        });
    }
    rec.superseded_by = Some(new.serial.clone());
    let value = json(&rec)?;
    tx.execute(
        "UPDATE mcpzt_certs SET record = $2, superseded_by = $3 WHERE serial = $1",
        &[&rec.serial, &value, &rec.superseded_by],
    )
    .await?;
    Ok(())
}

pub(super) async fn revoke_chain_in(
    tx: &Transaction<'_>,
    serial: &str,
    reason: Reason,
    at: i64,
) -> Result<ChainRevocation, OpError> {
    let Some(mut first) = locked(tx, serial).await? else {
        return Err(LedgerError::NotFound(serial.into()).into());
    };
    for _ in 0..MAX_CHAIN {
        let Some(prev) = first.renewed_from.clone() else {
            break;
        };
        match locked(tx, &prev).await? {
            Some(p) => first = p,
            None => break,
        }
    }
    let mut out = ChainRevocation::default();
    let mut next = Some(first);
    let mut steps = 0;
    while let Some(mut rec) = next.take() {
        steps += 1;
        if steps > MAX_CHAIN {
            return Err(LedgerError::Corrupt {
                key: serial.into(),
                message: "renewal chain loops".into(),
            }
            .into());
        }
        let successor = rec.superseded_by.clone();
        if rec.revocation.is_some() {
            out.already.push(rec);
        } else {
            rec.revocation = Some(Revocation { at, reason });
            mark_revoked(tx, &rec).await?;
            out.newly.push(rec);
        }
        if let Some(s) = successor {
            next = locked(tx, &s).await?;
        }
    }
    Ok(out)
}
