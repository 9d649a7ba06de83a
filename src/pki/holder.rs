//! What a certificate holder needs on a machine without a CA home, as one value: the client
//! certificate, its private key, and the CA certificates that pin the server.
//!
//! It is read from the files `issue` writes (separate PEM files, one PEM bundle, or a PKCS#12
//! file, see [`super::p12`]) and written back as a PEM bundle or a PKCS#12 file when a renewal
//! replaces the certificate and key. Pure: bytes in, bytes out; files are the caller's step.

use pkcs8::der::pem::LineEnding;
use rustls::pki_types::pem::{PemObject, SectionKind};
use zeroize::Zeroizing;

use super::inspect::{self, CertFields};
use super::PkiError;

/// A client certificate with its key and the CA certificates to trust for the server.
#[derive(Clone)]
pub struct HolderCredentials {
    cert: Vec<u8>,
    key: Zeroizing<Vec<u8>>,
    key_label: &'static str,
    cas: Vec<Vec<u8>>,
}

impl std::fmt::Debug for HolderCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HolderCredentials")
            .field("cert", &format_args!("{} bytes", self.cert.len()))
            .field("key", &format_args!("<{}>", self.key_label))
            .field("cas", &self.cas.len())
            .finish()
    }
}

/// The PEM label of a private key section, or `None` for anything else.
fn key_label(kind: SectionKind) -> Option<&'static str> {
    match kind {
        SectionKind::PrivateKey => Some("PRIVATE KEY"),
        SectionKind::EcPrivateKey => Some("EC PRIVATE KEY"),
        SectionKind::RsaPrivateKey => Some("RSA PRIVATE KEY"),
        _ => None,
    }
}

/// The sections of PEM text mcp-zt knows (certificates, keys, ...), in order.
fn sections(pem: &[u8], what: &str) -> Result<Vec<(SectionKind, Vec<u8>)>, PkiError> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Parse(format!("{what} is not valid PEM: {e}")))
}

fn certificates(sections: &[(SectionKind, Vec<u8>)]) -> Vec<Vec<u8>> {
    sections
        .iter()
        .filter(|(k, _)| *k == SectionKind::Certificate)
        .map(|(_, der)| der.clone())
        .collect()
}

/// The one private key among `sections`; `what` names the file in errors.
fn one_key(
    sections: &mut Vec<(SectionKind, Vec<u8>)>,
    what: &str,
) -> Result<(&'static str, Zeroizing<Vec<u8>>), PkiError> {
    let mut keys = Vec::new();
    sections.retain_mut(|(kind, der)| match key_label(*kind) {
        Some(label) => {
            keys.push((label, Zeroizing::new(std::mem::take(der))));
            false
        }
        None => true,
    });
    let count = keys.len();
    match keys.pop() {
        Some(key) if count == 1 => Ok(key),
        Some(_) => Err(PkiError::Key(format!(
            "{what} holds {count} private keys; expected one"
        ))),
        None => Err(PkiError::Key(format!(
            "{what} holds no private key (an encrypted PEM key is not read here: use a PKCS#12 \
             file for a protected key)"
        ))),
    }
}

/// The error for a bundle without a CA certificate.
pub(crate) fn no_ca(what: &str) -> PkiError {
    PkiError::Parse(format!(
        "{what} holds no CA certificate to pin the server with: give the CA with --ca FILE"
    ))
}

fn pem(label: &str, der: &[u8]) -> Result<String, PkiError> {
    pkcs8::der::pem::encode_string(label, LineEnding::LF, der)
        .map_err(|e| PkiError::Parse(format!("PEM encoding: {e}")))
}

impl HolderCredentials {
    /// Builds the value from DER parts: the certificate, its key (PKCS#8) and the CAs.
    pub fn from_der(
        cert: Vec<u8>,
        key_pkcs8: Zeroizing<Vec<u8>>,
        cas: Vec<Vec<u8>>,
    ) -> Result<HolderCredentials, PkiError> {
        let creds = HolderCredentials {
            cert,
            key: key_pkcs8,
            key_label: "PRIVATE KEY",
            cas,
        };
        creds.check()?;
        Ok(creds)
    }

