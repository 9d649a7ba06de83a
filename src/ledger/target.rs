//! Where a shared ledger lives: the `--ledger` URL and the TLS settings to reach it.
//!
//! The URL carries the database password when one is used, so it is never printed: messages
//! show `user@host:port/database` ([`LedgerSpec::shown`]), and `Debug` hides the URL too.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use tokio_postgres::config::{Host, SslMode};

use super::LedgerError;

/// A `--ledger` choice: a `postgres://` URL and, for TLS to the database, the CA bundle that
/// signed the database server's certificate.
#[derive(Clone)]
pub struct LedgerSpec {
    url: String,
    ca: Option<PathBuf>,
}

impl std::fmt::Debug for LedgerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerSpec")
            .field("target", &self.shown())
            .field("ca", &self.ca)
            .finish()
    }
}

/// A parsed target: connection settings, TLS, and the name shown in messages.
#[derive(Clone)]
pub struct PgTarget {
    /// tokio-postgres settings (connect timeout set).
    pub config: tokio_postgres::Config,
    /// rustls, when TLS is on.
    pub tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// `user@host:port/database`.
    pub shown: String,
}

/// How long a connection attempt to the database may take.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl LedgerSpec {
    /// A spec from the URL and optional CA file. Only `postgres://` and `postgresql://` URLs
    /// are accepted; the rest is checked when the ledger is opened.
    pub fn new(url: &str, ca: Option<PathBuf>) -> Result<LedgerSpec, LedgerError> {
        let url = url.trim();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(LedgerError::Config(
                "expected a postgres://user@host:port/database URL (leave --ledger out for the \
                 embedded sled ledger in HOME/ledger)"
                    .into(),
            ));
        }
        Ok(LedgerSpec {
            url: url.to_string(),
            ca,
        })
    }

    /// `user@host:port/database`, without the password, for messages and audit.
    pub fn shown(&self) -> String {
        match tokio_postgres::Config::from_str(&self.url) {
            Ok(c) => shown(&c),
            Err(_) => "(unparsable postgres URL)".into(),
        }
    }

    /// Parses the URL and builds the TLS client. TLS is on when `--ledger-ca` is given (and
    /// `sslmode=disable` is then refused as a contradiction); `sslmode=require` without a CA is
    /// refused rather than accepting any certificate the network offers.
    pub fn target(&self) -> Result<PgTarget, LedgerError> {
        let mut config = tokio_postgres::Config::from_str(&self.url).map_err(|e| {
            LedgerError::Config(format!(
                "the postgres URL does not parse ({}); the form is \
                 postgres://user[:password]@host[:port]/database[?sslmode=require]",
                redact(&e.to_string(), &self.url)
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("mcp-zt");
        let tls = match (&self.ca, config.get_ssl_mode()) {
            (Some(_), SslMode::Disable) => {
                return Err(LedgerError::Config(
                    "--ledger-ca was given but the URL says sslmode=disable".into(),
                ))
            }
            (Some(ca), _) => {
                config.ssl_mode(SslMode::Require);
                Some(tls_for(ca)?)
            }
            (None, SslMode::Disable | SslMode::Prefer) => {
                // No TLS asked for: plain (a Unix socket or loopback database). `prefer`
                // would silently fall back anyway; say what happens by doing it explicitly.
                config.ssl_mode(SslMode::Disable);
                None
            }
            (None, _) => {
                return Err(LedgerError::Config(
                    "sslmode=require (or stricter) needs --ledger-ca FILE (the CA bundle that signed the \
                     database server's certificate): mcp-zt does not accept an unverified \
                     database"
                        .into(),
                ))
            }
        };
        Ok(PgTarget {
            shown: shown(&config),
            config,
            tls,
        })
    }
}

fn shown(c: &tokio_postgres::Config) -> String {
    let user = c.get_user().unwrap_or("(default user)");
    let host = match c.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let db = c.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{db}")
}

/// Removes the password (if any) from a message that might quote the URL.
fn redact(msg: &str, url: &str) -> String {
    let Ok(c) = tokio_postgres::Config::from_str(url) else {
        return msg.to_string();
    };
    match c.get_password().and_then(|p| std::str::from_utf8(p).ok()) {
        Some(p) if !p.is_empty() => msg.replace(p, "***"),
        _ => msg.to_string(),
    }
}

/// A rustls client for the database, with the process's one crypto provider and only the
/// given CA bundle as roots; the host name in the URL must match the server's certificate.
fn tls_for(ca: &std::path::Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect, LedgerError> {
    let pem = std::fs::read(ca)
        .map_err(|e| LedgerError::Config(format!("--ledger-ca {}: {e}", ca.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    let mut added = 0;
    for item in rustls_pemfile_certs(&pem) {
        let der =
            item.map_err(|e| LedgerError::Config(format!("--ledger-ca {}: {e}", ca.display())))?;
        roots
            .add(der)
            .map_err(|e| LedgerError::Config(format!("--ledger-ca {}: {e}", ca.display())))?;
        added += 1;
    }
    if added == 0 {
        return Err(LedgerError::Config(format!(
            "--ledger-ca {}: no PEM certificate in it",
            ca.display()
        )));
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| LedgerError::Config(e.to_string()))?
        .with_root_certificates(Arc::new(roots))
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The certificates of a PEM bundle, as DER.
fn rustls_pemfile_certs(
    pem: &[u8],
) -> impl Iterator<Item = Result<rustls::pki_types::CertificateDer<'static>, String>> + '_ {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem).map(|r| r.map_err(|e| e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_shown() {
        let s =
            LedgerSpec::new("postgres://app:s3cret@db.example:6543/ledger", None).expect("spec");
        assert_eq!(s.shown(), "app@db.example:6543/ledger");
        assert!(!format!("{s:?}").contains("s3cret"));
        let t = s.target().expect("target");
        assert_eq!(t.shown, "app@db.example:6543/ledger");
        assert!(t.tls.is_none());
    }

    #[test]
    fn unsafe_or_unknown_settings_are_refused() {
        assert!(LedgerSpec::new("mysql://x@y/z", None).is_err());
        let e = LedgerSpec::new("postgres://a@h/d?sslmode=require", None)
            .expect("spec")
            .target()
            .err()
            .expect("refused");
        assert!(e.to_string().contains("--ledger-ca"), "{e}");
        let e = LedgerSpec::new("postgres://a:pw@h/d?bogus=1", None)
            .expect("spec")
            .target()
            .err()
            .expect("refused");
        assert!(!e.to_string().contains("pw@"), "{e}");
    }
}
