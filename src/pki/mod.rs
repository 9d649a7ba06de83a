//! Certificate material: the role extension, certificate building, CRLs, key files, and reading
//! certificates back. Pure where it can be: functions here build bytes; writing them to disk is
//! the caller's step (see [`crate::ca`]).

pub mod build;
pub mod holder;
pub mod inspect;
pub mod keyfile;
pub mod p12;
pub mod role_ext;

use time::OffsetDateTime;

/// Errors from certificate and key operations.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused to build or sign (its error is in the message, not also the source).
    #[error("certificate generation failed: {0}")]
    Rcgen(rcgen::Error),
    /// The system random source failed.
    #[error("the system random number generator failed")]
    Random,
    /// A certificate could not be parsed.
    #[error("cannot parse certificate: {0}")]
    Parse(String),
    /// A key file problem, with a message a person can act on.
    #[error("{0}")]
    Key(String),
    /// A request that breaks a naming or validity rule.
    #[error("{0}")]
    Invalid(String),
    /// Role extension problem.
    #[error(transparent)]
    Role(#[from] role_ext::RoleExtError),
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Rcgen(e)
    }
}

/// Fills `buf` from the process' one crypto provider (aws-lc-rs).
pub fn fill_random(buf: &mut [u8]) -> Result<(), PkiError> {
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(buf)
        .map_err(|_| PkiError::Random)
}

/// A fresh certificate serial: 128 random bits, positive and without a leading zero byte so
/// its DER is exactly 16 bytes. rcgen's default serial is derived from the public key, which
/// would repeat on re-issue for the same key; we never use it.
pub fn random_serial() -> Result<[u8; 16], PkiError> {
    let mut serial = [0u8; 16];
    fill_random(&mut serial)?;
    serial[0] = (serial[0] & 0x7f).max(1);
    Ok(serial)
}

/// The current time, truncated to whole seconds (X.509 times have no fractions).
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// Formats a Unix timestamp as RFC 3339 UTC.
pub fn rfc3339(ts: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ts.to_string())
}

/// Checks a certificate holder name: 1-64 characters of `A-Z a-z 0-9 . _ -`, not starting with
/// `.` or `-`. The name becomes a file name and a SPIFFE path segment, so path separators,
/// control characters and spaces are refused.
pub fn validate_name(name: &str) -> Result<(), PkiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PkiError::Invalid(format!(
            "invalid name {name:?}: use 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.' or '-'"
        )))
    }
}

/// Checks a SPIFFE trust domain: lower-case letters, digits, '.', '-', '_' (SPIFFE ID spec).
pub fn validate_trust_domain(td: &str) -> Result<(), PkiError> {
    let ok = !td.is_empty()
        && td.len() <= 255
        && td.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(PkiError::Invalid(format!(
            "invalid trust domain {td:?}: use lower-case letters, digits, '.', '-' and '_'"
        )))
    }
}

/// Parses a lifetime such as `30d`, `12h`, `90m` or `3600s` into seconds.
pub fn parse_ttl(s: &str) -> Result<i64, PkiError> {
    let bad = || {
        PkiError::Invalid(format!(
            "invalid TTL {s:?}: use a number with a unit s, m, h or d (e.g. 30d, 12h)"
        ))
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(mult).ok_or_else(bad)?;
    if secs <= 0 {
        return Err(bad());
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_errors_are_said_once_as_main_prints_them() {
        let chain = format!(
            "{:#}",
            anyhow::Error::from(PkiError::from(rcgen::Error::CouldNotParseCertificate))
        );
        assert_eq!(
            chain,
            "certificate generation failed: Could not parse certificate"
        );
        let tls = crate::tls::TlsError::from(rustls::Error::NoCertificatesPresented);
        let chain = format!("{:#}", anyhow::Error::from(tls));
        assert_eq!(chain, "TLS configuration: peer sent no certificates");
        let identity = crate::identity::IdentityError::from(
            crate::pki::inspect::RoleError::Malformed(role_ext::RoleExtError::Malformed("empty")),
        );
        let chain = format!("{:#}", anyhow::Error::from(identity));
        assert_eq!(chain, "malformed role extension: empty");
    }

    #[test]
    fn serials_are_positive_16_bytes_and_distinct() {
        let a = random_serial().expect("serial");
        let b = random_serial().expect("serial");
        assert_ne!(a, b);
        assert!((1..=0x7f).contains(&a[0]));
    }

    #[test]
    fn names_with_separators_or_controls_are_refused() {
        for bad in [
            "",
            "a/b",
            "..",
            ".hidden",
            "-x",
            "a b",
            "a\nb",
            "a\\b",
            &"x".repeat(65),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        for good in ["alice", "bob.smith", "svc_1", "A-2"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("30d").expect("ttl"), 30 * 86_400);
        assert_eq!(parse_ttl("90m").expect("ttl"), 5400);
        for bad in ["", "d", "10", "0d", "10y", "-1d", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
