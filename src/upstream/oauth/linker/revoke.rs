//! Ending a link: revoked at the upstream (RFC 7009) where it can be, deleted, audited.

use super::*;

impl Linker {
    /// Removes a holder's link to `upstream`: its tokens are revoked at the upstream (RFC 7009)
    /// when it has an endpoint for it, then deleted; each step audited. Whether there was one.
    pub async fn unlink(&self, upstream: &str, holder: &str, why: &str) -> Result<bool, LinkError> {
        let Some(link) = self.ledger.upstream_link(upstream, holder)? else {
            return Ok(false);
        };
        // Deleted first: from here on no request uses it, whatever the upstream answers.
        self.ledger.remove_upstream_link(upstream, holder)?;
        self.forget(upstream, holder);
        self.revoke_at_upstream(&link, why).await;
        Ok(true)
    }

    async fn revoke_at_upstream(&self, link: &UpstreamLink, why: &str) {
        let upstream = &link.upstream;
        let holder = &link.holder;
        let line = |what: &str| {
            self.audit.log(
                ev("upstream_token_revoked", holder, upstream).reason(format!("{why}; {what}")),
            )
        };
        let Some(endpoint) = &link.revocation_endpoint else {
            line("deleted (the upstream has no revocation endpoint)");
            return;
        };
        let Ok(cfg) = self.upstream(upstream) else {
            line("deleted (the upstream is no longer configured for OAuth: not revoked there)");
            return;
        };
        let Some(key) = self.existing_key() else {
            line("deleted (no usable secrets.key: not revoked there)");
            return;
        };
        let Ok(http) = self.http_for(&cfg) else {
            line("deleted (no HTTP client for the upstream: not revoked there)");
            return;
        };
        let b = |p| Self::binding(p, upstream, holder, &link.chain);
        let secret = link
            .client_secret
            .as_ref()
            .and_then(|s| key.open_text(&b("client-secret"), s).ok());
        let auth = ClientAuth {
            client_id: &link.client_id,
            secret: secret.as_deref().map(String::as_str),
            method: &link.auth_method,
        };
        let mut tokens = Vec::new();
        if let Some(r) = &link.refresh {
            tokens.push(("refresh_token", r));
        }
        tokens.push(("access_token", &link.access));
        for (hint, sealed) in tokens {
            let Ok(token) = key.open_text(
                &b(if hint == "refresh_token" {
                    "refresh"
                } else {
                    "access"
                }),
                sealed,
            ) else {
                line(&format!(
                    "{hint} deleted (it did not open: not revoked there)"
                ));
                continue;
            };
            match http.revoke(endpoint, &token, hint, &auth).await {
                Ok(s) if (200..300).contains(&s) => {
                    line(&format!("{hint} revoked at the upstream and deleted"))
                }
                Ok(s) => line(&format!(
                    "{hint} deleted; the upstream answered {s} to its revocation"
                )),
                Err(e) => line(&format!(
                    "{hint} deleted; revocation at the upstream failed: {e}"
                )),
            }
        }
    }

    /// A certificate of `holder` was revoked: every upstream link of the holder is revoked at
    /// its upstream and deleted, and every static secret of theirs is deleted. A holder's
    /// tokens are shared by all their certificates, so any one compromised ends them all.
    pub async fn holder_revoked(&self, holder: &str, serial: &str) {
        let why = format!("certificate {serial} revoked");
        match self.ledger.upstream_links() {
            Ok(links) => {
                for l in links.iter().filter(|l| l.holder == holder) {
                    if let Err(e) = self.unlink(&l.upstream, holder, &why).await {
                        self.audit.log(
                            ev("upstream_token_revoked", holder, &l.upstream)
                                .reason(format!("{why}; deleting failed: {e}")),
                        );
                    }
                }
            }
            Err(e) => self.audit.log(
                Event::new("upstream_token_revoked")
                    .holder_name(holder)
                    .reason(format!("{why}; the ledger failed: {e}")),
            ),
        }
        if let Err(e) = crate::upstream::oauth::secret::delete_all(self, holder, None, &why) {
            self.audit.log(
                Event::new("secret_deleted")
                    .holder_name(holder)
                    .reason(format!("{why}; the ledger failed: {e}")),
            );
        }
    }
}
