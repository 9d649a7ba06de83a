//! The PostgreSQL backend: the shared ledger of a fleet of replicas.
//!
//! What the database enforces (schema in [`schema`]): one row per serial (primary key); a
//! revocation is a row-locked read-check-update in one transaction, so two revokes give one
//! revocation and one "already revoked"; renewal and chain revocation lock the rows they read,
//! so they serialize like sled's transactions (a deadlock between two of them is retried);
//! the CRL number is one row incremented in place; triggers refuse un-revoking and a CRL
//! number that goes down. Nothing relies on a lock inside this process.
//!
//! Every committed revocation is announced with `NOTIFY` on [`schema::REVOCATION_CHANNEL`]
//! (delivered only if the transaction commits); replicas `LISTEN` ([`listen`]) and resync
//! periodically to catch what a dropped connection missed.
//!
//! The rest of mcp-zt calls the ledger synchronously (the CLI, and the server from blocking
//! threads). [`PgLedger`] owns a small runtime of its own for tokio-postgres, so a call from
//! any thread, inside an async runtime or not, neither panics nor needs one.

mod conn;
mod foreign;
mod oauth;
pub mod schema;
mod tx;

pub use conn::{connect, listen, parse_notification, pg_error, records_of, revoked_serials};
pub use tx::unix_ms;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::target::{PgTarget, CONNECT_TIMEOUT};
use super::{decode, ChainRevocation, LedgerError, LedgerSpec};
use super::{CaMeta, CertRecord, Revocation};
use crate::pki::build::Reason;
use tx::{json, locked, mark_revoked, migrate, renew_in, retrying, revoke_chain_in};

/// The longest one ledger operation may take once connected.
const OP_TIMEOUT: Duration = Duration::from_secs(15);

/// How often a transaction that lost a deadlock or serialization race is retried.
pub(super) const RETRIES: usize = 5;

/// An error inside an operation: PostgreSQL's, or the ledger's own verdict.
pub enum OpError {
    /// From tokio-postgres.
    Pg(tokio_postgres::Error),
    /// A ledger verdict (not found, already revoked, ...).
    Ledger(LedgerError),
}

impl From<tokio_postgres::Error> for OpError {
    fn from(e: tokio_postgres::Error) -> Self {
        OpError::Pg(e)
    }
}

impl From<LedgerError> for OpError {
    fn from(e: LedgerError) -> Self {
        OpError::Ledger(e)
    }
}

impl OpError {
    fn into_ledger(self, target: &str) -> LedgerError {
        match self {
            OpError::Ledger(e) => e,
            OpError::Pg(e) => pg_error(target, &e),
        }
    }

    fn retryable(&self) -> bool {
        matches!(self, OpError::Pg(e) if matches!(
            e.code(),
            Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::T_R_SERIALIZATION_FAILURE
        ))
    }

    fn is_unique_violation(&self) -> bool {
        matches!(self, OpError::Pg(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION))
    }
}

type Op<T> = Box<dyn for<'c> FnOnce(&'c mut Client) -> BoxFuture<'c, Result<T, OpError>> + Send>;

struct Inner {
    target: PgTarget,
    client: tokio::sync::Mutex<Option<Client>>,
}

