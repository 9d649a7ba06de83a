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
        // A database that vanishes without a FIN is noticed in seconds, not hours.
        config.keepalives(true);
        config.keepalives_idle(std::time::Duration::from_secs(10));
        config.keepalives_interval(std::time::Duration::from_secs(5));
        config.keepalives_retries(3);
        config.tcp_user_timeout(std::time::Duration::from_secs(20));
        // The server gives up too, rather than holding locks for a client that left.
        let ours = "-c statement_timeout=15000 -c lock_timeout=10000 \
                    -c idle_in_transaction_session_timeout=30000";
        let options = match config.get_options() {
            Some(o) if !o.trim().is_empty() => format!("{o} {ours}"),
            _ => ours.to_string(),
        };
        config.options(&options);
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
            (None, SslMode::Disable) => None,
            (None, SslMode::Prefer) if local_only(&config) => {
                // A Unix socket or loopback database: plain, said explicitly (`prefer` would
                // silently fall back anyway).
                config.ssl_mode(SslMode::Disable);
                None
            }
            (None, SslMode::Prefer) => {
                return Err(LedgerError::Config(
                    "the database is not on this host: give --ledger-ca FILE (the CA bundle \
                     that signed its certificate) for TLS, or say sslmode=disable in the URL to \
                     accept a plaintext connection anyone on the path can read and change"
                        .into(),
                ))
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

/// Whether every host of the URL is a Unix socket or a loopback address.
fn local_only(c: &tokio_postgres::Config) -> bool {
    let hosts = c.get_hosts();
    !hosts.is_empty()
        && hosts.iter().all(|h| match h {
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            #[cfg(unix)]
            Host::Unix(_) => true,
        })
        && c.get_hostaddrs().iter().all(|a| a.is_loopback())
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

/// Removes the password (if any) from a message that might quote the URL. Works on the text
/// (`scheme://user:PASSWORD@...`), since it is called when the URL did not parse.
fn redact(msg: &str, url: &str) -> String {
    let Some(rest) = url.split_once("://").map(|(_, r)| r) else {
        return msg.to_string();
    };
    let userinfo = rest.rsplit_once('@').map_or("", |(u, _)| u);
    match userinfo.split_once(':') {
        Some((_, pw)) if !pw.is_empty() => msg.replace(pw, "***"),
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
        assert_eq!(
            redact("bad s3cret here", "postgres://app:s3cret@x/y"),
            "bad *** here"
        );
        let local = LedgerSpec::new("postgres://app:s3cret@127.0.0.1:6543/ledger", None)
            .expect("spec")
            .target()
            .expect("a loopback database may be plain");
        assert_eq!(local.shown, "app@127.0.0.1:6543/ledger");
        assert!(local.tls.is_none());
        let remote = LedgerSpec::new("postgres://a@db.example/d", None)
            .expect("spec")
            .target()
            .err()
            .expect("a remote database without TLS is refused");
        assert!(remote.to_string().contains("sslmode=disable"), "{remote}");
        assert!(
            LedgerSpec::new("postgres://a@db.example/d?sslmode=disable", None)
                .expect("spec")
                .target()
                .is_ok()
        );
    }

    #[test]
    fn unsafe_or_unknown_settings_are_refused() {
        assert!(LedgerSpec::new("mysql://x@y/z", None).is_err());
        let e = LedgerSpec::new("postgres://a@db.example/d", None)
            .expect("spec")
            .target()
            .err()
            .expect("a remote database without TLS is refused");
        assert!(e.to_string().contains("sslmode=disable"), "{e}");
        assert!(
            LedgerSpec::new("postgres://a@db.example/d?sslmode=disable", None)
                .expect("spec")
                .target()
                .is_ok()
        );
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
