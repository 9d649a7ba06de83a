//! OAuth state in PostgreSQL (table `mcpzt_oauth`, migration 3): the same JSON records the
//! embedded ledger keeps, one row per (kind, key), so every replica of a fleet accepts the
//! tokens any replica issued and sees a grant revoked anywhere at its next request.
//! Compare-and-swap is an UPDATE that names the old value (or an INSERT that must not
//! conflict), so single use of codes and rotation of refresh tokens hold across replicas.

use super::{LedgerError, PgLedger};

impl PgLedger {
    /// One record.
    pub fn oauth_get(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        let (kind, key) = (kind.to_string(), key.to_string());
        self.run(move |c| {
            Box::pin(async move {
                let row = c
                    .query_opt(
                        "SELECT value FROM mcpzt_oauth WHERE kind = $1 AND key = $2",
                        &[&kind, &key],
                    )
                    .await?;
                Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
            })
        })
    }

    /// Writes a record (inserted or replaced).
    pub fn oauth_put(&self, kind: &str, key: &str, value: Vec<u8>) -> Result<(), LedgerError> {
        let (kind, key) = (kind.to_string(), key.to_string());
        self.run(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO mcpzt_oauth (kind, key, value) VALUES ($1, $2, $3) \
                     ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value",
                    &[&kind, &key, &value],
                )
                .await?;
                Ok(())
            })
        })
    }

    /// Replaces `old` by `new` only if the record is still `old` (`None`: absent).
    pub fn oauth_cas(
        &self,
        kind: &str,
        key: &str,
        old: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> Result<bool, LedgerError> {
        let (kind, key) = (kind.to_string(), key.to_string());
        self.run(move |c| {
            Box::pin(async move {
                let n = match old {
                    Some(old) => {
                        c.execute(
                            "UPDATE mcpzt_oauth SET value = $4 \
                             WHERE kind = $1 AND key = $2 AND value = $3",
                            &[&kind, &key, &old, &new],
                        )
                        .await?
                    }
                    None => {
                        c.execute(
                            "INSERT INTO mcpzt_oauth (kind, key, value) VALUES ($1, $2, $3) \
                             ON CONFLICT (kind, key) DO NOTHING",
                            &[&kind, &key, &new],
                        )
                        .await?
                    }
                };
                Ok(n == 1)
            })
        })
    }

    /// Every record of `kind`.
    pub fn oauth_all(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, LedgerError> {
        let kind = kind.to_string();
        self.run(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT key, value FROM mcpzt_oauth WHERE kind = $1 ORDER BY key",
                        &[&kind],
                    )
                    .await?;
                Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            })
        })
    }

    /// Deletes a record; whether it existed.
    pub fn oauth_remove(&self, kind: &str, key: &str) -> Result<bool, LedgerError> {
        let (kind, key) = (kind.to_string(), key.to_string());
        self.run(move |c| {
            Box::pin(async move {
                let n = c
                    .execute(
                        "DELETE FROM mcpzt_oauth WHERE kind = $1 AND key = $2",
                        &[&kind, &key],
                    )
                    .await?;
                Ok(n == 1)
            })
        })
    }

    /// How many records of `kind`.
    pub fn oauth_count(&self, kind: &str) -> Result<usize, LedgerError> {
        let kind = kind.to_string();
        self.run(move |c| {
            Box::pin(async move {
                let row = c
                    .query_one("SELECT count(*) FROM mcpzt_oauth WHERE kind = $1", &[&kind])
                    .await?;
                Ok(usize::try_from(row.get::<_, i64>(0)).unwrap_or(usize::MAX))
            })
        })
    }
}

impl PgLedger {
    /// The fleet's OAuth key (hex): the one stored in `mcpzt_meta`, or `fresh` stored now if
    /// none was (the first replica to start wins; all then use the same key).
    pub fn oauth_key_or(&self, fresh: &str) -> Result<String, LedgerError> {
        let fresh = fresh.to_string();
        self.run(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO mcpzt_meta (key, value) VALUES ('oauth_key', $1) \
                     ON CONFLICT (key) DO NOTHING",
                    &[&fresh],
                )
                .await?;
                let row = c
                    .query_one("SELECT value FROM mcpzt_meta WHERE key = 'oauth_key'", &[])
                    .await?;
                Ok(row.get::<_, String>(0))
            })
        })
    }
}
