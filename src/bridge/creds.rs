//! Where the holder's certificate, key and CA live, and how a renewal replaces them there.
//!
//! Three forms, none of which needs a CA home: separate PEM files (as `issue` writes them),
//! one PEM bundle (`issue --bundle FILE`), or a password-protected PKCS#12 file (`issue
//! --bundle FILE.p12`). Everything is read into memory ([`HolderCredentials`]) and handed to
//! rustls from there: a decrypted key never touches the disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::KeyPair;
use zeroize::Zeroizing;

use super::BridgeError;
use crate::fsutil;
use crate::pki::holder::{certificate_is_for, HolderCredentials};
use crate::pki::{inspect, keyfile, p12};

/// A PKCS#12 password, kept out of `Debug` output.
#[derive(Clone)]
struct Password(Arc<Zeroizing<String>>);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<password>")
    }
}

/// The files the credentials come from.
#[derive(Debug, Clone)]
enum Source {
    /// Separate PEM files: the certificate, its key, the CA.
    Files {
        cert: PathBuf,
        key: PathBuf,
        ca: PathBuf,
    },
    /// One PEM file holding the key, the certificate and the CA.
    PemBundle { path: PathBuf, ca: Option<PathBuf> },
    /// A password-protected PKCS#12 file.
    Pkcs12 {
        path: PathBuf,
        password: Password,
        ca: Option<PathBuf>,
    },
}

/// The user's certificate, key and the CA to pin, by where they are stored.
#[derive(Debug, Clone)]
pub struct Credentials {
    source: Source,
}

fn setup(e: impl std::fmt::Display) -> BridgeError {
    BridgeError::Setup(e.to_string())
}

fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>, BridgeError> {
    fsutil::read(path).map(Zeroizing::new).map_err(setup)
}

/// Names the file in a PKI error.
fn in_file(path: &Path) -> impl Fn(crate::pki::PkiError) -> BridgeError + '_ {
    move |e| BridgeError::Setup(format!("{}: {e}", path.display()))
}

impl Credentials {
    /// Separate PEM files for the certificate, the key (mode 0600) and the CA.
    pub fn files(cert: PathBuf, key: PathBuf, ca: PathBuf) -> Credentials {
        Credentials {
            source: Source::Files { cert, key, ca },
        }
    }

    /// One PEM file (mode 0600) holding the key, the certificate and the CA; `ca`, when given,
    /// pins that CA instead of the bundle's.
    pub fn pem_bundle(path: PathBuf, ca: Option<PathBuf>) -> Credentials {
        Credentials {
            source: Source::PemBundle { path, ca },
        }
    }

    /// A PKCS#12 file and its password; `ca`, when given, pins that CA instead of the
    /// bundle's (or supplies one the bundle lacks).
    pub fn pkcs12(path: PathBuf, password: Zeroizing<String>, ca: Option<PathBuf>) -> Credentials {
        Credentials {
            source: Source::Pkcs12 {
                path,
                password: Password(Arc::new(password)),
                ca,
            },
        }
    }

    /// The file that holds the certificate, for messages.
    pub fn location(&self) -> &Path {
        match &self.source {
            Source::Files { cert, .. } => cert,
            Source::PemBundle { path, .. } | Source::Pkcs12 { path, .. } => path,
        }
    }

    /// Reads the certificate, key and CA as they are on disk now.
    pub fn read_current(&self) -> Result<HolderCredentials, BridgeError> {
        match &self.source {
            Source::Files { cert, key, ca } => {
                keyfile::check_permissions(key).map_err(setup)?;
                let (c, k, a) = (read(cert)?, read(key)?, read(ca)?);
                HolderCredentials::from_pem_parts(&c, &k, &a).map_err(|e| {
                    BridgeError::Setup(format!(
                        "{} / {} / {}: {e}",
                        cert.display(),
                        key.display(),
                        ca.display()
                    ))
                })
            }
            Source::PemBundle { path, ca } => {
                // The bundle holds a plain private key: the same rule as for a key file.
                keyfile::check_permissions(path).map_err(setup)?;
                let pinned = ca.as_deref().map(ca_ders).transpose()?;
                HolderCredentials::from_pem_bundle(&read(path)?, pinned).map_err(in_file(path))
            }
            Source::Pkcs12 { path, password, ca } => {
                let pinned = ca.as_deref().map(ca_ders).transpose()?;
                p12::open(&read(path)?, &password.0, pinned).map_err(in_file(path))
            }
        }
    }

