//! PKCS#12 bundles of a client certificate, its key and the CA, for OS keychains, browsers,
//! Java clients, and holders who run `mcp-zt connect --p12`. Always password-protected: PBES2
//! (PBKDF2-HMAC-SHA256, AES-256-CBC) with an HMAC-SHA256 MAC, which OpenSSL 3 reads by default.

use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, Pkcs12Archive,
    PrivateKey, PrivateKeyChain,
};
use zeroize::Zeroizing;

use super::holder::HolderCredentials;
use super::PkiError;

/// Shortest password `issue` and `export` accept for a new bundle (checked where the password
/// is read). A bundle made elsewhere with a shorter one is still renewed under its own.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Builds a PKCS#12 bundle of the holder's certificate and key (PKCS#8), with the CA
/// certificates in the chain.
pub fn bundle(alias: &str, creds: &HolderCredentials, password: &str) -> Result<Vec<u8>, PkiError> {
    if password.is_empty() {
        return Err(PkiError::Invalid("the PKCS#12 password is empty".into()));
    }
    let p12 = |e: p12_keystore::error::Error| PkiError::Key(format!("PKCS#12: {e}"));
    let key_der = creds
        .key_pkcs8()
        .ok_or_else(|| PkiError::Key("the client key is not a PEM PKCS#8 key".into()))?;
    let mut chain = vec![Certificate::from_der(creds.cert_der()).map_err(p12)?];
    for ca in creds.ca_ders() {
        chain.push(Certificate::from_der(ca).map_err(p12)?);
    }
    let chain = PrivateKeyChain::new(
        // The local key id ties the key to its certificate inside the bundle.
        creds.fields()?.serial.into_bytes(),
        PrivateKey::from_der(key_der).map_err(p12)?,
        chain,
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

/// Opens a PKCS#12 bundle: its one private key, the certificate that belongs to it, and every
/// CA certificate in it. Bundles made by other tools (OpenSSL, keychains) work too, provided
/// they hold exactly one key and its certificate. `pinned`, when given, replaces the bundle's
/// CA certificates (or supplies missing ones).
pub fn open(
    der: &[u8],
    password: &str,
    pinned: Option<Vec<Vec<u8>>>,
) -> Result<HolderCredentials, PkiError> {
    let archive = Pkcs12Archive::from_pkcs12(der, password).map_err(|e| match e {
        p12_keystore::error::Error::MacError(_) => {
            PkiError::Key("wrong PKCS#12 password (or the file is damaged)".into())
        }
        // Without a MAC a wrong password shows as undecryptable content.
        p12_keystore::error::Error::UnpadError | p12_keystore::error::Error::Pkcs5Error(_) => {
            PkiError::Key("wrong PKCS#12 password (or the file is damaged)".into())
        }
        other => PkiError::Parse(format!("not a readable PKCS#12 file: {other}")),
    })?;
    let Pkcs12Archive { keys, certs, .. } = archive;
    let count = keys.len();
    let key = match keys.into_iter().next() {
        Some(k) if count == 1 => k,
        Some(_) => {
            return Err(PkiError::Key(format!(
                "the PKCS#12 file holds {count} private keys; expected one"
            )))
        }
        None => {
            return Err(PkiError::Key(
                "the PKCS#12 file holds no private key (only certificates)".into(),
            ))
        }
    };
    let key_der = Zeroizing::new(key.key.as_der().to_vec());
    let public = rcgen::KeyPair::try_from(key_der.as_slice())
        .map_err(|_| PkiError::Key("the PKCS#12 file's private key cannot be read".into()))?
        .public_key_raw()
        .to_vec();
    let (leaf, others): (Vec<_>, Vec<_>) = certs
        .into_iter()
        .map(|bag| bag.cert.as_der().to_vec())
        .partition(|der| super::holder::certificate_is_for(der, &public));
    let cert = leaf.into_iter().next().ok_or_else(|| {
        PkiError::Parse("the PKCS#12 file holds no certificate for its private key".into())
    })?;
    let mut cas = Vec::new();
    for der in others {
        if super::inspect::fields_from_der(&der, &Default::default())?.is_ca && !cas.contains(&der)
        {
            cas.push(der);
        }
    }
    let cas = match pinned {
        Some(pinned) => pinned,
        None if cas.is_empty() => return Err(super::holder::no_ca("the PKCS#12 file")),
        None => cas,
    };
    HolderCredentials::from_der(cert, key_der, cas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::holder::tests::sample;

    fn holder() -> HolderCredentials {
        let (ca, cert, key) = sample();
        HolderCredentials::from_pem_parts(cert.as_bytes(), key.as_bytes(), ca.as_bytes())
            .expect("parts")
    }

    #[test]
    fn a_bundle_opens_with_its_password_and_holds_key_cert_and_ca() {
        let creds = holder();
        let der = bundle("bob", &creds, "correct horse").expect("bundle");
        let back = open(&der, "correct horse", None).expect("open");
        assert_eq!(back.cert_der(), creds.cert_der());
        assert_eq!(back.key_pkcs8(), creds.key_pkcs8());
        assert_eq!(back.ca_ders(), creds.ca_ders());
    }

    #[test]
    fn a_wrong_password_is_named_as_such() {
        let der = bundle("bob", &holder(), "correct horse").expect("bundle");
        let err = open(&der, "wrong horse", None).expect_err("wrong password");
        assert!(err.to_string().contains("wrong PKCS#12 password"), "{err}");
        let err = open(b"not a bundle", "correct horse", None).expect_err("garbage");
        assert!(err.to_string().contains("not a readable PKCS#12"), "{err}");
    }

    #[test]
    fn bundles_without_a_key_or_a_ca_are_refused() {
        let creds = holder();
        let cert = Certificate::from_der(creds.cert_der()).expect("cert");
        let write = |store: KeyStore| {
            store
                .writer("correct horse")
                .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
                .mac_algorithm(MacAlgorithm::HmacSha256)
                .write()
                .expect("write")
        };
        // Certificates only.
        let mut store = KeyStore::new();
        store.add_entry("bob", KeyStoreEntry::Certificate(cert.clone()));
        let err = open(&write(store), "correct horse", None).expect_err("no key");
        assert!(err.to_string().contains("no private key"), "{err}");
        // Key and certificate, no CA.
        let mut store = KeyStore::new();
        let key = PrivateKey::from_der(creds.key_pkcs8().expect("pkcs8")).expect("key");
        store.add_entry(
            "bob",
            KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(b"1".to_vec(), key, [cert])),
        );
        let err = open(&write(store), "correct horse", None).expect_err("no CA");
        assert!(err.to_string().contains("no CA certificate"), "{err}");
    }
}
