//! Making a link: discovery, registration, the authorization request, mcp-zt's link page for
//! browsers, and the callback bound to the holder who started it.

use super::*;

impl Linker {
    /// Starts a link for `who`: discovery, registration, and the authorization request with
    /// PKCE and `resource`. `extra_scopes` is a step-up's.
    pub async fn start(
        &self,
        who: &Identity,
        upstream: &str,
        redirect: Redirect,
        extra_scopes: &[String],
    ) -> Result<Started, LinkError> {
        if who.oauth.is_some() {
            // A token-borne request: the link must be bound to the certificate itself.
            return Err(self.refused(
                who,
                upstream,
                "linking needs the holder's certificate, not an OAuth token".into(),
            ));
        }
        let cfg = self.upstream(upstream)?;
        let Some(settings) = cfg.oauth() else {
            return Err(LinkError::NotOAuth(upstream.into()));
        };
        {
            let mut starts = self.starts.lock().unwrap_or_else(|e| e.into_inner());
            if starts.0.elapsed() > Duration::from_secs(60) {
                *starts = (Instant::now(), HashMap::new());
            }
            let n = starts.1.entry(who.serial.clone()).or_insert(0);
            *n += 1;
            if *n > STARTS_PER_MINUTE {
                return Err(self.refused(
                    who,
                    upstream,
                    format!(
                        "more than {STARTS_PER_MINUTE} links started in a minute: wait a minute"
                    ),
                ));
            }
        }
        let http = self.http_for(&cfg)?;
        let found = http
            .discover()
            .await
            .map_err(|e| self.refused(who, upstream, format!("discovery: {e}")))?;
        let redirect_uri = match redirect {
            Redirect::Loopback(port) => format!("http://127.0.0.1:{port}/callback"),
            Redirect::Browser => match &self.browser_base {
                Some(b) => format!("{b}{CALLBACK_PATH}"),
                None => {
                    return Err(self.refused(
                        who,
                        upstream,
                        "the server has no name for browser callbacks: use `mcp-zt link`".into(),
                    ))
                }
            },
        };
        let issuer = found.server.issuer.clone();
        let (client_id, client_secret, method) = if let Some(id) = &settings.client_id {
            let secret = match &settings.client_secret {
                Some(s) => Some(Zeroizing::new(
                    s.resolve()
                        .map_err(|e| self.refused(who, upstream, e.to_string()))?,
                )),
                None => None,
            };
            let methods = &found.server.token_endpoint_auth_methods_supported;
            let method = match &secret {
                None => "none",
                Some(_)
                    if methods.iter().any(|m| m == "client_secret_basic") || methods.is_empty() =>
                {
                    "client_secret_basic"
                }
                Some(_) => "client_secret_post",
            };
            (id.clone(), secret, method.to_string())
        } else if let (Some(doc), true) = (
            self.document_url(),
            found.server.client_id_metadata_document_supported,
        ) {
            (doc, None, "none".to_string())
        } else {
            self.registration(who, &cfg, &http, &issuer, &found, &redirect_uri)
                .await?
        };
        let mut scopes = if settings.scopes.is_empty() {
            found.challenge_scopes.clone()
        } else {
            settings.scopes.clone()
        };
        scopes = union(&scopes, extra_scopes);
        let state = random_token("st_");
        let verifier = random_token("");
        let chain = self.chain_of(who);
        let key = self.key()?;
        let mut url = url::Url::parse(&found.server.authorization_endpoint)
            .map_err(|e| self.refused(who, upstream, format!("authorization endpoint: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &client_id)
                .append_pair("redirect_uri", &redirect_uri)
                .append_pair("state", &state)
                .append_pair("code_challenge", &sha256_b64(verifier.as_bytes()))
                .append_pair("code_challenge_method", "S256")
                .append_pair("resource", &found.resource);
            if !scopes.is_empty() {
                q.append_pair("scope", &scopes.join(" "));
            }
        }
        let expires_at = now() + LINK_TTL;
        let b = |p| Self::binding(p, upstream, &who.name, &chain);
        let pending = PendingLink {
            upstream: upstream.to_string(),
            holder: who.name.clone(),
            chain: chain.clone(),
            serial: who.serial.clone(),
            verifier: key.seal(&b("verifier"), verifier.as_bytes())?,
            redirect_uri,
            scopes: scopes.clone(),
            issuer: issuer.clone(),
            token_endpoint: found.server.token_endpoint.clone(),
            revocation_endpoint: found.server.revocation_endpoint.clone(),
            client_id,
            client_secret: match &client_secret {
                Some(s) => Some(key.seal(&b("client-secret"), s.as_bytes())?),
                None => None,
            },
            auth_method: method,
            authorize_url: url.to_string(),
            expires_at,
            via_browser: redirect == Redirect::Browser,
            browser: None,
        };
        self.ledger
            .put_pending_link(&sha256_hex(&state), &pending)?;
        self.audit.log(
            ev("upstream_link_started", &who.name, upstream)
                .who(who)
                .reason(format!(
                    "issuer {issuer}; scopes {}",
                    if scopes.is_empty() {
                        "-".into()
                    } else {
                        scopes.join(" ")
                    }
                )),
        );
        // A browser goes through mcp-zt's own page first: it checks the certificate and gives
        // the browser the cookie the callback needs, so a callback URL made with someone else's
        // upstream account and sent to this holder finishes nothing.
        let url = match (redirect, &self.browser_base) {
            (Redirect::Browser, Some(b)) => format!("{b}{GO_PATH}{state}"),
            _ => url.to_string(),
        };
        Ok(Started {
            url,
            state,
            expires_at,
        })
    }

    /// The link page (`GET /link/go/STATE`), opened with the holder's certificate: where the
    /// browser goes on, and the cookie it must bring back to the callback.
    pub fn go(&self, who: &Identity, state: &str) -> Result<(String, String), LinkError> {
        let hash = sha256_hex(state);
        let refuse = |upstream: &str, why: &str| self.refused(who, upstream, why.to_string());
        let Some(mut p) = self.ledger.pending_link(&hash)? else {
            return Err(refuse("-", "unknown, used or expired link"));
        };
        if p.holder != who.name || p.chain != self.chain_of(who) || who.oauth.is_some() {
            return Err(refuse(
                &p.upstream,
                "this link was started for another holder",
            ));
        }
        if !p.via_browser || p.expires_at < now() {
            return Err(refuse(
                &p.upstream,
                "this link expired or is not for a browser: start it again",
            ));
        }
        let nonce = random_token("lc_");
        p.browser = Some(sha256_hex(&nonce));
        self.ledger.put_pending_link(&hash, &p)?;
        Ok((p.authorize_url, nonce))
    }

    /// mcp-zt's registration with the authorization server for `redirect_uri`: from the
    /// ledger, else made now (DCR).
    async fn registration(
        &self,
        who: &Identity,
        cfg: &Upstream,
        http: &OAuthHttp,
        issuer: &str,
        found: &crate::upstream::oauth::http::Discovered,
        redirect_uri: &str,
    ) -> Result<(String, Option<Zeroizing<String>>, String), LinkError> {
        let b = |p| Self::binding(p, &cfg.name, "", issuer);
        let key = self.key()?;
        if let Some(r) = self
            .ledger
            .upstream_registration(&cfg.name, issuer, redirect_uri)?
        {
            let secret = match &r.client_secret {
                Some(s) => Some(key.open_text(&b("client-secret"), s)?),
                None => None,
            };
            return Ok((r.client_id, secret, r.auth_method));
        }
        let Some(endpoint) = &found.server.registration_endpoint else {
            return Err(self.refused(
                who,
                &cfg.name,
                "the authorization server offers neither client metadata documents (with --public-url) nor dynamic registration: register mcp-zt there and set oauth_client_id".into(),
            ));
        };
        let reg = http
            .register(endpoint, redirect_uri)
            .await
            .map_err(|e| self.refused(who, &cfg.name, e))?;
        let record = UpstreamRegistration {
            upstream: cfg.name.clone(),
            issuer: issuer.to_string(),
            redirect_uri: redirect_uri.to_string(),
            client_id: reg.client_id.clone(),
            client_secret: match &reg.client_secret {
                Some(s) => Some(key.seal(&b("client-secret"), s.as_bytes())?),
                None => None,
            },
            auth_method: reg.method.clone(),
            registered_at: now(),
        };
        self.ledger.put_upstream_registration(&record)?;
        self.audit.log(
            Event::new("upstream_client_registered")
                .item(format!("upstream:{}", cfg.name))
                .reason(format!("client_id {} at {issuer}", reg.client_id)),
        );
        Ok((reg.client_id, reg.client_secret, reg.method))
    }

    /// Finishes a link: the callback's `state` must be one this holder started (a link
    /// opened with another holder's certificate is refused and stays usable by its own
    /// holder), used once, in time; the code is exchanged with the PKCE verifier.
    pub async fn finish(
        &self,
        who: &Identity,
        state: &str,
        code: &str,
        browser_cookie: Option<&str>,
    ) -> Result<LinkRow, LinkError> {
        let hash = sha256_hex(state);
        let refuse = |upstream: &str, why: &str| self.refused(who, upstream, why.to_string());
        let Some(peek) = self.ledger.pending_link(&hash)? else {
            return Err(refuse("-", "unknown, used or expired link state"));
        };
        let chain = self.chain_of(who);
        if peek.holder != who.name || peek.chain != chain || who.oauth.is_some() {
            return Err(refuse(
                &peek.upstream,
                "this link was started by another holder",
            ));
        }
        // A browser link finishes only in the browser that opened mcp-zt's link page; a link
        // of `mcp-zt link` only by that command.
        let cookie_ok = match (&peek.browser, browser_cookie) {
            (Some(h), Some(c)) => crate::oauth::crypto::same(h, &sha256_hex(c)),
            _ => false,
        };
        if peek.via_browser != browser_cookie.is_some() || (peek.via_browser && !cookie_ok) {
            return Err(refuse(
                &peek.upstream,
                "this browser did not open the link page of this link: open the link you were given",
            ));
        }
        let Some(p) = self.ledger.take_pending_link(&hash)? else {
            return Err(refuse(
                &peek.upstream,
                "unknown, used or expired link state",
            ));
        };
        if p.expires_at < now() {
            return Err(refuse(&p.upstream, "the link expired: start it again"));
        }
        let upstream = p.upstream.clone();
        let cfg = self.upstream(&upstream)?;
        let http = self.http_for(&cfg)?;
        let key = self.key()?;
        let b = |purpose| Self::binding(purpose, &upstream, &who.name, &chain);
        let verifier = key.open_text(&b("verifier"), &p.verifier)?;
        let secret = match &p.client_secret {
            Some(s) => Some(key.open_text(&b("client-secret"), s)?),
            None => None,
        };
        let auth = ClientAuth {
            client_id: &p.client_id,
            secret: secret.as_deref().map(String::as_str),
            method: &p.auth_method,
        };
        let resource = match &cfg.transport {
            Transport::Http { url, .. } => url.clone(),
            Transport::Stdio { .. } => return Err(LinkError::NotOAuth(upstream.clone())),
        };
        let tokens = http
            .token(
                &p.token_endpoint,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", &p.redirect_uri),
                    ("code_verifier", &verifier),
                    ("resource", &resource),
                ],
                &auth,
            )
            .await
            .map_err(|e| refuse(&upstream, &format!("code exchange: {e}")))?;
        let t = now();
        let scopes = tokens
            .scope
            .as_deref()
            .map(split_scopes)
            .unwrap_or_else(|| p.scopes.clone());
        let link = UpstreamLink {
            upstream: upstream.clone(),
            holder: who.name.clone(),
            chain: chain.clone(),
            serial: who.serial.clone(),
            scopes,
            access: key.seal(&b("access"), tokens.access.as_bytes())?,
            refresh: match &tokens.refresh {
                Some(r) => Some(key.seal(&b("refresh"), r.as_bytes())?),
                None => None,
            },
            expires_at: tokens.expires_in.map_or(0, |n| t.saturating_add(n)),
            linked_at: t,
            refreshed_at: t,
            issuer: p.issuer.clone(),
            token_endpoint: p.token_endpoint.clone(),
            revocation_endpoint: p.revocation_endpoint.clone(),
            client_id: p.client_id.clone(),
            client_secret: p.client_secret.clone(),
            auth_method: p.auth_method.clone(),
        };
        self.ledger.put_upstream_link(&link)?;
        self.forget(&upstream, &who.name);
        self.audit.log(
            ev("upstream_linked", &who.name, &upstream)
                .who(who)
                .reason(format!(
                    "scopes {}; expires {}",
                    if link.scopes.is_empty() {
                        "-".into()
                    } else {
                        link.scopes.join(" ")
                    },
                    if link.expires_at == 0 {
                        "-".into()
                    } else {
                        crate::pki::rfc3339(link.expires_at)
                    }
                )),
        );
        Ok(LinkRow::from(&link))
    }
}
