//! PKCS#12 bundles of a client certificate, its key and the CA, for OS keychains, browsers and
//! Java clients. Always password-protected: PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) with an
//! HMAC-SHA256 MAC, which OpenSSL 3 reads by default.

use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
    PrivateKeyChain,
};

use super::inspect::pem_to_der;
use super::PkiError;

/// Shortest password accepted for a bundle.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Builds a PKCS#12 bundle of `cert_pem` + `key_pem` (PKCS#8) with `ca_pem` in the chain.
pub fn bundle(
    alias: &str,
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
    password: &str,
) -> Result<Vec<u8>, PkiError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(PkiError::Invalid(format!(
            "the PKCS#12 password must have at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    let p12 = |e: p12_keystore::error::Error| PkiError::Key(format!("PKCS#12: {e}"));
    let cert_der = pem_to_der(cert_pem)?;
    let ca_der = pem_to_der(ca_pem)?;
    let key = rcgen::KeyPair::from_pem(key_pem)
        .map_err(|_| PkiError::Key("the client key is not a PEM PKCS#8 key".into()))?;
    let key_der = zeroize::Zeroizing::new(key.serialize_der());
    let chain = PrivateKeyChain::new(
        // The local key id ties the key to its certificate inside the bundle.
        super::inspect::fields_from_der(&cert_der, &Default::default())?
            .serial
            .into_bytes(),
        PrivateKey::from_der(&key_der).map_err(p12)?,
        [
            Certificate::from_der(&cert_der).map_err(p12)?,
            Certificate::from_der(&ca_der).map_err(p12)?,
        ],
    );
    let mut store = KeyStore::new();
    store.add_entry(alias, KeyStoreEntry::PrivateKeyChain(chain));
    store
        .writer(password)
        .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .mac_algorithm(MacAlgorithm::HmacSha256)
        .write()
        .map_err(p12)
}
