//! Command-line interface: clap definitions and thin handlers. Data goes to stdout, messages to
//! stderr; every listing command has `--json`.

mod commands;
mod output;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::pki::build::{KeyAlgorithm, Reason};

pub use commands::run;

/// mcp-zt: an MCP server where identity comes from client certificates.
#[derive(Debug, Parser)]
#[command(name = "mcp-zt", version, about, long_about = None)]
pub struct Cli {
    /// The CA home folder.
    #[arg(long, global = true, env = "MCP_ZT_HOME", default_value = "./pki")]
    pub home: PathBuf,

    /// File whose first line is the passphrase of ca.key (with `ca init`: encrypt ca.key with it).
    #[arg(long, global = true, env = "MCP_ZT_CA_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Issue a client certificate carrying a role.
    Issue(IssueArgs),
    /// List every certificate in the ledger.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one certificate in detail.
    Show {
        /// A holder name or a serial (hex).
        target: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a certificate (by serial) or every active certificate of a name.
    Revoke {
        /// A holder name or a serial (hex).
        target: String,
        /// Why (RFC 5280 reason code).
        #[arg(long, value_enum, default_value = "unspecified")]
        reason: Reason,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the current signed CRL (PEM); re-signs it if it is more than half-way to nextUpdate.
    Crl {
        /// Also write it to FILE (atomically).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List the policy's roles and what each inherits.
    Roles {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `mcp-zt ca ...`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a new CA in HOME (refuses if one exists).
    Init {
        /// The CA certificate's common name.
        #[arg(long, default_value = "mcp-zt Root CA")]
        name: String,
        /// SPIFFE trust domain of issued identities.
        #[arg(long, default_value = "mcp-zt.local")]
        trust_domain: String,
        /// OID of the role extension (default: a 2.25 arc, see README).
        #[arg(long)]
        role_oid: Option<String>,
        /// The CA key's algorithm.
        #[arg(long, value_enum, default_value = "ecdsa-p256")]
        key_type: KeyAlgorithm,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `mcp-zt issue ...`
#[derive(Debug, clap::Args)]
pub struct IssueArgs {
    /// The role to put into the certificate (one of `mcp-zt roles`).
    #[arg(long)]
    pub role: String,
    /// Holder name: subject CN, SPIFFE path and file name.
    #[arg(long)]
    pub name: String,
    /// Lifetime, e.g. 30d, 12h, 90m.
    #[arg(long, default_value = "30d")]
    pub ttl: String,
    /// Folder for NAME.crt and NAME.key (default HOME/clients).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Extra subject alternative names (DNS names or IP addresses).
    #[arg(long)]
    pub san: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
