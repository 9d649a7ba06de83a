//! OAuth state: registered clients, authorization codes, grants and their tokens.
//!
//! Tokens and codes are never stored: only the SHA-256 of each (hex) is a key here, so a copy
//! of the ledger hands nobody a usable token. A grant is the family of tokens one approval
//! created; revoking it (or the certificate it was approved with) ends every token in it.
//! Single use of codes and rotation of refresh tokens are compare-and-swap operations, so two
//! concurrent requests with one code or one refresh token cannot both win.
//!
//! Both backends keep it: sled trees here, one PostgreSQL table for a fleet ([`super::pg`]), so
//! a token issued by one replica works on every other.

use serde::{Deserialize, Serialize};

use super::{decode, encode, Ledger, LedgerError};

const CLIENTS: &str = "oauth_clients";
const CODES: &str = "oauth_codes";
const GRANTS: &str = "oauth_grants";
const ACCESS: &str = "oauth_access";
const REFRESH: &str = "oauth_refresh";

/// How a client came to be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// Dynamic client registration (RFC 7591): public, self-asserted, not verified.
    Dcr,
    /// `oauth client add`, by an operator.
    Preregistered,
    /// A client ID metadata document fetched from its URL.
    Cimd,
}

/// A registered OAuth client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthClient {
    /// The `client_id`.
    pub client_id: String,
    /// What it calls itself (`client_name`), if anything.
    pub name: Option<String>,
    /// Exact redirect URIs (loopback ones match on any port).
    pub redirect_uris: Vec<String>,
    /// How it was registered.
    pub kind: ClientKind,
    /// SHA-256 (hex) of a confidential client's secret; `None`: a public client.
    pub secret_sha256: Option<String>,
    /// When it was registered (Unix seconds).
    pub created_at: i64,
    /// When a token was last issued to it (Unix seconds); DCR clients unused for 30 days go.
    pub last_used: i64,
    /// The address that registered it (DCR).
    pub registered_from: Option<String>,
}

/// An authorization code, approved by a holder and not yet (or already) exchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthCode {
    /// The client it was issued to.
    pub client_id: String,
    /// The redirect URI of the authorization request (the token request must repeat it).
    pub redirect_uri: String,
    /// PKCE S256 challenge.
    pub challenge: String,
    /// The resource (audience) the tokens are for.
    pub resource: String,
    /// The holder whose certificate approved it.
    pub holder: GrantHolder,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
    /// Set at first exchange: the grant it created. A second exchange revokes that grant.
    pub used_by: Option<String>,
}

/// Who a grant speaks for: the certificate the holder approved with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantHolder {
    /// Holder name (certificate CN).
    pub name: String,
    /// The role granted: the certificate's, or one it inherits (narrowed at consent).
    pub role: String,
    /// The certificate's own role: a narrowed grant is re-checked against it on every use
    /// (the policy may have changed since).
    pub cert_role: String,
    /// The certificate's serial (the revocation key).
    pub serial: String,
    /// Its SPIFFE ID.
    pub spiffe_id: String,
    /// Its notAfter (Unix seconds): no token outlives it.
    pub not_after: i64,
}

/// Why a grant ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRevocation {
    /// When (Unix seconds).
    pub at: i64,
    /// Why, in words (operator, client, code reuse, refresh reuse, certificate revoked).
    pub reason: String,
}

/// One approval and the token family it created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Random id (hex), shown by `oauth grants`.
    pub id: String,
    /// The client.
    pub client_id: String,
    /// The holder.
    pub holder: GrantHolder,
    /// The audience.
    pub resource: String,
    /// `cnf.x5t#S256`: tokens of this grant work only on a connection with that certificate.
    pub cnf: Option<String>,
    /// When approved (Unix seconds).
    pub created_at: i64,
    /// The end of its refresh tokens (Unix seconds): refresh_ttl, never past the certificate.
    pub expires_at: i64,
    /// Set once revoked; never cleared.
    pub revoked: Option<GrantRevocation>,
}