impl Inner {
    async fn call<T>(&self, op: Op<T>, gave_up: &AtomicBool) -> Result<T, LedgerError> {
        let mut guard = self.client.lock().await;
        // The caller stopped waiting while earlier calls held the connection: a revoke or a
        // CRL number nobody will hear of must not be replayed later.
        if gave_up.load(Ordering::Acquire) {
            return Err(self.unreachable("abandoned: the caller stopped waiting"));
        }
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = None;
            // The whole of TCP, TLS and login, not only the TCP connect, is bounded.
            match tokio::time::timeout(CONNECT_TIMEOUT, connect(&self.target, None)).await {
                Ok(c) => *guard = Some(c?),
                Err(_) => {
                    return Err(
                        self.unreachable(&format!("no connection within {CONNECT_TIMEOUT:?}"))
                    )
                }
            }
        }
        let Some(client) = guard.as_mut() else {
            return Err(self.unreachable("not connected"));
        };
        let r = match tokio::time::timeout(OP_TIMEOUT, op(client)).await {
            Ok(r) => r.map_err(|e| e.into_ledger(&self.target.shown)),
            Err(_) => Err(self.unreachable(&format!("no answer within {OP_TIMEOUT:?}"))),
        };
        if matches!(r, Err(LedgerError::Unreachable { .. })) {
            // Connection state unknown: start afresh next time.
            *guard = None;
        }
        r
    }

    fn unreachable(&self, message: &str) -> LedgerError {
        LedgerError::Unreachable {
            target: self.target.shown.clone(),
            message: message.into(),
        }
    }
}

/// The PostgreSQL ledger.
pub struct PgLedger {
    rt: Option<tokio::runtime::Runtime>,
    inner: Arc<Inner>,
}

impl Drop for PgLedger {
    fn drop(&mut self) {
        // Dropping a runtime blocks; this may run on an async worker.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl PgLedger {
    /// Connects and applies the schema migrations this build knows.
    pub fn open(spec: &LedgerSpec) -> Result<PgLedger, LedgerError> {
        let target = spec.target()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mcp-zt-ledger")
            .enable_all()
            .build()
            .map_err(|e| LedgerError::Config(format!("cannot start the ledger thread: {e}")))?;
        let me = PgLedger {
            rt: Some(rt),
            inner: Arc::new(Inner {
                target,
                client: tokio::sync::Mutex::new(None),
            }),
        };
        me.run(|c| Box::pin(migrate(c)))?;
        Ok(me)
    }

    /// `user@host:port/database`.
    pub fn target(&self) -> &str {
        &self.inner.target.shown
    }

    /// The connection settings (for the server's listening connection).
    pub fn pg_target(&self) -> &PgTarget {
        &self.inner.target
    }

    fn run<T: Send + 'static, F>(&self, op: F) -> Result<T, LedgerError>
    where
        F: for<'c> FnOnce(&'c mut Client) -> BoxFuture<'c, Result<T, OpError>> + Send + 'static,
    {
        let op: Op<T> = Box::new(op);
        let Some(rt) = &self.rt else {
            return Err(self.inner.unreachable("the ledger is closed"));
        };
        let inner = self.inner.clone();
        let (tx, rx) = sync_channel(1);
        let gave_up = Arc::new(AtomicBool::new(false));
        let flag = gave_up.clone();
        rt.spawn(async move {
            let _ = tx.send(inner.call(op, &flag).await);
        });
        // Waiting for the lock held by an earlier call counts too: never block for ever.
        rx.recv_timeout(CONNECT_TIMEOUT + OP_TIMEOUT + Duration::from_secs(5))
            .map_err(|_| {
                gave_up.store(true, Ordering::Release);
                self.inner.unreachable("no answer from the ledger in time")
            })?
    }

    /// The CA's metadata.
    pub fn ca_meta(&self) -> Result<Option<CaMeta>, LedgerError> {
        self.run(|c| {
            Box::pin(async move {
                let row = c
                    .query_opt("SELECT value FROM mcpzt_meta WHERE key = 'ca'", &[])
                    .await?;
                Ok(match row {
                    Some(r) => Some(decode("meta/ca", r.get::<_, &str>(0).as_bytes())?),
                    None => None,
                })
            })
        })
    }

