//! The role extension: how a certificate carries its holder's RBAC role.
//!
//! ```text
//! mcpZtRole EXTENSION ::= { critical FALSE, extnValue RoleSyntax }
//! RoleSyntax ::= SEQUENCE SIZE (1) OF UTF8String (SIZE (1..64))
//! ```
//!
//! The extension is non-critical because webpki (and most verifiers) reject certificates with
//! unknown critical extensions; mcp-zt itself refuses a client certificate whose extension is
//! missing or malformed, so non-critical does not mean optional for us.
//!
//! The encoding is strict DER: definite minimal lengths, no trailing bytes, exactly one element.
//! A SEQUENCE leaves room for more attributes later without a new OID.

use std::fmt;
use std::str::FromStr;

/// The default role OID: `2.25.2722895933408864092`.
///
/// `2.25` is the UUID arc (ITU-T X.667), which needs no registration and belongs to nobody. A
/// full `2.25.<UUID>` arc is a 128-bit integer, but rcgen writes OID arcs as `u64`, so the
/// default is a randomly drawn 63-bit integer under `2.25`. Organizations with their own IANA
/// Private Enterprise Number should pass `ca init --role-oid 1.3.6.1.4.1.<PEN>.<n>`; the choice is
/// recorded in the CA's metadata and used for every certificate the CA issues and accepts.
pub const DEFAULT_ROLE_OID: &[u64] = &[2, 25, 2_722_895_933_408_864_092];

/// Longest role name accepted, in bytes.
pub const MAX_ROLE_LEN: usize = 64;

const TAG_SEQUENCE: u8 = 0x30;
const TAG_UTF8STRING: u8 = 0x0c;

/// Why role extension bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleExtError {
    /// The bytes are not the DER this module writes.
    #[error("malformed role extension: {0}")]
    Malformed(&'static str),
    /// The role name is empty, too long or has characters outside `[a-z0-9_-]`.
    #[error("invalid role name {0:?}: use 1-64 characters of a-z, 0-9, '-' and '_'")]
    InvalidRole(String),
    /// An OID string that does not parse.
    #[error("invalid OID {0:?}: expected dotted decimal such as 1.3.6.1.4.1.99999.1")]
    InvalidOid(String),
}

/// Checks a role name: lower-case ASCII letters, digits, `-` and `_`, 1 to 64 bytes.
pub fn validate_role(role: &str) -> Result<(), RoleExtError> {
    let ok = !role.is_empty()
        && role.len() <= MAX_ROLE_LEN
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(RoleExtError::InvalidRole(role.to_string()))
    }
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Encodes `role` as the extension value. The role must pass [`validate_role`].
pub fn encode(role: &str) -> Result<Vec<u8>, RoleExtError> {
    validate_role(role)?;
    let mut inner = vec![TAG_UTF8STRING];
    push_len(&mut inner, role.len());
    inner.extend_from_slice(role.as_bytes());
    let mut out = vec![TAG_SEQUENCE];
    push_len(&mut out, inner.len());
    out.extend_from_slice(&inner);
    Ok(out)
}

/// Reads one TLV with the given tag, returning (contents, rest). Minimal lengths only.
fn read_tlv(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), RoleExtError> {
    let (&first, rest) = input
        .split_first()
        .ok_or(RoleExtError::Malformed("empty"))?;
    if first != tag {
        return Err(RoleExtError::Malformed("unexpected tag"));
    }
    let (&len0, mut rest) = rest
        .split_first()
        .ok_or(RoleExtError::Malformed("missing length"))?;
    let len = if len0 < 0x80 {
        usize::from(len0)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 2 {
            return Err(RoleExtError::Malformed("unsupported length"));
        }
        if rest.len() < n {
            return Err(RoleExtError::Malformed("truncated length"));
        }
        let (len_bytes, after) = rest.split_at(n);
        rest = after;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if len < 0x80 || len_bytes[0] == 0 {
            return Err(RoleExtError::Malformed("non-minimal length"));
        }
        len
    };
    if rest.len() < len {
        return Err(RoleExtError::Malformed("truncated value"));
    }
    Ok(rest.split_at(len))
}