    /// Reads the separate files `issue` writes: the certificate (its first CERTIFICATE block
    /// is the client certificate), the key, and the CA certificate(s).
    pub fn from_pem_parts(
        cert_pem: &[u8],
        key_pem: &[u8],
        ca_pem: &[u8],
    ) -> Result<HolderCredentials, PkiError> {
        let cert = certificates(&sections(cert_pem, "the certificate file")?)
            .into_iter()
            .next()
            .ok_or_else(|| PkiError::Parse("the certificate file holds no certificate".into()))?;
        let mut key_sections = sections(key_pem, "the key file")?;
        let (key_label, key) = one_key(&mut key_sections, "the key file")?;
        let cas = certificates(&sections(ca_pem, "the CA file")?);
        if cas.is_empty() {
            return Err(PkiError::Parse("the CA file holds no certificate".into()));
        }
        let creds = HolderCredentials {
            cert,
            key,
            key_label,
            cas,
        };
        creds.check()?;
        Ok(creds)
    }

    /// Reads one PEM file holding the private key, the client certificate and the CA
    /// certificate(s), in any order: the certificate that is not a CA is the client's.
    /// `pinned`, when given, replaces the bundle's CA certificates (or supplies missing ones).
    pub fn from_pem_bundle(
        text: &[u8],
        pinned: Option<Vec<Vec<u8>>>,
    ) -> Result<HolderCredentials, PkiError> {
        let mut all = sections(text, "the bundle")?;
        let (key_label, key) = one_key(&mut all, "the bundle")?;
        let mut leaves = Vec::new();
        let mut cas = Vec::new();
        for der in certificates(&all) {
            if inspect::fields_from_der(&der, &Default::default())?.is_ca {
                cas.push(der);
            } else {
                leaves.push(der);
            }
        }
        let count = leaves.len();
        let cert = match leaves.pop() {
            Some(cert) if count == 1 => cert,
            Some(_) => {
                return Err(PkiError::Parse(format!(
                    "the bundle holds {count} client certificates; expected one"
                )))
            }
            None => {
                return Err(PkiError::Parse(
                    "the bundle holds no client certificate".into(),
                ))
            }
        };
        let cas = match pinned {
            Some(pinned) => pinned,
            None if cas.is_empty() => return Err(no_ca("the bundle")),
            None => cas,
        };
        let creds = HolderCredentials {
            cert,
            key,
            key_label,
            cas,
        };
        creds.check()?;
        Ok(creds)
    }

    /// Checks that the certificate parses, is not a CA, and belongs to the key (when the key
    /// is PKCS#8, the form `issue` and renewals write).
    fn check(&self) -> Result<(), PkiError> {
        if self.fields()?.is_ca {
            return Err(PkiError::Invalid(
                "the client certificate is a CA certificate".into(),
            ));
        }
        if self.cas.is_empty() {
            return Err(no_ca("the credentials"));
        }
        for ca in &self.cas {
            inspect::fields_from_der(ca, &Default::default())?;
        }
        if self.key_label == "PRIVATE KEY" {
            let key = rcgen::KeyPair::try_from(self.key.as_slice())
                .map_err(|_| PkiError::Key("the private key cannot be read (PKCS#8)".into()))?;
            if !certificate_is_for(&self.cert, key.public_key_raw()) {
                return Err(PkiError::Key(
                    "the private key does not belong to the client certificate".into(),
                ));
            }
        }
        Ok(())
    }

    /// The same CAs with another certificate and key (after a renewal).
    pub fn with_cert_and_key(
        &self,
        cert: Vec<u8>,
        key: &rcgen::KeyPair,
    ) -> Result<HolderCredentials, PkiError> {
        HolderCredentials::from_der(cert, Zeroizing::new(key.serialize_der()), self.cas.clone())
    }

