//! Foreign revocations in PostgreSQL (table `mcpzt_foreign_revoked`, migration 2): one row per
//! identity key, the first sighting kept, so every replica refuses what any replica saw. Rows
//! stay past `until` (harmless: they are not read) and are extended if the key comes back.

use super::{LedgerError, PgLedger};
use crate::ledger::ForeignRevocation;

impl PgLedger {
    /// Inserts the revocations not recorded yet (the first sighting is kept; a later CA
    /// notAfter extends `until`), in one transaction of a few statements however many there
    /// are; returns how many were new or extended.
    pub fn remember_foreign_revocations(
        &self,
        recs: &[ForeignRevocation],
    ) -> Result<usize, LedgerError> {
        let recs = recs.to_vec();
        self.run(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                let mut new = 0;
                for chunk in recs.chunks(5_000) {
                    let col = |f: fn(&ForeignRevocation) -> &String| {
                        chunk.iter().map(|r| f(r).clone()).collect::<Vec<String>>()
                    };
                    let (keys, trusts) = (col(|r| &r.key), col(|r| &r.trust));
                    let (issuers, serials) = (col(|r| &r.issuer), col(|r| &r.serial));
                    let seen: Vec<i64> = chunk.iter().map(|r| r.seen_at).collect();
                    let until: Vec<i64> = chunk.iter().map(|r| r.until).collect();
                    new += tx
                        .execute(
                            "INSERT INTO mcpzt_foreign_revoked AS f \
                             (key, trust, issuer, serial, seen_at, until) \
                             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
                             $5::bigint[], $6::bigint[]) \
                             ON CONFLICT (key) DO UPDATE SET until = EXCLUDED.until \
                             WHERE f.until < EXCLUDED.until",
                            &[&keys, &trusts, &issuers, &serials, &seen, &until],
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