    /// Records the CA's metadata.
    pub fn set_ca_meta(&self, meta: &CaMeta) -> Result<(), LedgerError> {
        let value = json(meta)?;
        self.run(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO mcpzt_meta (key, value) VALUES ('ca', $1) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    &[&value],
                )
                .await?;
                Ok(())
            })
        })
    }

    /// Writes the CA metadata if there is none.
    pub fn init_ca_meta(&self, meta: &CaMeta) -> Result<(), LedgerError> {
        let value = json(meta)?;
        self.run(move |c| {
            Box::pin(async move {
                let n = c
                    .execute(
                        "INSERT INTO mcpzt_meta (key, value) VALUES ('ca', $1) \
                         ON CONFLICT (key) DO NOTHING",
                        &[&value],
                    )
                    .await?;
                if n == 0 {
                    return Err(LedgerError::AlreadyInitialized.into());
                }
                Ok(())
            })
        })
    }

    /// The revoked records and `count` reserved CRL numbers (the first returned), in one
    /// transaction that locks the counter first: a publisher that gets a higher number reads
    /// after every earlier publisher committed.
    pub fn crl_snapshot(&self, count: u64) -> Result<(Vec<CertRecord>, u64), LedgerError> {
        let count = i64::try_from(count).unwrap_or(1).max(1);
        self.run(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                tx.execute("SELECT n FROM mcpzt_crl_number WHERE id FOR UPDATE", &[])
                    .await?;
                let rows = tx
                    .query(
                        "SELECT serial, record FROM mcpzt_certs WHERE revoked ORDER BY serial",
                        &[],
                    )
                    .await?;
                let mut revoked = Vec::with_capacity(rows.len());
                for r in &rows {
                    revoked.push(decode(r.get::<_, &str>(0), r.get::<_, &str>(1).as_bytes())?);
                }
                let last: i64 = tx
                    .query_one(
                        "UPDATE mcpzt_crl_number SET n = n + $1 WHERE id RETURNING n",
                        &[&count],
                    )
                    .await?
                    .get(0);
                tx.commit().await?;
                Ok((revoked, u64::try_from(last - count + 1).unwrap_or(1)))
            })
        })
    }

    /// Renewals whose both certificates are unrevoked, from the indexed columns.
    pub fn pending_renewals(&self) -> Result<Vec<(String, String, i64)>, LedgerError> {
        self.run(|c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT n.serial, o.serial, n.issued_at FROM mcpzt_certs o \
                         JOIN mcpzt_certs n ON n.serial = o.superseded_by \
                         WHERE NOT o.revoked AND NOT n.revoked",
                        &[],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect())
            })
        })
    }

    /// Every revoked serial, by the `revoked` column.
    pub fn revoked_serials(&self) -> Result<Vec<String>, LedgerError> {
        let target = self.inner.target.shown.clone();
        self.run(move |c| Box::pin(async move { Ok(revoked_serials(c, &target).await?) }))
    }

    /// Inserts records in one transaction; a serial already present fails the whole batch.
    pub fn insert_many(&self, recs: &[CertRecord]) -> Result<(), LedgerError> {
        let rows = recs
            .iter()
            .map(|r| Ok((r.clone(), json(r)?)))
            .collect::<Result<Vec<_>, LedgerError>>()?;
        self.run(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                let stmt = tx
                    .prepare(
                        "INSERT INTO mcpzt_certs \
                         (serial, record, issued_at, revoked, revocation_seq, superseded_by) \
                         VALUES ($1, $2, $3, $4, \
                         CASE WHEN $4 THEN nextval('mcpzt_revocation_seq') END, $5)",
                    )
                    .await?;
                for (rec, value) in &rows {
                    let revoked = rec.revocation.is_some();
                    let r = tx
                        .execute(
                            &stmt,
                            &[
                                &rec.serial,
                                value,
                                &rec.issued_at,
                                &revoked,
                                &rec.superseded_by,
                            ],
                        )
                        .await;
                    if let Err(e) = r {
                        let e = OpError::Pg(e);
                        if e.is_unique_violation() {
                            return Err(LedgerError::DuplicateSerial(rec.serial.clone()).into());
                        }
                        return Err(e);
                    }
                }
                tx.commit().await?;
                Ok(())
            })
        })
    }

    /// One record.
    pub fn get(&self, serial_hex: &str) -> Result<Option<CertRecord>, LedgerError> {
        let serial = serial_hex.to_ascii_lowercase();
        self.run(move |c| {
            Box::pin(async move {
                let row = c
                    .query_opt(
                        "SELECT record FROM mcpzt_certs WHERE serial = $1",
                        &[&serial],
                    )
                    .await?;
                Ok(match row {
                    Some(r) => Some(decode(&serial, r.get::<_, &str>(0).as_bytes())?),
                    None => None,
                })
            })
        })
    }

    /// Every record, oldest issuance first.
    pub fn all(&self) -> Result<Vec<CertRecord>, LedgerError> {
        self.run(|c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT serial, record FROM mcpzt_certs ORDER BY issued_at, serial",
                        &[],
                    )
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    out.push(decode(r.get::<_, &str>(0), r.get::<_, &str>(1).as_bytes())?);
                }
                Ok(out)
            })
        })
    }

    /// Compare-and-swap revoke of one certificate.
    pub fn revoke(
        &self,
        serial_hex: &str,
        reason: Reason,
        at: i64,
    ) -> Result<CertRecord, LedgerError> {
        let serial = serial_hex.to_ascii_lowercase();
        self.run(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                let Some(mut rec) = locked(&tx, &serial).await? else {
                    return Err(LedgerError::NotFound(serial).into());
                };
                if rec.revocation.is_some() {
                    return Err(LedgerError::AlreadyRevoked {
                        serial: rec.serial,
                        name: rec.name,
                    }
                    .into());
                }
                rec.revocation = Some(Revocation { at, reason });
                mark_revoked(&tx, &rec).await?;
                tx.commit().await?;
                Ok(rec)
            })
        })
    }

    /// Renewal: inserts `new` and links `old` to it, in one transaction with `old` locked.
    pub fn record_renewal(&self, old: &str, new: &CertRecord, now: i64) -> Result<(), LedgerError> {
        let old = old.to_ascii_lowercase();
        let new = new.clone();
        let new_json = json(&new)?;
        self.run(move |c| {
            Box::pin(async move {
                retrying(c, |tx| {
                    let (old, new, new_json) = (old.clone(), new.clone(), new_json.clone());
                    Box::pin(async move { renew_in(tx, &old, &new, &new_json, now).await })
                })
                .await
            })
        })
    }

    /// Revokes a whole renewal chain in one transaction, each row locked as it is read.
    pub fn revoke_chain(
        &self,
        serial: &str,
        reason: Reason,
        at: i64,
    ) -> Result<ChainRevocation, LedgerError> {
        let serial = serial.to_ascii_lowercase();
        self.run(move |c| {
            Box::pin(async move {
                retrying(c, |tx| {
                    let serial = serial.clone();
                    Box::pin(async move { revoke_chain_in(tx, &serial, reason, at).await })
                })
                .await
            })
        })
    }

    /// The next CRL number (the one row, incremented in place).
    pub fn next_crl_number(&self) -> Result<u64, LedgerError> {
        self.run(|c| {
            Box::pin(async move {
                let row = c
                    .query_one(
                        "UPDATE mcpzt_crl_number SET n = n + 1 WHERE id RETURNING n",
                        &[],
                    )
                    .await?;
                Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
            })
        })
    }

    /// The last CRL number handed out.
    pub fn crl_number(&self) -> Result<u64, LedgerError> {
        self.run(|c| {
            Box::pin(async move {
                let row = c
                    .query_one("SELECT n FROM mcpzt_crl_number WHERE id", &[])
                    .await?;
                Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
            })
        })
    }

    /// Raises the CRL number to at least `n`.
    pub fn raise_crl_number(&self, n: u64) -> Result<(), LedgerError> {
        let n = i64::try_from(n).map_err(|_| LedgerError::Config("CRL number too large".into()))?;
        self.run(move |c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE mcpzt_crl_number SET n = GREATEST(n, $1) WHERE id",
                    &[&n],
                )
                .await?;
                Ok(())
            })
        })
    }
}
