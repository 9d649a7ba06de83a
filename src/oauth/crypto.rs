//! Token material: random secrets, their hashes, PKCE, and the keyed derivation that lets a
//! repeated refresh get the same answer without the answer ever being stored.

use aws_lc_rs::{constant_time, digest, hmac, rand as lc_rand};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// 256 random bits, base64url, after `prefix` (which says what kind of secret it is, so one
/// pasted into the wrong place is recognisable).
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    // The system RNG does not fail on the platforms mcp-zt runs on; if it ever did, an
    // all-zero token would be a disaster, so this refuses to go on.
    if lc_rand::fill(&mut bytes).is_err() {
        panic!("the system random number generator failed");
    }
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A short random id (hex, 64 bits): grant ids, DCR client ids.
pub fn random_id() -> String {
    let mut bytes = [0u8; 8];
    if lc_rand::fill(&mut bytes).is_err() {
        panic!("the system random number generator failed");
    }
    hex::encode(bytes)
}

/// SHA-256 of `s`, lower-case hex: how tokens, codes and secrets are stored.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, s.as_bytes()))
}

/// SHA-256 of `bytes`, base64url without padding (PKCE, `x5t#S256`).
pub fn sha256_b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, bytes))
}

/// Whether two secrets (or their hashes) are equal, in constant time.
pub fn same(a: &str, b: &str) -> bool {
    constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// Whether `verifier` is a well-formed PKCE code verifier (RFC 7636 §4.1: 43 to 128 of
/// `[A-Za-z0-9-._~]`) whose S256 transform is `challenge`.
pub fn pkce_s256_ok(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    well_formed && same(&sha256_b64(verifier.as_bytes()), challenge)
}

/// Whether `challenge` can be an S256 challenge: 43 base64url characters (a SHA-256).
pub fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The server's OAuth key: derives CSRF tokens and the successors of refresh tokens. Kept in
/// `HOME/oauth.key` (0600).
pub struct Secret(hmac::Key);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// From 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Secret {
        Secret(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// HMAC-SHA-256 of `parts` (each length-prefixed, so no two lists collide), base64url.
    pub fn mac(&self, parts: &[&str]) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        for p in parts {
            ctx.update(&(p.len() as u64).to_be_bytes());
            ctx.update(p.as_bytes());
        }
        URL_SAFE_NO_PAD.encode(ctx.sign().as_ref())
    }

    /// A token derived from `parts`, with `prefix`: the same inputs give the same token.
    pub fn derive(&self, prefix: &str, parts: &[&str]) -> String {
        format!("{prefix}{}", self.mac(parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_an_independent_implementation() {
        // The challenge computed by Python's hashlib and base64 for this verifier.
        let verifier = "dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "ngF5GsXcbwljx6u133FFr3Xht9xooA_DuaX_3QwODtc";
        assert!(pkce_s256_ok(verifier, challenge));
        assert!(is_s256_challenge(challenge));
        assert!(!pkce_s256_ok(challenge, challenge), "plain is refused");
        assert!(!pkce_s256_ok("short", &sha256_b64(b"short")), "too short");
        let bad = format!("{verifier}!");
        assert!(!pkce_s256_ok(&bad, &sha256_b64(bad.as_bytes())), "bad char");
    }

    #[test]
    fn tokens_are_random_and_derivations_are_not() {
        let a = random_token("x_");
        assert!(a.starts_with("x_") && a.len() == 2 + 43);
        assert_ne!(a, random_token("x_"));
        let s = Secret::from_bytes(&[7; 32]);
        assert_eq!(s.derive("r_", &["a", "b"]), s.derive("r_", &["a", "b"]));
        assert_ne!(s.mac(&["ab", ""]), s.mac(&["a", "b"]));
        assert_ne!(
            s.mac(&["a"]),
            Secret::from_bytes(&[8; 32]).mac(&["a"]),
            "another key, another answer"
        );
    }
}
