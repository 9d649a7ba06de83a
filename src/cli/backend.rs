//! Where CLI commands take effect: the ledger directly, or the running server over its control
//! socket (sled allows one process per database, and a revocation must reach the live server).

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use zeroize::Zeroizing;

use crate::ca::{self, Authority, Home, IssueRequest, Issued, Signer};
use crate::ledger::{CaMeta, CertRecord};
use crate::pki::build::Reason;
use crate::server::ctl::{self, CtlRequest};

/// The CA, local or behind the server.
pub enum Backend {
    /// No server runs on HOME: open the ledger here.
    Local(Box<Authority>),
    /// `serve` owns the ledger: talk to it.
    Remote(PathBuf),
}

impl Backend {
    /// Picks the server if one answers on HOME's control socket, else opens the ledger.
    pub fn open(home: &Home) -> Result<Backend> {
        if ctl::server_running(&home.ctl_socket()) {
            return Ok(Backend::Remote(home.ctl_socket()));
        }
        Ok(Backend::Local(Box::new(Authority::open(home)?)))
    }

    fn call(path: &std::path::Path, req: CtlRequest) -> Result<ctl::CtlResponse> {
        ctl::call(path, &req).map_err(|e| anyhow!(e))
    }

    /// Every record and the CA metadata.
    pub fn records(&self) -> Result<(Vec<CertRecord>, CaMeta)> {
        match self {
            Backend::Local(a) => Ok((a.ledger().all()?, a.meta().clone())),
            Backend::Remote(p) => {
                let r = Self::call(p, CtlRequest::Records)?;
                let meta = r
                    .meta
                    .ok_or_else(|| anyhow!("server sent no CA metadata"))?;
                Ok((r.records, meta))
            }
        }
    }

    /// Issues a certificate.
    pub fn issue(&self, pass: Option<&Zeroizing<Vec<u8>>>, req: IssueRequest) -> Result<Issued> {
        match self {
            Backend::Local(a) => Ok(a.issue(&load_signer(a, pass)?, &req)?),
            Backend::Remote(p) => {
                // The server resolves paths in its own working directory: send absolute ones.
                let out_dir = match req.out_dir {
                    Some(d) => Some(std::path::absolute(&d)?),
                    None => None,
                };
                let r = Self::call(
                    p,
                    CtlRequest::Issue {
                        name: req.name,
                        role: req.role,
                        ttl_secs: req.ttl_secs,
                        out_dir,
                        sans: req.sans,
                        passphrase: pass.map(|p| p.to_vec()),
                    },
                )?;
                let record = r.records.into_iter().next();
                match (record, r.paths) {
                    (Some(record), Some((cert_path, key_path))) => Ok(Issued {
                        record,
                        cert_path,
                        key_path,
                    }),
                    _ => bail!("server answered the issue request without a certificate"),
                }
            }
        }
    }

    /// Revokes; with a server, the revocation is applied to it at once.
    pub fn revoke(
        &self,
        pass: Option<&Zeroizing<Vec<u8>>>,
        target: &str,
        reason: Reason,
    ) -> Result<Vec<CertRecord>> {
        match self {
            Backend::Local(a) => {
                let records = a.revoke(&load_signer(a, pass)?, target, reason)?;
                super::link::revoked_locally(a.home(), a, &records);
                Ok(records)
            }
            Backend::Remote(p) => Ok(Self::call(
                p,
                CtlRequest::Revoke {
                    target: target.to_string(),
                    reason,
                },
            )?
            .records),
        }
    }

    /// Makes intermediate `serial` (already in `intermediates/`) the signing CA: the running
    /// server does it and takes it at once; without one it is done here.
    pub fn activate_intermediate(
        &self,
        serial: &str,
        pass: Option<&Zeroizing<Vec<u8>>>,
    ) -> Result<()> {
        match self {
            Backend::Local(a) => {
                // Every key opens as it will be in force, before anything changes.
                let signer =
                    Signer::load_with_current(a.home(), serial, pass.map(|p| p.as_slice()))?;
                ca::rotate::activate(a.home(), serial)?;
                a.publish_crl(&signer)?;
                Ok(())
            }
            Backend::Remote(p) => {
                Self::call(
                    p,
                    CtlRequest::ActivateIntermediate {
                        serial: serial.to_string(),
                        passphrase: pass.map(|p| p.to_vec()),
                    },
                )?;
                Ok(())
            }
        }
    }

    /// A freshly signed CRL.
    pub fn publish_crl(&self, pass: Option<&Zeroizing<Vec<u8>>>) -> Result<String> {
        match self {
            Backend::Local(a) => Ok(a.publish_crl(&load_signer(a, pass)?)?),
            Backend::Remote(p) => Self::call(p, CtlRequest::Crl)?
                .crl
                .ok_or_else(|| anyhow!("server sent no CRL")),
        }
    }
}

/// Loads the CA key, asking for the passphrase when the key is encrypted.
pub fn load_signer(authority: &Authority, pass: Option<&Zeroizing<Vec<u8>>>) -> Result<Signer> {
    if authority.meta().key_encrypted && pass.is_none() {
        bail!(
            "the CA key in {} is encrypted: give its passphrase with --passphrase-file FILE (or MCP_ZT_CA_PASSPHRASE_FILE)",
            authority.home().display()
        );
    }
    Ok(Signer::load(authority.home(), pass.map(|p| p.as_slice()))?)
}

/// Finds records by name or serial.
pub fn find(records: Vec<CertRecord>, target: &str) -> Result<Vec<CertRecord>> {
    Ok(ca::find_in(records, target)?)
}
