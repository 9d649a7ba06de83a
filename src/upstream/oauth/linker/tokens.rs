//! Using a link: the holder's token, opened from the ledger (cached a few seconds) and
//! refreshed ahead of expiry, one refresh at a time per link across the fleet.

use super::*;

impl Linker {
    fn lock_for(&self, k: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > 4096 {
            m.retain(|_, l| Arc::strong_count(l) > 1);
        }
        m.entry(k.to_string()).or_default().clone()
    }

    /// The holder's token for `upstream`, refreshed first when it is near expiry; `Err` says
    /// the holder must link (again).
    pub async fn access(&self, who: &Identity, upstream: &str) -> Result<Access, NeedLink> {
        let chain = self.chain_of(who);
        let k = format!("{}|{chain}", key_of(upstream, &who.name));
        let t = now();
        let fresh = |l: &UpstreamLink| {
            l.expires_at == 0 || l.expires_at - t > refresh_margin(l.expires_at - l.refreshed_at)
        };
        if let Some((link, token, at)) =
            self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&k)
        {
            if at.elapsed() < CACHE_FOR && fresh(link) {
                return Ok(Access {
                    token: token.clone(),
                    link: link.clone(),
                });
            }
        }
        let need = |reason: &str| NeedLink {
            reason: reason.to_string(),
            scopes: Vec::new(),
        };
        let lock = self.lock_for(&k);
        let _held = lock.lock().await;
        let link = match self.ledger.upstream_link(upstream, &who.name) {
            Ok(Some(l)) if l.chain == chain => l,
            Ok(_) => return Err(need("not linked")),
            Err(e) => return Err(need(&format!("the ledger failed: {e}"))),
        };
        let link = if fresh(&link) {
            link
        } else {
            self.refresh(who, link).await?
        };
        let key = self.key().map_err(|e| need(&e.to_string()))?;
        let token = key
            .open_text(
                &Self::binding("access", upstream, &who.name, &chain),
                &link.access,
            )
            .map_err(|e| need(&e.to_string()))?;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(k, (link.clone(), token.clone(), Instant::now()));
        Ok(Access { token, link })
    }

    /// Refreshes a link (rotation respected); another replica's concurrent refresh wins and
    /// is used. A refusal (`invalid_grant`) removes the link: the holder links again.
    async fn refresh(&self, who: &Identity, link: UpstreamLink) -> Result<UpstreamLink, NeedLink> {
        let upstream = link.upstream.clone();
        let still_valid = link.expires_at > now();
        let need = |reason: String| NeedLink {
            reason,
            scopes: Vec::new(),
        };
        let Some(sealed_refresh) = link.refresh.clone() else {
            return if still_valid {
                Ok(link)
            } else {
                Err(need(
                    "the upstream token expired and no refresh token was given".into(),
                ))
            };
        };
        let Ok(cfg) = self.upstream(&upstream) else {
            return Err(need(format!(
                "upstream {upstream} no longer uses per-holder OAuth"
            )));
        };
        let key = self.key().map_err(|e| need(e.to_string()))?;
        let http = self.http_for(&cfg).map_err(|e| need(e.to_string()))?;
        let chain = link.chain.clone();
        let b = |p| Self::binding(p, &upstream, &link.holder, &chain);
        let refresh = key
            .open_text(&b("refresh"), &sealed_refresh)
            .map_err(|e| need(e.to_string()))?;
        let secret = match &link.client_secret {
            Some(s) => Some(
                key.open_text(&b("client-secret"), s)
                    .map_err(|e| need(e.to_string()))?,
            ),
            None => None,
        };
        let auth = ClientAuth {
            client_id: &link.client_id,
            secret: secret.as_deref().map(String::as_str),
            method: &link.auth_method,
        };
        let resource = match &cfg.transport {
            Transport::Http { url, .. } => url.clone(),
            Transport::Stdio { .. } => String::new(),
        };
        let answer = http
            .token(
                &link.token_endpoint,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &refresh),
                    ("resource", &resource),
                ],
                &auth,
            )
            .await;
        let tokens = match answer {
            Ok(t) => t,
            Err(e) => {
                // Another replica may have rotated it a moment ago: use its result.
                if let Ok(Some(now_link)) = self.ledger.upstream_link(&upstream, &link.holder) {
                    if now_link != link && now_link.expires_at > now() {
                        return Ok(now_link);
                    }
                }
                if matches!(&e, TokenError::Refused { error, .. } if error == "invalid_grant") {
                    let _ = self.ledger.remove_upstream_link(&upstream, &link.holder);
                    self.forget(&upstream, &link.holder);
                    self.audit.log(
                        ev("upstream_link_refused", &link.holder, &upstream)
                            .who(who)
                            .reason(format!(
                                "refresh refused ({e}): the link was removed; link again"
                            )),
                    );
                    return Err(need(format!(
                        "the upstream refused to refresh the token ({e})"
                    )));
                }
                if still_valid {
                    return Ok(link);
                }
                return Err(need(format!("the token could not be refreshed: {e}")));
            }
        };
        let t = now();
        let mut next = link.clone();
        next.access = key
            .seal(&b("access"), tokens.access.as_bytes())
            .map_err(|e| need(e.to_string()))?;
        if let Some(r) = &tokens.refresh {
            next.refresh = Some(
                key.seal(&b("refresh"), r.as_bytes())
                    .map_err(|e| need(e.to_string()))?,
            );
        }
        next.expires_at = tokens.expires_in.map_or(0, |n| t.saturating_add(n));
        next.refreshed_at = t;
        if let Some(s) = &tokens.scope {
            next.scopes = split_scopes(s);
        }
        match self.ledger.swap_upstream_link(&link, &next) {
            Ok(true) => {
                self.audit.log(
                    ev("upstream_token_refreshed", &link.holder, &upstream)
                        .who(who)
                        .reason(format!(
                            "expires {}{}",
                            crate::pki::rfc3339(next.expires_at),
                            if tokens.refresh.is_some() {
                                "; refresh token rotated"
                            } else {
                                ""
                            }
                        )),
                );
                Ok(next)
            }
            // Changed meanwhile (unlinked, or refreshed elsewhere): the ledger decides.
            Ok(false) => match self.ledger.upstream_link(&upstream, &link.holder) {
                Ok(Some(l)) => Ok(l),
                _ => Err(need("the link was removed".into())),
            },
            Err(e) => Err(need(format!("the ledger failed: {e}"))),
        }
    }
}
