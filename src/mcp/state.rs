//! Sealed `requestState` for multi-round-trip requests (MCP 2026-07-28, `input_required`).
//!
//! The client echoes `requestState` back verbatim, so on the way in it is attacker-controlled
//! input. mcp-zt never hands out an unprotected one: whatever state a provider (the built-in
//! one or an upstream) returns is sealed with AES-256-GCM under a key that never leaves the
//! process, together with what it is bound to: the certificate serial and role that received
//! it, the method and the item name, and an expiry. On the way back it is opened and checked
//! against the retrying caller before the provider sees the inner state.
//!
//! Sealing (not only signing) keeps an upstream's state confidential from the client too: an
//! upstream may put anything in it.
//!
//! The key is random per process: a restart makes outstanding states unusable (the client
//! starts the request over). Replicas that share clients would need a shared key.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::Engine;
use serde::{Deserialize, Serialize};

/// How long a sealed state may be brought back, by default.
pub const STATE_TTL_SECS: i64 = 600;

/// Prefix of every sealed state (format version).
const PREFIX: &str = "zt1.";

/// Mixed into every seal so a token from another use of the key can never open here.
const AAD: &[u8] = b"mcp-zt requestState v1";

/// Longest sealed state accepted: a bound on what a client can make us decrypt.
const MAX_SEALED: usize = 256 * 1024;

/// Who and what a state is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding<'a> {
    /// Serial of the certificate that received the state.
    pub serial: &'a str,
    /// Its role at that time.
    pub role: &'a str,
    /// `tools/call`, `prompts/get` or `resources/read`.
    pub method: &'a str,
    /// The exposed tool or prompt name, or the resource URI.
    pub name: &'a str,
    /// The provider that serves it (after a reload, a name may move to another upstream,
    /// which must not be handed the first one's state).
    pub provider: &'a str,
}

/// Why a state was refused. The client is told only that it is invalid; this goes to the
/// audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not a state this server sealed, or altered since.
    #[error("requestState is not one this server sealed, or was altered")]
    Tampered,
    /// Sealed for another certificate.
    #[error("requestState was issued to another certificate (serial {0})")]
    OtherCertificate(String),
    /// The certificate it was sealed for has been revoked since.
    #[error("requestState belongs to revoked certificate {0}")]
    Revoked(String),
    /// Sealed for the same certificate under another role.
    #[error("requestState was issued under role {0:?}")]
    OtherRole(String),
    /// Sealed for another method or item.
    #[error("requestState was issued for {0}")]
    OtherRequest(String),
    /// Past its expiry.
    #[error("requestState expired")]
    Expired,
    /// It names a held call that is no longer held (answered, expired or cancelled).
    #[error("requestState names a call that is no longer held")]
    NotHeld,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    s: String,
    r: String,
    m: String,
    n: String,
    /// The provider.
    u: String,
    /// Expiry, unix seconds.
    e: i64,
    /// The provider's own state, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    i: Option<String>,
}

/// Seals and opens request states under one random key.
pub struct Sealer {
    key: LessSafeKey,
    ttl_secs: i64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A sealer with a fresh random key whose states live `ttl_secs`.
    pub fn new(ttl_secs: i64) -> Result<Self, aws_lc_rs::error::Unspecified> {
        let mut raw = zeroize::Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(&mut raw[..])?;
        let key = UnboundKey::new(&AES_256_GCM, &raw[..])?;
        Ok(Sealer {
            key: LessSafeKey::new(key),
            ttl_secs,
        })
    }