/// Decodes the extension value written by [`encode`]; anything else is an error.
pub fn decode(der: &[u8]) -> Result<String, RoleExtError> {
    let (seq, trailing) = read_tlv(der, TAG_SEQUENCE)?;
    if !trailing.is_empty() {
        return Err(RoleExtError::Malformed("trailing bytes"));
    }
    let (role, rest) = read_tlv(seq, TAG_UTF8STRING)?;
    if !rest.is_empty() {
        return Err(RoleExtError::Malformed("more than one role"));
    }
    let role = std::str::from_utf8(role).map_err(|_| RoleExtError::Malformed("not UTF-8"))?;
    validate_role(role)?;
    Ok(role.to_string())
}

/// An object identifier as its arcs, printable and parseable as dotted decimal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Oid(Vec<u64>);

impl Oid {
    /// The arcs.
    pub fn arcs(&self) -> &[u64] {
        &self.0
    }
}

impl Default for Oid {
    fn default() -> Self {
        Oid(DEFAULT_ROLE_OID.to_vec())
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

impl FromStr for Oid {
    type Err = RoleExtError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RoleExtError::InvalidOid(s.to_string());
        let arcs = s
            .split('.')
            .map(|p| {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                p.parse::<u64>().map_err(|_| bad())
            })
            .collect::<Result<Vec<u64>, _>>()?;
        // X.660: at least two arcs, first in 0..=2, second below 40 unless the first is 2.
        let valid = arcs.len() >= 2 && arcs[0] <= 2 && (arcs[0] == 2 || arcs[1] < 40);
        if valid {
            Ok(Oid(arcs))
        } else {
            Err(bad())
        }
    }
}

impl TryFrom<String> for Oid {
    type Error = RoleExtError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Oid> for String {
    fn from(o: Oid) -> String {
        o.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_round_trips() {
        for role in [
            "viewer",
            "editor",
            "admin",
            "a",
            "ops_team-2",
            &"x".repeat(64),
        ] {
            let der = encode(role).expect("encode");
            assert_eq!(decode(&der).expect("decode"), role);
        }
    }

    #[test]
    fn encoding_is_the_documented_der() {
        assert_eq!(
            encode("admin").expect("encode"),
            [0x30, 0x07, 0x0c, 0x05, b'a', b'd', b'm', b'i', b'n']
        );
    }

    #[test]
    fn invalid_roles_are_refused_on_both_sides() {
        for role in ["", "Admin", "ad min", "a/b", "é", &"x".repeat(65)] {
            assert!(encode(role).is_err(), "{role:?}");
        }
        // Hand-built DER with an upper-case role is refused by the decoder too.
        assert!(decode(&[0x30, 0x03, 0x0c, 0x01, b'A']).is_err());
    }

    #[test]
    fn malformed_der_is_refused() {
        let good = encode("admin").expect("encode");
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x30],
            vec![0x31, 0x00],
            good[..good.len() - 1].to_vec(),
            [good.clone(), vec![0]].concat(),
            vec![0x30, 0x00],
            vec![0x30, 0x81, 0x03, 0x0c, 0x01, b'a'],
            vec![0x30, 0x06, 0x0c, 0x01, b'a', 0x0c, 0x01, b'b'],
            vec![0x30, 0x03, 0x0c, 0x01, 0xff],
            vec![0x30, 0x03, 0x04, 0x01, b'a'],
        ];
        for case in cases {
            assert!(decode(&case).is_err(), "{case:02x?}");
        }
    }

    #[test]
    fn long_form_lengths_round_trip() {
        // Not reachable with 64-byte roles, but the decoder must agree with the encoder.
        let mut out = Vec::new();
        push_len(&mut out, 200);
        assert_eq!(out, [0x81, 200]);
    }

    #[test]
    fn oids_parse_and_print() {
        let oid: Oid = "1.3.6.1.4.1.99999.1".parse().expect("parse");
        assert_eq!(oid.to_string(), "1.3.6.1.4.1.99999.1");
        assert_eq!(Oid::default().to_string(), "2.25.2722895933408864092");
        for bad in [
            "",
            "1",
            "3.1",
            "1.40",
            "1..2",
            "1.a",
            "1.2.99999999999999999999999",
        ] {
            assert!(bad.parse::<Oid>().is_err(), "{bad}");
        }
    }
}
