//! `mcp-zt secrets rotate-key`: every sealed value is opened with the old key and sealed
//! again under a new one, record by record (compare-and-swap, so a refresh racing the
//! rotation is not lost: the record is read again and re-sealed).
//!
//! The new key is written to `secrets.key.next` before anything is re-sealed and renamed over
//! `secrets.key` at the end; a rotation cut short leaves both files, and both keys open
//! values until `rotate-key` runs again to the end.

use crate::ledger::uplink::{HolderSecret, PendingLink, UpstreamLink, UpstreamRegistration};
use crate::ledger::{decode, encode, Ledger, LedgerError};
use crate::secrets::{Binding, SealKey, SecretsError};

/// What a rotation failed on.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The ledger.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A value that did not open: nothing more is re-sealed (the old key stays in use).
    #[error("record {key} of {kind}: {error}")]
    Sealed {
        /// Its kind.
        kind: String,
        /// Its key.
        key: String,
        /// Why.
        error: SecretsError,
    },
}

fn again(
    old: &SealKey,
    new: &SealKey,
    b: &Binding<'_>,
    sealed: &str,
) -> Result<String, SecretsError> {
    // Sealed under the new key already (written during the rotation, or by a run cut short).
    if new.sealed_by(sealed) {
        new.open(b, sealed)?;
        return Ok(sealed.to_string());
    }
    let plain = old.open(b, sealed)?;
    new.seal(b, &plain)
}

fn reseal_opt(
    old: &SealKey,
    new: &SealKey,
    b: &Binding<'_>,
    sealed: &Option<String>,
) -> Result<Option<String>, SecretsError> {
    sealed.as_ref().map(|s| again(old, new, b, s)).transpose()
}

/// One raw record re-sealed.
fn reseal(
    old: &SealKey,
    new: &SealKey,
    kind: &str,
    key: &str,
    bytes: &[u8],
) -> Result<Vec<u8>, RotateError> {
    let wrap = |error| RotateError::Sealed {
        kind: kind.to_string(),
        key: key.to_string(),
        error,
    };
    let out = match kind {
        "uplink_links" => {
            let mut l: UpstreamLink = decode(key, bytes)?;
            let b = |p: &'static str| Binding {
                purpose: p,
                upstream: &l.upstream,
                holder: &l.holder,
                chain: &l.chain,
            };
            let access = again(old, new, &b("access"), &l.access).map_err(wrap)?;
            let refresh = reseal_opt(old, new, &b("refresh"), &l.refresh).map_err(wrap)?;
            let secret =
                reseal_opt(old, new, &b("client-secret"), &l.client_secret).map_err(wrap)?;
            l.access = access;
            l.refresh = refresh;
            l.client_secret = secret;
            encode(&l)?
        }
        "uplink_pending" => {
            let mut p: PendingLink = decode(key, bytes)?;
            let b = |purpose: &'static str| Binding {
                purpose,
                upstream: &p.upstream,
                holder: &p.holder,
                chain: &p.chain,
            };
            let verifier = again(old, new, &b("verifier"), &p.verifier).map_err(wrap)?;
            let secret =
                reseal_opt(old, new, &b("client-secret"), &p.client_secret).map_err(wrap)?;
            p.verifier = verifier;
            p.client_secret = secret;
            encode(&p)?
        }
        "uplink_clients" => {
            let mut r: UpstreamRegistration = decode(key, bytes)?;
            let b = Binding {
                purpose: "client-secret",
                upstream: &r.upstream,
                holder: "",
                chain: &r.issuer,
            };
            r.client_secret = reseal_opt(old, new, &b, &r.client_secret).map_err(wrap)?;
            encode(&r)?
        }
        _ => {
            let mut s: HolderSecret = decode(key, bytes)?;
            let purpose = format!("secret:{}:{}", s.kind.as_str(), s.name);
            let b = Binding {
                purpose: &purpose,
                upstream: &s.upstream,
                holder: &s.holder,
                chain: &s.chain,
            };
            s.value = again(old, new, &b, &s.value).map_err(wrap)?;
            encode(&s)?
        }
    };
    Ok(out)
}

/// Re-seals every record from `old` to `new`; how many records. `old` must open what is
/// there (it may hold the previous key too, for an interrupted rotation).
pub fn reseal_all(ledger: &Ledger, old: &SealKey, new: &SealKey) -> Result<usize, RotateError> {
    let mut n = 0;
    for (kind, key, bytes) in ledger.sealed_records()? {
        let mut current = bytes;
        loop {
            let next = reseal(old, new, kind, &key, &current)?;
            if ledger.swap_sealed_record(kind, &key, current.clone(), next)? {
                n += 1;
                break;
            }
            // Changed meanwhile (a refresh, or removed): read it again.
            match ledger
                .sealed_records()?
                .into_iter()
                .find(|(k, kk, _)| *k == kind && *kk == key)
            {
                Some((_, _, b)) => current = b,
                None => break,
            }
        }
    }
    Ok(n)
}
