//! `mcp-zt oauth ...`: registering clients by hand, listing clients and grants, revoking
//! grants. The same operations run on the ledger directly, or inside `serve` over the control
//! socket (which also cuts the revoked grants' open streams).

use serde::{Deserialize, Serialize};

use super::crypto;
use super::redirect;
use crate::ledger::oauth::{ClientKind, Grant, OAuthClient};
use crate::ledger::Ledger;

/// An operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AdminOp {
    /// Pre-register a client (`client_id` = its name).
    AddClient {
        /// Name, also the `client_id`.
        name: String,
        /// Exact redirect URIs.
        redirect_uris: Vec<String>,
        /// Give it a secret (client_secret_basic / client_secret_post).
        confidential: bool,
    },
    /// Every client.
    Clients,
    /// Grants, optionally of one holder.
    Grants {
        /// Holder name.
        name: Option<String>,
    },
    /// Revoke grants: one by id, all of a client, or all of a holder.
    Revoke {
        /// Grant id.
        grant: Option<String>,
        /// Client id.
        client: Option<String>,
        /// Holder name.
        name: Option<String>,
    },
}

/// A client as listed (no secret material, not even its hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientRow {
    /// `client_id`.
    pub client_id: String,
    /// `client_name`.
    pub name: Option<String>,
    /// dcr, preregistered or cimd.
    pub kind: ClientKind,
    /// Whether it authenticates with a secret.
    pub confidential: bool,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Registered (Unix seconds).
    pub created_at: i64,
    /// Last token issued (Unix seconds).
    pub last_used: i64,
}

impl From<&OAuthClient> for ClientRow {
    fn from(c: &OAuthClient) -> Self {
        ClientRow {
            client_id: c.client_id.clone(),
            name: c.name.clone(),
            kind: c.kind,
            confidential: c.secret_sha256.is_some(),
            redirect_uris: c.redirect_uris.clone(),
            created_at: c.created_at,
            last_used: c.last_used,
        }
    }
}

/// The answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AdminAnswer {
    /// Clients (add: the new one; clients: all).
    pub clients: Vec<ClientRow>,
    /// Grants (grants: those asked for; revoke: those revoked now).
    pub grants: Vec<Grant>,
    /// add --confidential: the secret, shown once (the ledger keeps only its hash).
    pub secret: Option<String>,
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Bad arguments.
    #[error("{0}")]
    Invalid(String),
    /// The ledger.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
}

/// Runs `op` on `ledger` at `now`.
pub fn run(ledger: &Ledger, op: &AdminOp, now: i64) -> Result<AdminAnswer, AdminError> {
    let mut out = AdminAnswer::default();
    match op {
        AdminOp::AddClient {
            name,
            redirect_uris,
            confidential,
        } => {
            crate::pki::validate_name(name).map_err(|e| AdminError::Invalid(e.to_string()))?;
            if redirect_uris.is_empty() {
                return Err(AdminError::Invalid(
                    "give at least one --redirect-uri".into(),
                ));
            }
            for uri in redirect_uris {
                redirect::classify(uri)
                    .map_err(|e| AdminError::Invalid(format!("--redirect-uri {uri}: {e}")))?;
            }
            if ledger.oauth_client(name)?.is_some() {
                return Err(AdminError::Invalid(format!(
                    "a client {name:?} is already registered"
                )));
            }
            let secret = confidential.then(|| crypto::random_token("mzt_cs_"));
            let client = OAuthClient {
                client_id: name.clone(),
                name: Some(name.clone()),
                redirect_uris: redirect_uris.clone(),
                kind: ClientKind::Preregistered,
                secret_sha256: secret.as_deref().map(crypto::sha256_hex),
                created_at: now,
                last_used: now,
                registered_from: None,
            };
            ledger.put_oauth_client(&client)?;
            out.clients.push(ClientRow::from(&client));
            out.secret = secret;
        }
        AdminOp::Clients => {
            out.clients = ledger
                .oauth_clients()?
                .iter()
                .map(ClientRow::from)
                .collect();
        }
        AdminOp::Grants { name } => {
            out.grants = ledger
                .oauth_grants()?
                .into_iter()
                .filter(|g| name.as_ref().is_none_or(|n| &g.holder.name == n))
                .collect();
            out.grants.sort_by_key(|g| g.created_at);
        }
        AdminOp::Revoke {
            grant,
            client,
            name,
        } => {
            let picked = [grant.is_some(), client.is_some(), name.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if picked != 1 {
                return Err(AdminError::Invalid(
                    "say what to revoke: GRANT_ID, --client ID or --name HOLDER".into(),
                ));
            }
            let matching: Vec<Grant> = ledger
                .oauth_grants()?
                .into_iter()
                .filter(|g| {
                    grant.as_ref().is_some_and(|id| &g.id == id)
                        || client.as_ref().is_some_and(|c| &g.client_id == c)
                        || name.as_ref().is_some_and(|n| &g.holder.name == n)
                })
                .collect();
            if matching.is_empty() {
                return Err(AdminError::Invalid("no grant matches".into()));
            }
            for g in matching {
                if let Some(done) =
                    ledger.revoke_oauth_grant(&g.id, now, "revoked by the operator")?
                {
                    out.grants.push(done);
                }
            }
        }
    }
    Ok(out)
}
