//! Private key files: PEM PKCS#8, optionally encrypted at rest (PBES2: scrypt + AES-256-CBC,
//! which `openssl pkey` reads), with a permission check before any key is used.

use std::path::Path;

use pkcs8::der::pem::LineEnding;
use pkcs8::der::pem::PemLabel;
use pkcs8::{EncryptedPrivateKeyInfo, PrivateKeyInfo};
use rcgen::KeyPair;
use zeroize::Zeroizing;

use super::{fill_random, PkiError};
use crate::fsutil;

const ENCRYPTED_LABEL: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";

/// Serializes `key` as PEM, encrypted with `passphrase` when one is given.
pub fn to_pem(key: &KeyPair, passphrase: Option<&[u8]>) -> Result<Zeroizing<String>, PkiError> {
    let Some(pass) = passphrase else {
        return Ok(Zeroizing::new(key.serialize_pem()));
    };
    let der = Zeroizing::new(key.serialize_der());
    let info = PrivateKeyInfo::try_from(der.as_slice())
        .map_err(|e| PkiError::Key(format!("cannot encode key: {e}")))?;
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    fill_random(&mut salt)?;
    fill_random(&mut iv)?;
    // scrypt N=2^14, r=8, p=1 (16 MiB): the parameters of `openssl pkcs8 -scrypt`, and within
    // OpenSSL's default memory limit so `openssl pkey` can read the key too.
    let scrypt = pkcs8::pkcs5::scrypt::Params::new(14, 8, 1, 32)
        .map_err(|e| PkiError::Key(format!("scrypt parameters: {e}")))?;
    let params = pkcs8::pkcs5::pbes2::Parameters::scrypt_aes256cbc(scrypt, &salt, &iv)
        .map_err(|e| PkiError::Key(format!("encryption parameters: {e}")))?;
    let doc = info
        .encrypt_with_params(params, pass)
        .map_err(|e| PkiError::Key(format!("cannot encrypt key: {e}")))?;
    let pem = doc
        .to_pem(EncryptedPrivateKeyInfo::PEM_LABEL, LineEnding::LF)
        .map_err(|e| PkiError::Key(format!("cannot encode key: {e}")))?;
    Ok(pem)
}

/// Whether PEM text holds an encrypted key.
pub fn is_encrypted(pem: &str) -> bool {
    pem.trim_start().starts_with(ENCRYPTED_LABEL)
}

/// Refuses a key file that group or others can read or write: a key that was exposed must not
/// silently keep signing. A unix check: Windows files have ACLs instead of modes, and a key
/// under the user's profile is private to the user by its inherited ACL (see [`fsutil`]).
pub fn check_permissions(path: &Path) -> Result<(), PkiError> {
    let exposed = fsutil::exposed_mode_of(path).map_err(|e| PkiError::Key(e.to_string()))?;
    if let Some(mode) = exposed {
        return Err(PkiError::Key(format!(
            "{} has mode {mode:04o}: a private key must not be accessible by group or others; \
             check it was not exposed, then run: chmod 600 {}",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// Loads a key pair from `path`, checking permissions first and decrypting if needed.
pub fn load(path: &Path, passphrase: Option<&[u8]>) -> Result<KeyPair, PkiError> {
    check_permissions(path)?;
    let bytes = Zeroizing::new(fsutil::read(path).map_err(|e| PkiError::Key(e.to_string()))?);
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| PkiError::Key(format!("{} is not a PEM file", path.display())))?;
    parse_pem(text, passphrase).map_err(|e| match e {
        PkiError::Key(msg) => PkiError::Key(format!("{}: {msg}", path.display())),
        other => other,
    })
}

/// Parses PEM key text, decrypting if needed.
pub fn parse_pem(text: &str, passphrase: Option<&[u8]>) -> Result<KeyPair, PkiError> {
    if is_encrypted(text) {
        let Some(pass) = passphrase else {
            return Err(PkiError::Key(
                "the key is encrypted: give its passphrase with --passphrase-file FILE or MCP_ZT_CA_PASSPHRASE_FILE".into(),
            ));
        };
        let (label, doc) = pkcs8::der::SecretDocument::from_pem(text)
            .map_err(|_| PkiError::Key("corrupt encrypted key (not valid PEM)".into()))?;
        if label != EncryptedPrivateKeyInfo::PEM_LABEL {
            return Err(PkiError::Key(
                "corrupt encrypted key (wrong PEM label)".into(),
            ));
        }
        let info = EncryptedPrivateKeyInfo::try_from(doc.as_bytes())
            .map_err(|_| PkiError::Key("corrupt encrypted key (bad structure)".into()))?;
        let plain = info
            .decrypt(pass)
            .map_err(|_| PkiError::Key("wrong passphrase, or the key is corrupt".into()))?;
        return KeyPair::try_from(plain.as_bytes())
            .map_err(|_| PkiError::Key("wrong passphrase, or the key is corrupt".into()));
    }
    KeyPair::from_pem(text).map_err(|_| {
        PkiError::Key(
            "corrupt key: expected a PEM PKCS#8 private key (ECDSA P-256 or Ed25519)".into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_keys_round_trip_and_wrong_passphrase_fails() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let pem = to_pem(&key, Some(b"correct horse")).expect("encrypt");
        assert!(is_encrypted(&pem));
        assert!(!pem.contains(&key.serialize_pem()));
        let back = parse_pem(&pem, Some(b"correct horse")).expect("decrypt");
        assert_eq!(back.public_key_raw(), key.public_key_raw());
        assert!(parse_pem(&pem, Some(b"wrong")).is_err());
        assert!(parse_pem(&pem, None).is_err());
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = parse_pem("not a key", None).expect_err("garbage");
        assert!(err.to_string().contains("corrupt key"), "{err}");
    }
}
