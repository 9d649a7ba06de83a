//! Registration (RFC 7591) and revocation (RFC 7009) at the authorization server.

use serde::Deserialize;

use super::crypto;
use super::flow::{AuthServer, OAuthFail, MAX_DCR_CLIENTS};
use super::redirect;
use crate::ledger::oauth::{ClientKind, Grant, OAuthClient};
use crate::ledger::{Ledger, LedgerError};

impl AuthServer {
    /// RFC 7009: revokes the grant of an access or refresh token of `client`. Unknown tokens
    /// are not an error (the answer is the same, so it says nothing about which tokens exist).
    pub fn revoke_token(
        &self,
        ledger: &Ledger,
        client: &OAuthClient,
        token: &str,
        now: i64,
    ) -> Result<Option<Grant>, LedgerError> {
        let hash = crypto::sha256_hex(token);
        let rec = match ledger.oauth_refresh(&hash)? {
            Some(r) => Some(r),
            None => ledger.oauth_access(&hash)?,
        };
        let Some(rec) = rec else { return Ok(None) };
        match ledger.oauth_grant(&rec.grant)? {
            Some(g) if g.client_id == client.client_id => {
                ledger.revoke_oauth_grant(&g.id, now, "revoked by the client (RFC 7009)")
            }
            _ => Ok(None),
        }
    }

    /// RFC 7591 registration of a public client. Redirect URIs that are not allowed are left
    /// out, not fatal; returns the client and what was left out (with why).
    pub fn register(
        &self,
        ledger: &Ledger,
        body: &[u8],
        from: &str,
        now: i64,
    ) -> Result<(OAuthClient, Vec<String>), OAuthFail> {
        #[derive(Deserialize)]
        struct Req {
            redirect_uris: Option<Vec<String>>,
            client_name: Option<String>,
        }
        let meta = |why: String| OAuthFail::new(400, "invalid_client_metadata", why);
        let req: Req =
            serde_json::from_slice(body).map_err(|e| meta(format!("not client metadata: {e}")))?;
        let uris = req.redirect_uris.unwrap_or_default();
        if uris.len() > 16 {
            return Err(OAuthFail::new(
                400,
                "invalid_redirect_uri",
                "at most 16 redirect URIs",
            ));
        }
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for uri in uris {
            if uri.len() > 2048 {
                dropped.push("(a redirect URI over 2048 bytes)".to_string());
                continue;
            }
            match redirect::classify(&uri) {
                Ok(_) => kept.push(uri),
                Err(e) => dropped.push(format!("{uri}: {e}")),
            }
        }
        if kept.is_empty() {
            return Err(OAuthFail::new(
                400,
                "invalid_redirect_uri",
                if dropped.is_empty() {
                    "redirect_uris is required".to_string()
                } else {
                    format!("no allowed redirect URI: {}", dropped.join("; "))
                },
            ));
        }
        if ledger.oauth_client_count()? >= MAX_DCR_CLIENTS {
            return Err(OAuthFail::new(
                503,
                "temporarily_unavailable",
                "too many registered clients",
            ));
        }
        let name = req.client_name.map(|n| n.chars().take(100).collect());
        let client = OAuthClient {
            client_id: format!("mzt_dcr_{}", crypto::random_id()),
            name,
            redirect_uris: kept,
            kind: ClientKind::Dcr,
            secret_sha256: None,
            created_at: now,
            last_used: now,
            registered_from: Some(from.to_string()),
        };
        ledger.put_oauth_client(&client)?;
        Ok((client, dropped))
    }
}
