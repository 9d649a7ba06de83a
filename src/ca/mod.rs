//! The certificate authority: HOME's layout, `ca init`, and the operations that sign
//! (issue, revoke + CRL). It joins the pure pieces (pki, policy) with storage (ledger, files).

mod authority;
pub mod doctor;
mod home;
mod init;
mod intermediate;
pub mod rollover;
pub mod rotate;
mod signer;

pub use authority::{
    crl_is_fresh, find_in, load_policy, read_passphrase, Authority, IssueRequest, Issued, Renewal,
    RenewalPolicy, RevokeOutcome,
};
pub use home::Home;
pub use init::{init, InitLayout, InitOptions, RootKey};
pub use signer::{IssuingCa, Signer};

use crate::fsutil::FsError;
use crate::ledger::LedgerError;
use crate::pki::PkiError;
use crate::policy::PolicyError;

/// Default lifetime of the CA (or root) certificate: 10 years.
pub const CA_LIFETIME_DAYS: i64 = 3650;
/// Lifetime of an intermediate, capped by the root's: 2 years, so that `ca rotate` is a
/// routine step rather than a once-a-decade ceremony nobody remembers.
pub const INTERMEDIATE_LIFETIME_DAYS: i64 = 730;
/// Lifetime of each CRL; `serve` and every revocation republish well before it ends.
pub const CRL_LIFETIME_DAYS: i64 = 7;
/// How long a renewed certificate stays valid if its successor is never used.
pub const RENEWAL_GRACE_SECS: i64 = 3600;

/// What went wrong in a CA operation.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// HOME has no CA.
    #[error("no CA in {0}: run `mcp-zt ca init --home {0}` first")]
    NotInitialized(String),
    /// `ca init` on a HOME that has one.
    #[error(
        "a CA already exists in {0}; nothing was changed (use another --home to create a new CA)"
    )]
    AlreadyInitialized(String),
    /// A role the policy does not define.
    #[error("unknown role {role:?}: the policy defines {valid}")]
    UnknownRole {
        /// The role asked for.
        role: String,
        /// The valid roles, comma separated.
        valid: String,
    },
    /// A requested lifetime that outlives the CA.
    #[error("TTL too long: the certificate would end {wanted}, after the CA itself ({ca_end}); use a shorter --ttl")]
    TtlBeyondCa {
        /// When the certificate would end.
        wanted: String,
        /// When the CA ends.
        ca_end: String,
    },
    /// No certificate matches a name or serial.
    #[error("no certificate matches {0:?} (give a name or a serial from `mcp-zt list`)")]
    NotFound(String),
    /// A name kept for the server's own certificate.
    #[error("the name {0:?} is reserved for the server's own certificate; choose another name")]
    ReservedName(String),
    /// A renewal that is not allowed.
    #[error("renewal refused: {0}")]
    NotRenewable(String),
    /// A holder renewing again too soon.
    #[error(
        "renewal refused: {name} was renewed less than {interval} s ago; retry in {retry_after} s"
    )]
    RenewalRateLimited {
        /// The holder.
        name: String,
        /// The configured interval.
        interval: i64,
        /// Seconds until a renewal is allowed.
        retry_after: i64,
    },
    /// Every matching certificate is already revoked.
    #[error("{0} is already revoked")]
    AlreadyRevoked(String),
    /// Files.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// Certificates and keys.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// Ledger.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A policy file that does not load. The message names the file, then what is wrong; the
    /// policy error is part of the message and not also the error's source, so `{:#}` says it
    /// once.
    #[error("{path}: {error}")]
    Policy {
        /// The policy file.
        path: String,
        /// What is wrong (with its line where known).
        error: PolicyError,
    },
}
