//! Where everything lives inside HOME.

use std::path::{Path, PathBuf};

/// The CA home folder and the paths inside it.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// Wraps a HOME path (not checked here).
    pub fn new(dir: impl Into<PathBuf>) -> Home {
        Home { dir: dir.into() }
    }
    /// The folder itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// `ca.crt`: the root certificate (public).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    /// `ca.key`: the root key (0600, optionally encrypted).
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    /// `ledger/`: the sled database.
    pub fn ledger(&self) -> PathBuf {
        self.dir.join("ledger")
    }
    /// `policy.toml`: roles and tool permissions.
    pub fn policy(&self) -> PathBuf {
        self.dir.join("policy.toml")
    }
    /// `crl.pem`: the current signed CRL.
    pub fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }
    /// `clients/`: default output folder of `issue`.
    pub fn clients(&self) -> PathBuf {
        self.dir.join("clients")
    }
    /// `server/`: the server's own certificate and key.
    pub fn server(&self) -> PathBuf {
        self.dir.join("server")
    }
    /// `audit.log`: JSON lines of every auth decision.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }
    /// `ctl.sock`: the running server's control socket (0600).
    pub fn ctl_socket(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }
    /// A readable form for messages.
    pub fn display(&self) -> String {
        self.dir.display().to_string()
    }
}
