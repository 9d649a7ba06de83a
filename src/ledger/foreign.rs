//! Foreign revocations: serials of foreign trusts' certificates that a verified CRL listed.
//!
//! A CRL only says what its issuer revokes *now*; a later CRL may leave a serial out (a CA that
//! prunes its list, or an attacker on a plain-HTTP `crl_url` replaying an old genuine CRL after
//! a restart). mcp-zt therefore remembers every serial it has seen revoked in a verified CRL,
//! here, shared by every replica of a fleet, and keeps refusing it until the issuing CA's own
//! notAfter (past which no certificate of that CA verifies). Only an entry whose reason is
//! removeFromCRL (a hold lifted) takes one back.

use serde::{Deserialize, Serialize};

use super::{decode, encode, Ledger, LedgerError};

/// The sled tree foreign revocations live in (key: [`ForeignRevocation::key`]).
const TREE: &str = "foreign_revoked";

/// A foreign certificate seen revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignRevocation {
    /// `TRUST:ISSUER-HASH:SERIAL`, the identity key the server refuses
    /// ([`crate::identity::foreign_key`]).
    pub key: String,
    /// The trust whose CRL listed it.
    pub trust: String,
    /// The issuing CA's subject.
    pub issuer: String,
    /// The serial, lower-case hex.
    pub serial: String,
    /// When mcp-zt first saw it revoked (Unix seconds).
    pub seen_at: i64,
    /// Until when it is remembered: the issuing CA's notAfter (Unix seconds).
    pub until: i64,
}

impl Ledger {
    /// Records `recs` that are not recorded yet (the first sighting is kept; a later `until`
    /// extends it); durable on return. Returns how many were new or extended.
    pub fn remember_foreign_revocations(
        &self,
        recs: &[ForeignRevocation],
    ) -> Result<usize, LedgerError> {
        if recs.is_empty() {
            return Ok(0);
        }
        match self {
            Ledger::Sled(s) => {
                s.writable()?;
                let tree = s.tree(TREE)?;
                let mut new = 0;
                for r in recs {
                    let key = r.key.as_bytes();
                    // Absent: recorded. Present: kept (the first sighting), unless its CA now
                    // lives longer. One writer owns a sled ledger, so read-then-write is safe.
                    let value = match tree.get(key)? {
                        None => encode(r)?,
                        Some(old) => {
                            let mut old: ForeignRevocation = decode(&r.key, &old)?;
                            if old.until >= r.until {
                                continue;
                            }
                            old.until = r.until;
                            encode(&old)?
                        }
                    };
                    tree.insert(key, value)?;
                    new += 1;
                }
                s.flush()?;
                Ok(new)
            }
            Ledger::Postgres(p) => p.remember_foreign_revocations(recs),
        }
    }

    /// Forgets the revocations of `keys` (their CA listed them as removeFromCRL); durable on
    /// return. Returns those that were recorded.
    pub fn forget_foreign_revocations(
        &self,
        keys: &[String],
    ) -> Result<Vec<ForeignRevocation>, LedgerError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Ledger::Sled(s) => {
                s.writable()?;
                let tree = s.tree(TREE)?;
                let mut gone = Vec::new();
                for k in keys {
                    if let Some(v) = tree.remove(k.as_bytes())? {
                        gone.push(decode(k, &v)?);
                    }
                }
                s.flush()?;
                Ok(gone)
            }
            Ledger::Postgres(p) => p.forget_foreign_revocations(keys),
        }
    }

    /// Every foreign revocation still remembered at `now` (its CA has not expired).
    pub fn foreign_revocations(&self, now: i64) -> Result<Vec<ForeignRevocation>, LedgerError> {
        match self {
            Ledger::Sled(s) => {
                let mut out = Vec::new();
                for item in s.tree(TREE)?.iter() {
                    let (k, v) = item?;
                    let r: ForeignRevocation = decode(&String::from_utf8_lossy(&k), &v)?;
                    if r.until > now {
                        out.push(r);
                    }
                }
                Ok(out)
            }
            Ledger::Postgres(p) => p.foreign_revocations(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, until: i64) -> ForeignRevocation {
        ForeignRevocation {
            key: key.into(),
            trust: "corp".into(),
            issuer: "CN=Corp".into(),
            serial: "01".into(),
            seen_at: 100,
            until,
        }
    }

    #[test]
    fn sled_remembers_keeps_the_first_sighting_forgets_and_expires() {
        let dir = tempfile::tempdir().expect("dir");
        let l = Ledger::open_sled(dir.path(), std::time::Duration::from_secs(1)).expect("open");
        assert_eq!(
            l.remember_foreign_revocations(&[rec("corp:a:01", 1000)])
                .expect("w"),
            1
        );
        let mut again = rec("corp:a:01", 1000);
        again.seen_at = 500;
        assert_eq!(
            l.remember_foreign_revocations(&[again, rec("corp:a:02", 200)])
                .expect("w"),
            1
        );
        let now = l.foreign_revocations(150).expect("read");
        assert_eq!(now.len(), 2);
        assert!(now.iter().any(|r| r.key == "corp:a:01" && r.seen_at == 100));
        // Past the CA's notAfter it is no longer needed.
        assert_eq!(l.foreign_revocations(300).expect("read").len(), 1);
        // Unless its CA now lives longer: extended, the first sighting kept.
        let mut longer = rec("corp:a:02", 400);
        longer.seen_at = 900;
        assert_eq!(
            l.remember_foreign_revocations(&[longer.clone()])
                .expect("w"),
            1
        );
        assert_eq!(
            l.remember_foreign_revocations(&[rec("corp:a:02", 300)])
                .expect("w"),
            0
        );
        let back = l.foreign_revocations(300).expect("read");
        assert!(back
            .iter()
            .any(|r| r.key == "corp:a:02" && r.until == 400 && r.seen_at == 100));
        assert_eq!(l.foreign_revocations(450).expect("read").len(), 1);
        // Survives a reopen.
        drop(l);
        let l = Ledger::open_sled(dir.path(), std::time::Duration::from_secs(1)).expect("open");
        assert_eq!(l.foreign_revocations(150).expect("read").len(), 2);
        let gone = l
            .forget_foreign_revocations(&["corp:a:01".into(), "corp:x:09".into()])
            .expect("forget");
        assert_eq!(gone.len(), 1);
        assert_eq!(l.foreign_revocations(150).expect("read").len(), 1);
    }
}