    /// How long its states live.
    pub fn ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.ttl_secs.unsigned_abs())
    }

    /// Seals `inner` (a provider's state, or none) for `to`, valid until `now + ttl`.
    pub fn seal(&self, to: &Binding<'_>, inner: Option<&str>, now: i64) -> String {
        let body = Sealed {
            s: to.serial.into(),
            r: to.role.into(),
            m: to.method.into(),
            n: to.name.into(),
            u: to.provider.into(),
            e: now.saturating_add(self.ttl_secs),
            i: inner.map(str::to_string),
        };
        // Serializing a struct of strings and an integer cannot fail.
        let mut buf = serde_json::to_vec(&body).unwrap_or_default();
        let mut nonce = [0u8; NONCE_LEN];
        // A failing system RNG leaves no safe way to seal: an empty state is refused on return.
        if aws_lc_rs::rand::fill(&mut nonce).is_err()
            || self
                .key
                .seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(AAD),
                    &mut buf,
                )
                .is_err()
        {
            return String::new();
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
        )
    }

    /// Opens `token` for the caller `by`: the provider's inner state (`None` if it gave none).
    /// `revoked` says whether a serial has been revoked.
    pub fn open(
        &self,
        token: &str,
        by: &Binding<'_>,
        now: i64,
        revoked: impl Fn(&str) -> bool,
    ) -> Result<Option<String>, StateError> {
        let body = token
            .strip_prefix(PREFIX)
            .filter(|b| b.len() <= MAX_SEALED)
            .ok_or(StateError::Tampered)?;
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| StateError::Tampered)?;
        if raw.len() < NONCE_LEN {
            return Err(StateError::Tampered);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&raw[..NONCE_LEN]);
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut raw[NONCE_LEN..],
            )
            .map_err(|_| StateError::Tampered)?;
        let st: Sealed = serde_json::from_slice(plain).map_err(|_| StateError::Tampered)?;
        if revoked(&st.s) {
            return Err(StateError::Revoked(st.s));
        }
        if st.s != by.serial {
            return Err(StateError::OtherCertificate(st.s));
        }
        if st.r != by.role {
            return Err(StateError::OtherRole(st.r));
        }
        if st.m != by.method || st.n != by.name || st.u != by.provider {
            return Err(StateError::OtherRequest(format!(
                "{} {:?} served by {}",
                st.m, st.n, st.u
            )));
        }
        if now > st.e {
            return Err(StateError::Expired);
        }
        Ok(st.i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Binding<'static> {
        Binding {
            serial: "0a",
            role: "admin",
            method: "tools/call",
            name: "ask",
            provider: "up",
        }
    }

    #[test]
    fn a_state_opens_for_its_holder_only() {
        let s = Sealer::new(STATE_TTL_SECS).unwrap();
        let t = s.seal(&alice(), Some("upstream-state"), 1000);
        assert!(
            !t.contains("upstream-state"),
            "the inner state is encrypted"
        );
        assert_eq!(
            s.open(&t, &alice(), 1001, |_| false),
            Ok(Some("upstream-state".into()))
        );
        let none = s.seal(&alice(), None, 1000);
        assert_eq!(s.open(&none, &alice(), 1000, |_| false), Ok(None));

        let bob = Binding {
            serial: "0b",
            ..alice()
        };
        assert_eq!(
            s.open(&t, &bob, 1001, |_| false),
            Err(StateError::OtherCertificate("0a".into()))
        );
        let viewer = Binding {
            role: "viewer",
            ..alice()
        };
        assert!(matches!(
            s.open(&t, &viewer, 1001, |_| false),
            Err(StateError::OtherRole(_))
        ));
        let other_tool = Binding {
            name: "other",
            ..alice()
        };
        assert!(matches!(
            s.open(&t, &other_tool, 1001, |_| false),
            Err(StateError::OtherRequest(_))
        ));
        let prompt = Binding {
            method: "prompts/get",
            ..alice()
        };
        let moved = Binding {
            provider: "other-upstream",
            ..alice()
        };
        assert!(matches!(
            s.open(&t, &moved, 1001, |_| false),
            Err(StateError::OtherRequest(_))
        ));
        assert!(matches!(
            s.open(&t, &prompt, 1001, |_| false),
            Err(StateError::OtherRequest(_))
        ));
    }

    #[test]
    fn tampered_expired_revoked_and_foreign_states_are_refused() {
        let s = Sealer::new(STATE_TTL_SECS).unwrap();
        let t = s.seal(&alice(), Some("x"), 1000);
        assert_eq!(
            s.open(&t, &alice(), 1000 + STATE_TTL_SECS + 1, |_| false),
            Err(StateError::Expired)
        );
        assert_eq!(
            s.open(&t, &alice(), 1000, |serial| serial == "0a"),
            Err(StateError::Revoked("0a".into()))
        );
        let mut flipped = t.clone().into_bytes();
        let last = flipped.len() - 3;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        for bad in [
            flipped.as_str(),
            &format!("{t}-TAMPERED"),
            "zt1.",
            "zt1.!!!",
            "plain",
            "",
        ] {
            assert_eq!(
                s.open(bad, &alice(), 1000, |_| false),
                Err(StateError::Tampered),
                "{bad}"
            );
        }
        // Another process (another key) cannot open it.
        let other = Sealer::new(STATE_TTL_SECS).unwrap();
        assert_eq!(
            other.open(&t, &alice(), 1000, |_| false),
            Err(StateError::Tampered)
        );
    }
}