/// An access or refresh token (by hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Its grant.
    pub grant: String,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
    /// Refresh tokens: when it was exchanged for its successor (first time).
    pub rotated_at: Option<i64>,
}

/// What taking a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeTake {
    /// First use: now marked used by the given grant.
    First(AuthCode),
    /// Used before, by this grant.
    Replayed(AuthCode),
    /// No such code.
    Unknown,
}

/// What rotating a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// First rotation: now marked rotated at the given time.
    First(TokenRecord),
    /// Rotated before, at `rotated_at`.
    Again(TokenRecord),
    /// No such token.
    Unknown,
}

impl Ledger {
    fn oauth_tree(&self, name: &str) -> Result<sled::Tree, LedgerError> {
        match self {
            Ledger::Sled(s) => {
                s.writable()?;
                s.tree(name)
            }
            Ledger::Postgres(_) => Err(LedgerError::Config(
                "internal: no sled tree on a PostgreSQL ledger".into(),
            )),
        }
    }

    pub(super) fn kv_get(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        match self {
            Ledger::Postgres(p) => p.oauth_get(kind, key),
            Ledger::Sled(_) => Ok(self
                .oauth_tree(kind)?
                .get(key.as_bytes())?
                .map(|v| v.to_vec())),
        }
    }

    pub(super) fn kv_put(&self, kind: &str, key: &str, value: Vec<u8>) -> Result<(), LedgerError> {
        match self {
            Ledger::Postgres(p) => p.oauth_put(kind, key, value),
            Ledger::Sled(_) => {
                self.oauth_tree(kind)?.insert(key.as_bytes(), value)?;
                self.flush()
            }
        }
    }

