//! Foreign revocations in PostgreSQL (table `mcpzt_foreign_revoked`, migration 2): one row per
//! identity key, the first sighting kept, so every replica refuses what any replica saw.

use super::{LedgerError, PgLedger};
use crate::ledger::ForeignRevocation;

impl PgLedger {
    /// Inserts the revocations not recorded yet, in one transaction; returns how many were new.
    pub fn remember_foreign_revocations(
        &self,
        recs: &[ForeignRevocation],
    ) -> Result<usize, LedgerError> {
        let recs = recs.to_vec();
        self.run(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                let stmt = tx
                    .prepare(
                        "INSERT INTO mcpzt_foreign_revoked (key, trust, issuer, serial, seen_at, until) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING",
                    )
                    .await?;
                let mut new = 0;
                for r in &recs {
                    new += tx
                        .execute(
                            &stmt,
                            &[&r.key, &r.trust, &r.issuer, &r.serial, &r.seen_at, &r.until],
                        )
                        .await?;
                }
                tx.commit().await?;
                Ok(usize::try_from(new).unwrap_or(usize::MAX))
            })
        })
    }

    /// Deletes the revocations of `keys`; returns those that were recorded.
    pub fn forget_foreign_revocations(
        &self,
        keys: &[String],
    ) -> Result<Vec<ForeignRevocation>, LedgerError> {
        let keys = keys.to_vec();
        self.run(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "DELETE FROM mcpzt_foreign_revoked WHERE key = ANY($1) \
                         RETURNING key, trust, issuer, serial, seen_at, until",
                        &[&keys],
                    )
                    .await?;
                Ok(rows.iter().map(row).collect())
            })
        })
    }

    /// Every revocation remembered beyond `now`.
    pub fn foreign_revocations(&self, now: i64) -> Result<Vec<ForeignRevocation>, LedgerError> {
        self.run(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT key, trust, issuer, serial, seen_at, until \
                         FROM mcpzt_foreign_revoked WHERE until > $1",
                        &[&now],
                    )
                    .await?;
                Ok(rows.iter().map(row).collect())
            })
        })
    }
}

fn row(r: &tokio_postgres::Row) -> ForeignRevocation {
    ForeignRevocation {
        key: r.get(0),
        trust: r.get(1),
        issuer: r.get(2),
        serial: r.get(3),
        seen_at: r.get(4),
        until: r.get(5),
    }
}
