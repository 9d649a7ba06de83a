//! Per-holder upstream credentials: each holder's OAuth tokens for the upstreams that need a
//! login of their own, the links being made, mcp-zt's own registrations with those upstreams'
//! authorization servers, and static per-holder secrets (API keys).
//!
//! Every secret value here is sealed ([`crate::secrets`]) before it reaches the ledger, bound
//! to its holder, upstream and purpose: a copy of the ledger (a sled folder in a backup, a
//! PostgreSQL dump) without `secrets.key` opens nothing, and a value moved onto another
//! holder's record does not open either. Both backends keep these records, so a link made on
//! one replica serves every other.

use serde::{Deserialize, Serialize};

use super::{decode, encode, Ledger, LedgerError};

const LINKS: &str = "uplink_links";
const PENDING: &str = "uplink_pending";
const REGISTRATIONS: &str = "uplink_clients";
const SECRETS: &str = "uplink_secrets";

/// The trees (sled) or kinds (PostgreSQL) that hold sealed values: what `secrets rotate-key`
/// re-seals.
pub const SEALED_KINDS: [&str; 4] = [LINKS, PENDING, REGISTRATIONS, SECRETS];

/// One holder's tokens for one upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamLink {
    /// The upstream's name.
    pub upstream: String,
    /// The holder's name.
    pub holder: String,
    /// The holder's certificate chain (part of every sealed value's binding).
    pub chain: String,
    /// The certificate that made the link.
    pub serial: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Sealed access token.
    pub access: String,
    /// Sealed refresh token, if the upstream gave one.
    pub refresh: Option<String>,
    /// When the access token expires (Unix seconds; 0 = the upstream did not say).
    pub expires_at: i64,
    /// When the link was made.
    pub linked_at: i64,
    /// When the tokens were last refreshed.
    pub refreshed_at: i64,
    /// The authorization server's issuer.
    pub issuer: String,
    /// Where to refresh.
    pub token_endpoint: String,
    /// Where to revoke (RFC 7009), if the server has one.
    pub revocation_endpoint: Option<String>,
    /// mcp-zt's client id there.
    pub client_id: String,
    /// Sealed client secret, for a confidential registration.
    pub client_secret: Option<String>,
    /// How the client authenticates at the token endpoint (`none`, `client_secret_post`,
    /// `client_secret_basic`).
    pub auth_method: String,
}

/// A link started and not finished: what the callback needs, keyed by the SHA-256 of its
/// `state`, taken once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingLink {
    /// The upstream's name.
    pub upstream: String,
    /// Who started it: only this holder can finish it.
    pub holder: String,
    /// Their certificate chain.
    pub chain: String,
    /// The certificate that started it.
    pub serial: String,
    /// Sealed PKCE verifier.
    pub verifier: String,
    /// The redirect URI sent with the authorization request.
    pub redirect_uri: String,
    /// Scopes asked for.
    pub scopes: Vec<String>,
    /// The authorization server's issuer.
    pub issuer: String,
    /// Its token endpoint.
    pub token_endpoint: String,
    /// Its revocation endpoint.
    pub revocation_endpoint: Option<String>,
    /// mcp-zt's client id.
    pub client_id: String,
    /// Sealed client secret.
    pub client_secret: Option<String>,
    /// Token endpoint authentication method.
    pub auth_method: String,
    /// The URL the holder is sent to (the upstream's authorization request).
    pub authorize_url: String,
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
    /// Finished by a browser at mcp-zt's callback (not by `mcp-zt link`).
    #[serde(default)]
    pub via_browser: bool,
    /// SHA-256 of the cookie the browser that opened the link page got: the callback needs it.
    #[serde(default)]
    pub browser: Option<String>,
}

/// mcp-zt's registration with an upstream's authorization server (DCR), reused by every
/// holder's link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamRegistration {
    /// The upstream.
    pub upstream: String,
    /// The authorization server.
    pub issuer: String,
    /// The redirect URI registered.
    pub redirect_uri: String,
    /// The client id it gave.
    pub client_id: String,
    /// Sealed client secret, if it gave one.
    pub client_secret: Option<String>,
    /// The authentication method it agreed to.
    pub auth_method: String,
    /// When.
    pub registered_at: i64,
}

/// Where a static per-holder secret goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretKind {
    /// An HTTP request header of the holder's upstream connection.
    Header,
    /// An environment variable of the holder's per-identity child.
    Env,
}

impl SecretKind {
    /// `header` or `env`.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::Header => "header",
            SecretKind::Env => "env",
        }
    }
}

/// A static per-holder secret (an API key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HolderSecret {
    /// The upstream.
    pub upstream: String,
    /// The holder.
    pub holder: String,
    /// The holder's certificate chain.
    pub chain: String,
    /// Header or environment variable.
    pub kind: SecretKind,
    /// The header's or variable's name.
    pub name: String,
    /// The sealed value.
    pub value: String,
    /// When it was set.
    pub set_at: i64,
    /// Who set it (the holder, or an operator).
    pub set_by: String,
}