    pub(super) fn kv_cas(
        &self,
        kind: &str,
        key: &str,
        old: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> Result<bool, LedgerError> {
        match self {
            Ledger::Postgres(p) => p.oauth_cas(kind, key, old, new),
            Ledger::Sled(_) => {
                let swapped =
                    self.oauth_tree(kind)?
                        .compare_and_swap(key.as_bytes(), old, Some(new))?;
                if swapped.is_ok() {
                    self.flush()?;
                }
                Ok(swapped.is_ok())
            }
        }
    }

    pub(super) fn kv_all(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, LedgerError> {
        match self {
            Ledger::Postgres(p) => p.oauth_all(kind),
            Ledger::Sled(_) => {
                let mut out = Vec::new();
                for kv in self.oauth_tree(kind)?.iter() {
                    let (k, v) = kv?;
                    out.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
                }
                Ok(out)
            }
        }
    }

    pub(super) fn kv_remove(&self, kind: &str, key: &str) -> Result<bool, LedgerError> {
        match self {
            Ledger::Postgres(p) => p.oauth_remove(kind, key),
            Ledger::Sled(_) => Ok(self.oauth_tree(kind)?.remove(key.as_bytes())?.is_some()),
        }
    }

    fn oauth_put<T: Serialize>(&self, tree: &str, key: &str, v: &T) -> Result<(), LedgerError> {
        self.kv_put(tree, key, encode(v)?)
    }

    fn oauth_get<T: serde::de::DeserializeOwned>(
        &self,
        tree: &str,
        key: &str,
    ) -> Result<Option<T>, LedgerError> {
        match self.kv_get(tree, key)? {
            Some(bytes) => Ok(Some(decode(key, &bytes)?)),
            None => Ok(None),
        }
    }

    fn oauth_all<T: serde::de::DeserializeOwned>(&self, tree: &str) -> Result<Vec<T>, LedgerError> {
        Ok(self
            .oauth_keyed::<T>(tree)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Compare-and-swap update of one record: `f` gets the current value and returns the new
    /// one (or `None` to leave it); retried while another writer changed it in between.
    fn oauth_update<T, R>(
        &self,
        tree: &str,
        key: &str,
        mut f: impl FnMut(Option<T>) -> (Option<T>, R),
    ) -> Result<R, LedgerError>
    where
        T: Serialize + serde::de::DeserializeOwned,
    {
        loop {
            let old = self.kv_get(tree, key)?;
            let current = match &old {
                Some(bytes) => Some(decode::<T>(key, bytes)?),
                None => None,
            };
            let (new, result) = f(current);
            let Some(new) = new else {
                return Ok(result);
            };
            if self.kv_cas(tree, key, old, encode(&new)?)? {
                return Ok(result);
            }
        }
    }

    /// Stores (or replaces) a client; durable on return.
    pub fn put_oauth_client(&self, c: &OAuthClient) -> Result<(), LedgerError> {
        self.oauth_put(CLIENTS, &c.client_id, c)
    }

    /// A client by `client_id`.
    pub fn oauth_client(&self, client_id: &str) -> Result<Option<OAuthClient>, LedgerError> {
        self.oauth_get(CLIENTS, client_id)
    }

    /// Every registered client.
    pub fn oauth_clients(&self) -> Result<Vec<OAuthClient>, LedgerError> {
        self.oauth_all(CLIENTS)
    }

    /// How many clients are registered (without reading them).
    pub fn oauth_client_count(&self) -> Result<usize, LedgerError> {
        match self {
            Ledger::Postgres(p) => p.oauth_count(CLIENTS),
            Ledger::Sled(_) => Ok(self.oauth_tree(CLIENTS)?.len()),
        }
    }

    /// Forgets a client; whether it existed.
    pub fn delete_oauth_client(&self, client_id: &str) -> Result<bool, LedgerError> {
        let existed = self.kv_remove(CLIENTS, client_id)?;
        self.flush()?;
        Ok(existed)
    }

    /// Stores a new code under its hash; durable on return.
    pub fn put_oauth_code(&self, hash: &str, code: &AuthCode) -> Result<(), LedgerError> {
        self.oauth_put(CODES, hash, code)
    }

    /// Takes a code: the first take marks it used by `grant` (atomically), later ones see it
    /// used.
    pub fn take_oauth_code(&self, hash: &str, grant: &str) -> Result<CodeTake, LedgerError> {
        self.oauth_update::<AuthCode, CodeTake>(CODES, hash, |cur| match cur {
            None => (None, CodeTake::Unknown),
            Some(c) if c.used_by.is_some() => (None, CodeTake::Replayed(c)),
            Some(mut c) => {
                c.used_by = Some(grant.to_string());
                let taken = c.clone();
                (Some(c), CodeTake::First(taken))
            }
        })
    }

    /// Stores a grant; durable on return.
    pub fn put_oauth_grant(&self, g: &Grant) -> Result<(), LedgerError> {
        self.oauth_put(GRANTS, &g.id, g)
    }

    /// Stores a new grant, only if no grant (or tombstone) has that id yet; whether it did.
    pub fn insert_oauth_grant(&self, g: &Grant) -> Result<bool, LedgerError> {
        self.kv_cas(GRANTS, &g.id, None, encode(g)?)
    }

    /// A grant by id.
    pub fn oauth_grant(&self, id: &str) -> Result<Option<Grant>, LedgerError> {
        self.oauth_get(GRANTS, id)
    }

    /// Every grant.
    pub fn oauth_grants(&self) -> Result<Vec<Grant>, LedgerError> {
        self.oauth_all(GRANTS)
    }

    /// Revokes a grant (its every token); `Some(grant)` when this call revoked it, `None` when
    /// it was unknown or already revoked.
    pub fn revoke_oauth_grant(
        &self,
        id: &str,
        at: i64,
        reason: &str,
    ) -> Result<Option<Grant>, LedgerError> {
        self.oauth_update::<Grant, Option<Grant>>(GRANTS, id, |cur| match cur {
            Some(mut g) if g.revoked.is_none() => {
                g.revoked = Some(GrantRevocation {
                    at,
                    reason: reason.to_string(),
                });
                let done = g.clone();
                (Some(g), Some(done))
            }
            _ => (None, None),
        })
    }

    /// Moves a live grant to its holder's renewed certificate (serial and notAfter); a revoked
    /// grant is left as it is.
    pub fn advance_oauth_grant(
        &self,
        id: &str,
        serial: &str,
        not_after: i64,
    ) -> Result<(), LedgerError> {
        self.oauth_update::<Grant, ()>(GRANTS, id, |cur| match cur {
            Some(mut g) if g.revoked.is_none() && g.holder.serial != serial => {
                g.holder.serial = serial.to_string();
                g.holder.not_after = not_after;
                (Some(g), ())
            }
            _ => (None, ()),
        })
    }

    /// Stores an access token record under the token's hash.
    pub fn put_oauth_access(&self, hash: &str, t: &TokenRecord) -> Result<(), LedgerError> {
        self.oauth_put(ACCESS, hash, t)
    }

    /// An access token record by hash.
    pub fn oauth_access(&self, hash: &str) -> Result<Option<TokenRecord>, LedgerError> {
        self.oauth_get(ACCESS, hash)
    }

    /// Stores a refresh token record under the token's hash.
    pub fn put_oauth_refresh(&self, hash: &str, t: &TokenRecord) -> Result<(), LedgerError> {
        self.oauth_put(REFRESH, hash, t)
    }

    /// A refresh token record by hash.
    pub fn oauth_refresh(&self, hash: &str) -> Result<Option<TokenRecord>, LedgerError> {
        self.oauth_get(REFRESH, hash)
    }

    /// Marks a refresh token rotated at `now` (first time only).
    pub fn rotate_oauth_refresh(&self, hash: &str, now: i64) -> Result<Rotation, LedgerError> {
        self.oauth_update::<TokenRecord, Rotation>(REFRESH, hash, |cur| match cur {
            None => (None, Rotation::Unknown),
            Some(t) if t.rotated_at.is_some() => (None, Rotation::Again(t)),
            Some(mut t) => {
                t.rotated_at = Some(now);
                let first = t.clone();
                (Some(t), Rotation::First(first))
            }
        })
    }

    /// Drops what has expired: codes, tokens, grants past their end (kept 7 days, so `oauth
    /// grants` still shows them), and DCR clients unused for `dcr_idle` seconds. Returns how
    /// many records went.
    pub fn sweep_oauth(&self, now: i64, dcr_idle: i64) -> Result<usize, LedgerError> {
        let mut gone = 0;
        let codes: Vec<(String, AuthCode)> = self.oauth_keyed(CODES)?;
        for (k, c) in codes {
            if c.expires_at + 600 < now {
                self.kv_remove(CODES, &k)?;
                gone += 1;
            }
        }
        for tree in [ACCESS, REFRESH] {
            let toks: Vec<(String, TokenRecord)> = self.oauth_keyed(tree)?;
            for (k, t) in toks {
                if t.expires_at < now {
                    self.kv_remove(tree, &k)?;
                    gone += 1;
                }
            }
        }
        for g in self.oauth_grants()? {
            if g.expires_at + 7 * 86_400 < now {
                self.kv_remove(GRANTS, &g.id)?;
                gone += 1;
            }
        }
        for c in self.oauth_clients()? {
            // Unused for `dcr_idle`, or registered a day ago and never used at all (a
            // registration flood must not hold its slots for a month).
            let idle = c.last_used + dcr_idle < now;
            let never = c.last_used == c.created_at && c.created_at + 86_400 < now;
            if c.kind == ClientKind::Dcr && (idle || never) {
                self.kv_remove(CLIENTS, &c.client_id)?;
                gone += 1;
            }
        }
        if gone > 0 {
            self.flush()?;
        }
        Ok(gone)
    }

    fn oauth_keyed<T: serde::de::DeserializeOwned>(
        &self,
        tree: &str,
    ) -> Result<Vec<(String, T)>, LedgerError> {
        let mut out = Vec::new();
        for (key, v) in self.kv_all(tree)? {
            let rec = decode(&key, &v)?;
            out.push((key, rec));
        }
        Ok(out)
    }
}