    /// The client certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert
    }

    /// The CA certificates (DER).
    pub fn ca_ders(&self) -> &[Vec<u8>] {
        &self.cas
    }

    /// The private key as PKCS#8 DER, when that is its form.
    pub fn key_pkcs8(&self) -> Option<&[u8]> {
        (self.key_label == "PRIVATE KEY").then_some(self.key.as_slice())
    }

    /// The fields of the client certificate.
    pub fn fields(&self) -> Result<CertFields, PkiError> {
        inspect::fields_from_der(&self.cert, &Default::default())
    }

    /// The certificate followed by its key, as PEM: what a TLS client takes as its identity.
    pub fn identity_pem(&self) -> Result<Zeroizing<Vec<u8>>, PkiError> {
        let mut out = Zeroizing::new(pem("CERTIFICATE", &self.cert)?.into_bytes());
        out.extend_from_slice(Zeroizing::new(pem(self.key_label, &self.key)?).as_bytes());
        Ok(out)
    }

    /// The CA certificates as PEM.
    pub fn ca_pem(&self) -> Result<String, PkiError> {
        self.cas.iter().map(|der| pem("CERTIFICATE", der)).collect()
    }

    /// One PEM file: the private key, the client certificate, then the CA certificate(s).
    pub fn to_pem_bundle(&self) -> Result<Zeroizing<String>, PkiError> {
        let mut out = Zeroizing::new(pem(self.key_label, &self.key)?);
        out.push_str(&pem("CERTIFICATE", &self.cert)?);
        out.push_str(&self.ca_pem()?);
        Ok(out)
    }
}

/// Whether the certificate `der` carries the public key `raw_public_key` (as rcgen's
/// `public_key_raw` gives it: the bits of the subjectPublicKey).
pub fn certificate_is_for(der: &[u8], raw_public_key: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .is_ok_and(|(_, c)| c.public_key().subject_public_key.data.as_ref() == raw_public_key)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pki::build::KeyAlgorithm;

    /// A CA and a client certificate it signed, as (ca_pem, cert_pem, key_pem).
    pub(crate) fn sample() -> (String, String, Zeroizing<String>) {
        let ca_key = KeyAlgorithm::EcdsaP256.generate().expect("ca key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = KeyAlgorithm::EcdsaP256.generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bob");
        let cert = params.signed_by(&key, &issuer).expect("cert");
        (
            ca_cert.pem(),
            cert.pem(),
            Zeroizing::new(key.serialize_pem()),
        )
    }

    #[test]
    fn a_pem_bundle_round_trips_in_any_order() {
        let (ca, cert, key) = sample();
        let parts =
            HolderCredentials::from_pem_parts(cert.as_bytes(), key.as_bytes(), ca.as_bytes())
                .expect("parts");
        let bundle = parts.to_pem_bundle().expect("bundle");
        assert!(
            bundle.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{}",
            *bundle
        );
        let back = HolderCredentials::from_pem_bundle(bundle.as_bytes(), None).expect("bundle");
        assert_eq!(back.cert_der(), parts.cert_der());
        assert_eq!(back.ca_ders(), parts.ca_ders());
        assert_eq!(back.key_pkcs8(), parts.key_pkcs8());
        // CA first, key last: still read.
        let shuffled = format!("{ca}{cert}{}", *key);
        let back = HolderCredentials::from_pem_bundle(shuffled.as_bytes(), None).expect("shuffled");
        assert_eq!(back.cert_der(), parts.cert_der());
    }

    #[test]
    fn bundles_missing_a_part_are_refused_with_what_is_missing() {
        let (ca, cert, key) = sample();
        let cases = [
            (format!("{cert}{ca}"), "no private key"),
            (format!("{}{ca}", *key), "no client certificate"),
            (format!("{}{cert}", *key), "no CA certificate"),
            (format!("{}{}{cert}{ca}", *key, *key), "2 private keys"),
            ("garbage".to_string(), "no private key"),
        ];
        for (text, needle) in cases {
            let err = HolderCredentials::from_pem_bundle(text.as_bytes(), None).expect_err(needle);
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (ca, cert, _) = sample();
        let (_, _, other_key) = sample();
        let err =
            HolderCredentials::from_pem_parts(cert.as_bytes(), other_key.as_bytes(), ca.as_bytes())
                .expect_err("mismatch");
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let (ca, cert, key) = sample();
        let creds =
            HolderCredentials::from_pem_parts(cert.as_bytes(), key.as_bytes(), ca.as_bytes())
                .expect("parts");
        let text = format!("{creds:?}");
        assert!(text.contains("<PRIVATE KEY>"), "{text}");
        let body: String = key.lines().nth(1).expect("key body line").into();
        assert!(!text.contains(&body), "{text}");
    }
}