/// One stored record as bytes: (kind, key, value).
pub type RawRecord = (&'static str, String, Vec<u8>);

fn link_key(upstream: &str, holder: &str) -> String {
    // Upstream names have no '|'; the holder name is the rest.
    format!("{upstream}|{holder}")
}

fn registration_key(upstream: &str, issuer: &str, redirect_uri: &str) -> String {
    crate::oauth::crypto::sha256_hex(&format!("{upstream}\n{issuer}\n{redirect_uri}"))
}

fn secret_key(upstream: &str, holder: &str, kind: SecretKind, name: &str) -> String {
    format!("{upstream}|{}|{name}|{holder}", kind.as_str())
}

impl Ledger {
    fn uplink_put<T: Serialize>(&self, kind: &str, key: &str, v: &T) -> Result<(), LedgerError> {
        self.kv_put(kind, key, encode(v)?)
    }

    fn uplink_get<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<T>, LedgerError> {
        match self.kv_get(kind, key)? {
            Some(bytes) => Ok(Some(decode(key, &bytes)?)),
            None => Ok(None),
        }
    }

    fn uplink_all<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
    ) -> Result<Vec<T>, LedgerError> {
        self.kv_all(kind)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    fn uplink_remove(&self, kind: &str, key: &str) -> Result<bool, LedgerError> {
        let removed = self.kv_remove(kind, key)?;
        if removed {
            self.flush()?;
        }
        Ok(removed)
    }

    /// Stores (or replaces) a holder's link; durable on return.
    pub fn put_upstream_link(&self, l: &UpstreamLink) -> Result<(), LedgerError> {
        self.uplink_put(LINKS, &link_key(&l.upstream, &l.holder), l)
    }

    /// A holder's link to an upstream.
    pub fn upstream_link(
        &self,
        upstream: &str,
        holder: &str,
    ) -> Result<Option<UpstreamLink>, LedgerError> {
        self.uplink_get(LINKS, &link_key(upstream, holder))
    }

    /// Replaces `old` by `new` only if the record is still `old`: two replicas refreshing one
    /// link at once cannot both store their answer (the loser reads the winner's).
    pub fn swap_upstream_link(
        &self,
        old: &UpstreamLink,
        new: &UpstreamLink,
    ) -> Result<bool, LedgerError> {
        self.kv_cas(
            LINKS,
            &link_key(&old.upstream, &old.holder),
            Some(encode(old)?),
            encode(new)?,
        )
    }

    /// Every link.
    pub fn upstream_links(&self) -> Result<Vec<UpstreamLink>, LedgerError> {
        self.uplink_all(LINKS)
    }

    /// Forgets a link; whether there was one.
    pub fn remove_upstream_link(&self, upstream: &str, holder: &str) -> Result<bool, LedgerError> {
        self.uplink_remove(LINKS, &link_key(upstream, holder))
    }

    /// Stores a link being made, under the SHA-256 of its state.
    pub fn put_pending_link(&self, state_hash: &str, p: &PendingLink) -> Result<(), LedgerError> {
        self.uplink_put(PENDING, state_hash, p)
    }

    /// Takes a link being made: the first caller gets it, every later one `None`.
    pub fn take_pending_link(&self, state_hash: &str) -> Result<Option<PendingLink>, LedgerError> {
        let Some(p) = self.uplink_get::<PendingLink>(PENDING, state_hash)? else {
            return Ok(None);
        };
        // Whoever removes it owns it: two callbacks with one state cannot both go on.
        if self.uplink_remove(PENDING, state_hash)? {
            Ok(Some(p))
        } else {
            Ok(None)
        }
    }

    /// A link being made, without taking it (the page that sends the holder on).
    pub fn pending_link(&self, state_hash: &str) -> Result<Option<PendingLink>, LedgerError> {
        self.uplink_get(PENDING, state_hash)
    }

    /// Drops links being made that expired before `now`; how many.
    pub fn sweep_pending_links(&self, now: i64) -> Result<usize, LedgerError> {
        let mut n = 0;
        for (k, v) in self.kv_all(PENDING)? {
            let expired = decode::<PendingLink>(&k, &v).map_or(true, |p| p.expires_at < now);
            if expired && self.uplink_remove(PENDING, &k)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// mcp-zt's registration with an upstream's authorization server for `redirect_uri`.
    pub fn upstream_registration(
        &self,
        upstream: &str,
        issuer: &str,
        redirect_uri: &str,
    ) -> Result<Option<UpstreamRegistration>, LedgerError> {
        self.uplink_get(
            REGISTRATIONS,
            &registration_key(upstream, issuer, redirect_uri),
        )
    }

    /// Stores a registration.
    pub fn put_upstream_registration(&self, r: &UpstreamRegistration) -> Result<(), LedgerError> {
        self.uplink_put(
            REGISTRATIONS,
            &registration_key(&r.upstream, &r.issuer, &r.redirect_uri),
            r,
        )
    }

    /// Stores (or replaces) a static per-holder secret.
    pub fn put_holder_secret(&self, s: &HolderSecret) -> Result<(), LedgerError> {
        self.uplink_put(
            SECRETS,
            &secret_key(&s.upstream, &s.holder, s.kind, &s.name),
            s,
        )
    }

    /// Every static per-holder secret.
    pub fn holder_secrets(&self) -> Result<Vec<HolderSecret>, LedgerError> {
        self.uplink_all(SECRETS)
    }

    /// Deletes one static secret; whether it existed.
    pub fn remove_holder_secret(&self, s: &HolderSecret) -> Result<bool, LedgerError> {
        self.uplink_remove(
            SECRETS,
            &secret_key(&s.upstream, &s.holder, s.kind, &s.name),
        )
    }

    /// Every raw record of the sealed kinds, for re-sealing: (kind, key, bytes).
    pub fn sealed_records(&self) -> Result<Vec<RawRecord>, LedgerError> {
        let mut out = Vec::new();
        for kind in SEALED_KINDS {
            for (k, v) in self.kv_all(kind)? {
                out.push((kind, k, v));
            }
        }
        Ok(out)
    }

    /// Replaces one raw record if it is still `old` (re-sealing).
    pub fn swap_sealed_record(
        &self,
        kind: &str,
        key: &str,
        old: Vec<u8>,
        new: Vec<u8>,
    ) -> Result<bool, LedgerError> {
        self.kv_cas(kind, key, Some(old), new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(holder: &str) -> PendingLink {
        PendingLink {
            upstream: "gh".into(),
            holder: holder.into(),
            chain: "example.org:own".into(),
            serial: "01".into(),
            verifier: "v1.sealed".into(),
            redirect_uri: "http://127.0.0.1:1/callback".into(),
            scopes: vec![],
            issuer: "https://as.example".into(),
            token_endpoint: "https://as.example/token".into(),
            revocation_endpoint: None,
            client_id: "c".into(),
            client_secret: None,
            auth_method: "none".into(),
            authorize_url: "https://as.example/authorize".into(),
            expires_at: 100,
            via_browser: false,
            browser: None,
        }
    }

    #[test]
    fn a_pending_link_is_taken_once_and_swept_when_expired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = Ledger::open_sled(dir.path(), std::time::Duration::from_secs(1)).expect("open");
        l.put_pending_link("h1", &pending("alice")).expect("put");
        assert_eq!(
            l.pending_link("h1").expect("peek").map(|p| p.holder),
            Some("alice".into())
        );
        assert!(l.take_pending_link("h1").expect("take").is_some());
        assert!(l.take_pending_link("h1").expect("again").is_none());
        l.put_pending_link("h2", &pending("bob")).expect("put");
        assert_eq!(l.sweep_pending_links(50).expect("sweep"), 0);
        assert_eq!(l.sweep_pending_links(101).expect("sweep"), 1);
        assert!(l.pending_link("h2").expect("peek").is_none());
    }

    #[test]
    fn a_link_changes_only_from_what_was_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = Ledger::open_sled(dir.path(), std::time::Duration::from_secs(1)).expect("open");
        let link = UpstreamLink {
            upstream: "gh".into(),
            holder: "alice".into(),
            chain: "example.org:own".into(),
            serial: "01".into(),
            scopes: vec!["read".into()],
            access: "v1.a".into(),
            refresh: Some("v1.r".into()),
            expires_at: 10,
            linked_at: 1,
            refreshed_at: 1,
            issuer: "https://as.example".into(),
            token_endpoint: "https://as.example/token".into(),
            revocation_endpoint: None,
            client_id: "c".into(),
            client_secret: None,
            auth_method: "none".into(),
        };
        l.put_upstream_link(&link).expect("put");
        let mut next = link.clone();
        next.access = "v1.b".into();
        assert!(l.swap_upstream_link(&link, &next).expect("swap"));
        // A second refresh from the same stale read loses: the winner's record stays.
        let mut stale = link.clone();
        stale.access = "v1.c".into();
        assert!(!l.swap_upstream_link(&link, &stale).expect("swap"));
        assert_eq!(
            l.upstream_link("gh", "alice")
                .expect("get")
                .map(|x| x.access),
            Some("v1.b".into())
        );
        assert!(l.remove_upstream_link("gh", "alice").expect("remove"));
        assert!(l.upstream_links().expect("all").is_empty());
    }
}
