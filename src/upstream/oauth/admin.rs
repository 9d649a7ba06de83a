//! Operator commands on per-holder credentials (`links`, `unlink`, `secret`, `secrets
//! rotate-key`): run by the server for the control socket, or on the ledger when no server
//! runs. Answers never hold a secret.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::linker::{LinkError, LinkRow, Linker};
use super::secret::{self, SecretRow};
use crate::audit::Event;
use crate::ledger::uplink::SecretKind;
use crate::secrets::SealKey;

/// What to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum UplinkOp {
    /// List links.
    Links {
        /// Only this holder's.
        name: Option<String>,
    },
    /// Remove one holder's link (revoked at the upstream) and their secrets for it.
    Unlink {
        /// The upstream.
        upstream: String,
        /// The holder.
        name: String,
    },
    /// Set a static secret for a holder.
    SecretSet {
        /// The upstream.
        upstream: String,
        /// The holder.
        name: String,
        /// Header or environment variable.
        kind: SecretKind,
        /// Its name.
        var: String,
        /// The value.
        value: String,
    },
    /// List static secrets (never values).
    Secrets {
        /// Only this holder's.
        name: Option<String>,
    },
    /// Delete a holder's static secrets for an upstream.
    SecretDelete {
        /// The upstream.
        upstream: String,
        /// The holder.
        name: String,
    },
    /// Re-seal everything under a new `secrets.key`.
    RotateKey,
}

/// The answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UplinkAnswer {
    /// Links listed.
    pub links: Vec<LinkRow>,
    /// Secrets listed.
    pub secrets: Vec<SecretRow>,
    /// How many records were changed.
    pub count: usize,
    /// The new key's id (`rotate-key`).
    pub key_id: Option<String>,
}

/// Runs `op`.
pub async fn run(linker: &Arc<Linker>, op: UplinkOp) -> Result<UplinkAnswer, LinkError> {
    let mut out = UplinkAnswer::default();
    match op {
        UplinkOp::Links { name } => out.links = linker.links(name.as_deref())?,
        UplinkOp::Unlink { upstream, name } => {
            let linked = linker
                .unlink(&upstream, &name, "unlinked by an operator")
                .await?;
            let secrets =
                secret::delete_all(linker, &name, Some(&upstream), "unlinked by an operator")?;
            out.count = usize::from(linked) + secrets;
        }
        UplinkOp::SecretSet {
            upstream,
            name,
            kind,
            var,
            value,
        } => {
            crate::pki::validate_name(&name).map_err(|e| LinkError::Refused(e.to_string()))?;
            let chain = secret::chain_for_name(linker, &name);
            secret::set(
                linker,
                &name,
                &chain,
                &upstream,
                kind,
                &var,
                value.as_bytes(),
                "an operator",
            )?;
            out.count = 1;
        }
        UplinkOp::Secrets { name } => out.secrets = secret::list(linker, name.as_deref())?,
        UplinkOp::SecretDelete { upstream, name } => {
            out.count =
                secret::delete_all(linker, &name, Some(&upstream), "deleted by an operator")?;
        }
        UplinkOp::RotateKey => {
            use crate::secrets::{key_path, load, next_key_path, write_next_key, SecretsError};
            let home = linker.home().to_path_buf();
            let unusable = || LinkError::Secrets(SecretsError::Malformed(next_key_path(&home)));
            // Opens what is stored now: the key, and an interrupted rotation's next key.
            let old = linker.key()?;
            // An interrupted rotation is resumed with its own next key (values may be sealed
            // under it already); else a new key, durable before anything is sealed with it.
            if load(&next_key_path(&home))?.is_none() {
                let (_, raw) = SealKey::generate()?;
                write_next_key(&home, &raw)?;
            }
            let new = load(&next_key_path(&home))?.ok_or_else(unusable)?;
            // From here the server seals with the new key and still opens the old one, so
            // nothing written during the re-sealing is lost.
            let live = load(&next_key_path(&home))?.ok_or_else(unusable)?;
            let live = match load(&key_path(&home))? {
                Some(current) => live.also_opening(current),
                None => live,
            };
            linker.set_key(live);
            out.count = super::rotate::reseal_all(linker.ledger(), &old, &new)
                .map_err(|e| LinkError::Refused(format!("re-sealing stopped, nothing lost (both keys open values until a rotation ends): {e}")))?;
            crate::secrets::promote_next_key(&home)?;
            out.key_id = Some(new.id().to_string());
            linker.set_key(new);
            linker
                .audit()
                .log(Event::new("secrets_key_rotated").reason(format!(
                    "{} record(s) re-sealed under key {}; copy secrets.key to every replica",
                    out.count,
                    out.key_id.as_deref().unwrap_or("")
                )));
        }
    }
    Ok(out)
}