    /// Reads and checks everything, after finishing a renewal that a crash interrupted.
    pub fn load(&self) -> Result<HolderCredentials, BridgeError> {
        self.finish_pending()?;
        self.read_current()
    }

    /// A reqwest client that presents the certificate and trusts only the CA.
    pub fn client(&self) -> Result<reqwest::Client, BridgeError> {
        self.client_trusting(false)
    }

    /// Like [`Self::client`]; with `system_roots`, the operating system's trusted CAs are
    /// trusted too (beside the bundle's CA): `oauth approve` talks to the login name, which
    /// may serve a certificate from a public CA (`serve --tls-cert`).
    pub fn client_trusting(&self, system_roots: bool) -> Result<reqwest::Client, BridgeError> {
        let creds = self.load()?;
        let path = self.location();
        let mut cas = Vec::new();
        for der in creds.ca_ders() {
            cas.push(reqwest::Certificate::from_der(der).map_err(|e| {
                BridgeError::Setup(format!("{}: CA certificate: {e}", path.display()))
            })?);
        }
        let id = reqwest::Identity::from_pem(&creds.identity_pem().map_err(in_file(path))?)
            .map_err(|e| {
                BridgeError::Setup(format!(
                    "{}: not a usable certificate and key: {e}",
                    path.display()
                ))
            })?;
        let mut b = reqwest::Client::builder();
        if system_roots {
            for ca in cas {
                b = b.add_root_certificate(ca);
            }
        } else {
            b = b.tls_certs_only(cas);
        }
        b.identity(id)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| BridgeError::Setup(format!("TLS client: {e}")))
    }

    /// The serial and holder of the certificate, for messages.
    pub fn describe(&self) -> String {
        self.read_current()
            .map(|c| crate::identity::serial_and_name(c.cert_der()))
            .map(|(s, n)| {
                format!(
                    "{} (serial {})",
                    n.unwrap_or_else(|| "?".into()),
                    s.unwrap_or_else(|| "?".into())
                )
            })
            .unwrap_or_else(|_| self.location().display().to_string())
    }

    /// Where a renewal keeps its new key until the new certificate is in place: `KEY.next`
    /// next to the key file, or `BUNDLE.next` next to a bundle.
    pub fn pending_key_path(&self) -> PathBuf {
        let file = match &self.source {
            Source::Files { key, .. } => key,
            Source::PemBundle { path, .. } | Source::Pkcs12 { path, .. } => path,
        };
        let mut name = file.file_name().unwrap_or_default().to_os_string();
        name.push(".next");
        file.with_file_name(name)
    }

    /// The pending key of an unfinished renewal, if there is one.
    pub fn read_pending_key(&self) -> Result<Option<KeyPair>, BridgeError> {
        let next = self.pending_key_path();
        let Ok(pem) = std::fs::read_to_string(&next).map(Zeroizing::new) else {
            return Ok(None);
        };
        keyfile::parse_pem(&pem, self.pending_passphrase())
            .map(Some)
            .map_err(|e| BridgeError::Setup(format!("{}: {e}", next.display())))
    }

    /// Writes the key of a renewal in progress (0600). Next to a PKCS#12 file it is encrypted
    /// with the bundle's password, so the disk never holds a key the bundle itself protects.
    pub fn write_pending_key(&self, key: &KeyPair) -> Result<(), BridgeError> {
        let pem = keyfile::to_pem(key, self.pending_passphrase()).map_err(setup)?;
        fsutil::write_atomic(
            &self.pending_key_path(),
            pem.as_bytes(),
            fsutil::SECRET_MODE,
        )
        .map_err(setup)
    }

    fn pending_passphrase(&self) -> Option<&[u8]> {
        match &self.source {
            Source::Pkcs12 { password, .. } => Some(password.0.as_bytes()),
            _ => None,
        }
    }

    /// Puts a renewed certificate and its key where the old ones were, then drops the pending
    /// key. Separate files: the certificate first, then the key moved into place (a crash in
    /// between is finished by [`Credentials::finish_pending`]). A bundle is replaced whole.
    pub fn store_renewed(&self, cert_pem: &str, key: &KeyPair) -> Result<(), BridgeError> {
        let next = self.pending_key_path();
        match &self.source {
            Source::Files {
                cert,
                key: key_path,
                ..
            } => {
                fsutil::write_atomic(cert, cert_pem.as_bytes(), fsutil::PUBLIC_MODE)
                    .map_err(setup)?;
                fsutil::rename_durable(&next, key_path).map_err(setup)
            }
            Source::PemBundle { path, .. } | Source::Pkcs12 { path, .. } => {
                let der = inspect::pem_to_der(cert_pem).map_err(setup)?;
                let renewed = self
                    .read_current()?
                    .with_cert_and_key(der, key)
                    .map_err(in_file(path))?;
                let bytes = match &self.source {
                    Source::Pkcs12 { password, .. } => {
                        let alias = renewed
                            .fields()
                            .ok()
                            .and_then(|f| f.common_name)
                            .unwrap_or_else(|| "mcp-zt".into());
                        Zeroizing::new(p12::bundle(&alias, &renewed, &password.0).map_err(setup)?)
                    }
                    _ => {
                        Zeroizing::new(renewed.to_pem_bundle().map_err(setup)?.as_bytes().to_vec())
                    }
                };
                fsutil::write_atomic(path, &bytes, fsutil::SECRET_MODE).map_err(setup)?;
                remove_pending(&next)
            }
        }
    }

    /// Finishes a renewal that stopped after the new certificate was written: when the pending
    /// key belongs to the certificate on disk, separate files get it moved into place, and a
    /// bundle (already replaced whole) just drops it. Anything else (no pending key, or one
    /// whose certificate never arrived) is left for the next renewal to use.
    pub fn finish_pending(&self) -> Result<(), BridgeError> {
        let Some(key) = self.read_pending_key()? else {
            return Ok(());
        };
        let next = self.pending_key_path();
        match &self.source {
            Source::Files {
                cert,
                key: key_path,
                ..
            } => {
                let pem = read(cert)?;
                let der = inspect::pem_to_der(&String::from_utf8_lossy(&pem)).map_err(setup)?;
                if certificate_is_for(&der, key.public_key_raw()) {
                    fsutil::rename_durable(&next, key_path).map_err(setup)?;
                }
                Ok(())
            }
            Source::PemBundle { .. } | Source::Pkcs12 { .. } => {
                let current = self.read_current()?;
                if certificate_is_for(current.cert_der(), key.public_key_raw()) {
                    remove_pending(&next)?;
                }
                Ok(())
            }
        }
    }
}

fn remove_pending(next: &Path) -> Result<(), BridgeError> {
    match std::fs::remove_file(next) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BridgeError::Setup(format!(
            "remove {}: {e}",
            next.display()
        ))),
    }
}

/// The CA certificates in a PEM file.
fn ca_ders(path: &Path) -> Result<Vec<Vec<u8>>, BridgeError> {
    use rustls::pki_types::pem::PemObject;
    let text = read(path)?;
    let cas = rustls::pki_types::CertificateDer::pem_slice_iter(&text)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BridgeError::Setup(format!("{}: not PEM: {e}", path.display())))?;
    if cas.is_empty() {
        return Err(BridgeError::Setup(format!(
            "{}: holds no CA certificate",
            path.display()
        )));
    }
    Ok(cas)
}
