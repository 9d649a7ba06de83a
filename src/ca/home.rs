//! Where everything lives inside HOME.

use std::path::{Path, PathBuf};

use crate::ledger::LedgerSpec;

/// The CA home folder and the paths inside it, and where its ledger lives (`HOME/ledger`
/// unless a shared PostgreSQL ledger was chosen).
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
    ledger: Option<LedgerSpec>,
}

impl Home {
    /// Wraps a HOME path (not checked here), with the embedded sled ledger.
    pub fn new(dir: impl Into<PathBuf>) -> Home {
        Home {
            dir: dir.into(),
            ledger: None,
        }
    }
    /// The same HOME with its ledger in PostgreSQL (`--ledger`), or sled when `None`.
    pub fn with_ledger(mut self, spec: Option<LedgerSpec>) -> Home {
        self.ledger = spec;
        self
    }
    /// The shared ledger chosen with `--ledger`, if any.
    pub fn ledger_spec(&self) -> Option<&LedgerSpec> {
        self.ledger.as_ref()
    }
    /// The folder itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// `ca.crt`: the trust anchor clients use (public): the root of a hierarchy, the CA of a
    /// single-CA home, the organization's root of an imported one.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    /// `ca.key`: the signing key of a single-CA home (0600, optionally encrypted).
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    /// `root.key`: the root key of a hierarchy kept online (absent with `--offline-root`).
    pub fn root_key(&self) -> PathBuf {
        self.dir.join("root.key")
    }
    /// `intermediate.crt`: the current intermediate (and, for an imported one, the rest of
    /// its chain below the root). Replacing this one file is what makes a rotation take effect.
    pub fn intermediate_cert(&self) -> PathBuf {
        self.dir.join("intermediate.crt")
    }
    /// `intermediates/`: every intermediate this home made, as `SERIAL.crt`, `SERIAL.key`
    /// (0600) and `SERIAL.crl` (its CRL).
    pub fn intermediates(&self) -> PathBuf {
        self.dir.join("intermediates")
    }
    /// The certificate of intermediate `serial`.
    pub fn intermediate_cert_of(&self, serial: &str) -> PathBuf {
        self.intermediates().join(format!("{serial}.crt"))
    }
    /// The key of intermediate `serial`.
    pub fn intermediate_key_of(&self, serial: &str) -> PathBuf {
        self.intermediates().join(format!("{serial}.key"))
    }
    /// The CRL of intermediate `serial`.
    pub fn intermediate_crl_of(&self, serial: &str) -> PathBuf {
        self.intermediates().join(format!("{serial}.crl"))
    }
    /// Whether HOME holds a hierarchy (root + intermediates) rather than a single CA.
    pub fn has_intermediate(&self) -> bool {
        self.intermediate_cert().is_file()
    }
    /// `data/`: the demo tools' store when the ledger is PostgreSQL (with sled it shares the
    /// ledger's database).
    pub fn data_store(&self) -> PathBuf {
        self.dir.join("data")
    }
    /// `ledger/`: the sled database.
    pub fn ledger(&self) -> PathBuf {
        self.dir.join("ledger")
    }
    /// `policy.toml`: roles and tool permissions.
    pub fn policy(&self) -> PathBuf {
        self.dir.join("policy.toml")
    }
    /// `crl.pem`: the CRL of the CA that signs now (the current intermediate's, or the
    /// single CA's).
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
