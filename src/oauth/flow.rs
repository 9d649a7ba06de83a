//! The authorization server's decisions: which authorization requests are acceptable, codes,
//! token issuance, refresh rotation with its reuse grace and the check of an access token
//! (registration and revocation: `register.rs`). No HTTP here; the ledger is the only I/O.

use super::crypto::{self, Secret};
use super::redirect;
use super::{Endpoints, OAuthConfig, ACCESS_PREFIX, CODE_PREFIX, REFRESH_PREFIX, SCOPE};
use crate::ledger::oauth::{
    AuthCode, ClientKind, CodeTake, Grant, GrantHolder, GrantRevocation, OAuthClient, Rotation,
    TokenRecord,
};
use crate::ledger::{Ledger, LedgerError};

/// How long an authorization code lives.
pub const CODE_TTL: i64 = 60;
/// DCR clients unused this long are forgotten.
pub const DCR_IDLE: i64 = 30 * 86_400;
/// Most clients registered at once (DCR refuses more; unused ones expire).
pub const MAX_DCR_CLIENTS: usize = 10_000;

pub use super::messages::{
    Authorization, AuthorizeParams, OAuthFail, Refusal, TokenAnswer, TokenForm, TokenRefusal,
};

/// The certificate a grant speaks for now: the one that approved it, or its renewed successor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    /// Its serial (sessions, revocation and streams are keyed by it).
    pub serial: String,
    /// Its notAfter (Unix seconds): no token outlives it.
    pub not_after: i64,
}

/// Finds the live certificate of a grant's holder, or says why there is none (revoked, role
/// no longer grantable, ...). Supplied by the server, which knows revocations and renewals.
pub type LiveCheck<'a> = &'a dyn Fn(&GrantHolder) -> Result<Live, String>;

/// The authorization server.
#[derive(Debug)]
pub struct AuthServer {
    /// The two names.
    pub endpoints: Endpoints,
    /// `oauth.toml`.
    pub config: OAuthConfig,
    secret: Secret,
}

/// The scope string of a grant for `role`.
pub fn scope_of(role: &str) -> String {
    format!("{SCOPE} role:{role}")
}

impl AuthServer {
    /// With the server's OAuth key.
    pub fn new(endpoints: Endpoints, config: OAuthConfig, secret: Secret) -> AuthServer {
        AuthServer {
            endpoints,
            config,
            secret,
        }
    }

    /// Checks an authorization request against its (already resolved) client.
    pub fn check_authorize(
        &self,
        client: Option<&OAuthClient>,
        p: &AuthorizeParams,
    ) -> Result<Authorization, Refusal> {
        let Some(client_id) = p.client_id.as_deref() else {
            return Err(Refusal::Page(
                "the request names no client (client_id)".into(),
            ));
        };
        let Some(client) = client else {
            return Err(Refusal::Page(format!(
                "unknown client {client_id:?} (not registered, or its registration expired)"
            )));
        };
        let redirect_uri = match p.redirect_uri.as_deref() {
            Some(uri) => {
                let known = redirect::find(&client.redirect_uris, uri).is_some()
                    || self.extra_redirect_ok(client, uri);
                if !known {
                    return Err(Refusal::Page(format!(
                        "the redirect URI {uri:?} is not registered for this client"
                    )));
                }
                uri.to_string()
            }
            None => match client.redirect_uris.as_slice() {
                [only] if redirect::classify(only) == Ok(redirect::Kind::Https) => only.clone(),
                _ => return Err(Refusal::Page("the request has no redirect_uri".into())),
            },
        };
        // Errors go back to the client only when its redirect URI is vouched for (by the
        // operator, or by the host that serves its metadata document); a self-registered
        // client's redirect would make the login name an open redirector (RFC 9700 §4.11.2).
        let vouched = match client.kind {
            ClientKind::Preregistered => true,
            ClientKind::Cimd => same_host(&client.client_id, &redirect_uri),
            ClientKind::Dcr => false,
        };
        let back = |error: &str, why: &str| {
            if vouched {
                Refusal::Redirect {
                    to: self.error_redirect(&redirect_uri, error, why, p.state.as_deref()),
                    why: why.to_string(),
                }
            } else {
                Refusal::Page(format!("{why} ({error})"))
            }
        };
        if p.response_type.as_deref() != Some("code") {
            return Err(back(
                "unsupported_response_type",
                "response_type must be code",
            ));
        }
        let Some(challenge) = p.code_challenge.as_deref() else {
            return Err(back("invalid_request", "PKCE is required (code_challenge)"));
        };
        if p.code_challenge_method.as_deref() != Some("S256") {
            return Err(back(
                "invalid_request",
                "code_challenge_method must be S256 (plain is refused)",
            ));
        }
        if !crypto::is_s256_challenge(challenge) {
            return Err(back("invalid_request", "malformed code_challenge"));
        }
        if let Some(r) = p.resource.as_deref() {
            if r != self.endpoints.resource {
                return Err(back(
                    "invalid_target",
                    &format!(
                        "this server issues tokens only for {}",
                        self.endpoints.resource
                    ),
                ));
            }
        }
        // A client may ask for one role (`role:NAME`); one that asks for several (every scope
        // the metadata lists) expresses no preference.
        let mut roles = Vec::new();
        for s in p.scope.as_deref().unwrap_or("").split_ascii_whitespace() {
            match s {
                SCOPE | "offline_access" => {}
                s if s.starts_with("role:") => roles.push(s["role:".len()..].to_string()),
                _ => return Err(back("invalid_scope", "a scope this server does not offer")),
            }
        }
        let role = match roles.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        };
        Ok(Authorization {
            client_id: client.client_id.clone(),
            redirect_uri,
            state: p.state.clone(),
            challenge: challenge.to_string(),
            resource: self.endpoints.resource.clone(),
            role,
        })
    }

    /// `redirect_uris_extra` (oauth.toml) apply to operator-registered clients only.
    pub fn extra_redirect_ok(&self, client: &OAuthClient, uri: &str) -> bool {
        client.kind == ClientKind::Preregistered
            && self.config.redirect_uris_extra.iter().any(|x| x == uri)
    }

    /// `redirect_uri` with `error`, `error_description`, `state` and `iss` (RFC 9207).
    pub fn error_redirect(&self, uri: &str, error: &str, why: &str, state: Option<&str>) -> String {
        let mut params = vec![("error", error), ("error_description", why)];
        if let Some(s) = state {
            params.push(("state", s));
        }
        params.push(("iss", &self.endpoints.issuer));
        with_query(uri, &params)
    }

    /// The CSRF token of a consent form: bound to the request, the certificate that saw it and
    /// an expiry, so it works on no other request, for no other certificate, and not for long.
    pub fn csrf(&self, a: &Authorization, cert: &str, expires: i64) -> String {
        self.secret.mac(&[
            "consent",
            &a.client_id,
            &a.redirect_uri,
            a.state.as_deref().unwrap_or(""),
            &a.challenge,
            &a.resource,
            a.role.as_deref().unwrap_or(""),
            cert,
            &expires.to_string(),
        ])
    }

    /// Whether `token` is the CSRF token of this request and certificate, and unexpired.
    pub fn csrf_ok(
        &self,
        a: &Authorization,
        cert: &str,
        expires: i64,
        token: &str,
        now: i64,
    ) -> bool {
        now <= expires && crypto::same(&self.csrf(a, cert, expires), token)
    }

    /// The holder approved: a single-use code, stored as its hash, and the URL that takes it
    /// back to the client.
    pub fn approve(
        &self,
        ledger: &Ledger,
        a: &Authorization,
        holder: GrantHolder,
        now: i64,
    ) -> Result<String, LedgerError> {
        let code = crypto::random_token(CODE_PREFIX);
        ledger.put_oauth_code(
            &crypto::sha256_hex(&code),
            &AuthCode {
                client_id: a.client_id.clone(),
                redirect_uri: a.redirect_uri.clone(),
                challenge: a.challenge.clone(),
                resource: a.resource.clone(),
                holder,
                expires_at: now + CODE_TTL,
                used_by: None,
            },
        )?;
        let mut params = vec![("code", code.as_str())];
        if let Some(s) = a.state.as_deref() {
            params.push(("state", s));
        }
        params.push(("iss", &self.endpoints.issuer));
        Ok(with_query(&a.redirect_uri, &params))
    }

    /// The `authorization_code` grant, for an authenticated `client`. `cnf`: the `x5t#S256`
    /// of the verified certificate the token request came with, which binds the tokens to it.
    pub fn exchange(
        &self,
        ledger: &Ledger,
        client: &OAuthClient,
        f: &TokenForm,
        cnf: Option<String>,
        now: i64,
        live: LiveCheck<'_>,
    ) -> Result<(TokenAnswer, Grant), OAuthFail> {
        let code = f
            .code
            .as_deref()
            .ok_or_else(|| OAuthFail::request("code is missing"))?;
        let grant_id = crypto::random_id();
        let c = match ledger.take_oauth_code(&crypto::sha256_hex(code), &grant_id)? {
            CodeTake::Unknown => return Err(OAuthFail::grant("unknown authorization code")),
            CodeTake::Replayed(c) => {
                // RFC 6749 §4.1.2: a code used twice revokes what its first use issued.
                let mut fail = OAuthFail::grant(
                    "authorization code already used; the tokens it gave were revoked",
                );
                if let Some(first) = c.used_by.as_deref() {
                    let why = "authorization code used twice";
                    if ledger.revoke_oauth_grant(first, now, why)?.is_none() {
                        // Not stored yet (its exchange still runs) or revoked already: a
                        // revoked tombstone under its id keeps the first exchange from
                        // storing it afterwards.
                        let placed = ledger.insert_oauth_grant(&Grant {
                            id: first.to_string(),
                            client_id: c.client_id.clone(),
                            holder: c.holder.clone(),
                            resource: c.resource.clone(),
                            cnf: None,
                            created_at: now,
                            expires_at: now,
                            revoked: Some(GrantRevocation {
                                at: now,
                                reason: why.into(),
                            }),
                        })?;
                        if !placed {
                            // The first exchange stored it meanwhile.
                            ledger.revoke_oauth_grant(first, now, why)?;
                        }
                    }
                    fail.revoked_grant = Some(first.to_string());
                }
                fail.event = "code_reuse_detected";
                return Err(fail);
            }
            CodeTake::First(c) => c,
        };
        if c.expires_at < now {
            return Err(OAuthFail::grant("authorization code expired"));
        }
        if c.client_id != client.client_id {
            return Err(OAuthFail::grant(
                "authorization code issued to another client",
            ));
        }
        if f.redirect_uri.as_deref() != Some(c.redirect_uri.as_str()) {
            return Err(OAuthFail::grant(
                "redirect_uri differs from the authorization request's",
            ));
        }
        let verifier = f.code_verifier.as_deref().unwrap_or("");
        if !crypto::pkce_s256_ok(verifier, &c.challenge) {
            return Err(OAuthFail::grant("PKCE verification failed"));
        }
        if let Some(r) = f.resource.as_deref() {
            if r != c.resource {
                return Err(OAuthFail::new(400, "invalid_target", "resource differs"));
            }
        }
        let cert = live(&c.holder).map_err(OAuthFail::grant)?;
        if cert.not_after <= now {
            return Err(OAuthFail::grant("the certificate that approved it expired"));
        }
        let grant = Grant {
            id: grant_id,
            client_id: c.client_id,
            expires_at: now + self.config.refresh_ttl,
            holder: c.holder,
            resource: c.resource,
            cnf,
            created_at: now,
            revoked: None,
        };
        if !ledger.insert_oauth_grant(&grant)? {
            return Err(OAuthFail::grant(
                "authorization code used twice; the tokens it gave were revoked",
            ));
        }
        let answer = self.mint(
            ledger,
            &grant,
            &cert,
            crypto::random_token(ACCESS_PREFIX),
            crypto::random_token(REFRESH_PREFIX),
            now,
        )?;
        Ok((answer, grant))
    }

    /// Stores and answers a token pair of `grant`. The access token ends with the grant or the
    /// certificate, whichever is first.
    fn mint(
        &self,
        ledger: &Ledger,
        grant: &Grant,
        cert: &Live,
        access: String,
        refresh: String,
        now: i64,
    ) -> Result<TokenAnswer, LedgerError> {
        let access_exp = (now + self.config.access_ttl)
            .min(grant.expires_at)
            .min(cert.not_after);
        ledger.put_oauth_access(
            &crypto::sha256_hex(&access),
            &TokenRecord {
                grant: grant.id.clone(),
                expires_at: access_exp,
                rotated_at: None,
            },
        )?;
        ledger.put_oauth_refresh(
            &crypto::sha256_hex(&refresh),
            &TokenRecord {
                grant: grant.id.clone(),
                expires_at: grant.expires_at,
                rotated_at: None,
            },
        )?;
        Ok(TokenAnswer {
            access_token: access,
            token_type: "Bearer",
            expires_in: access_exp - now,
            refresh_token: refresh,
            scope: scope_of(&grant.holder.role),
        })
    }

    /// The `refresh_token` grant: rotation on every use; a repeat within the reuse grace gets
    /// the same new pair (derived from the old token with the server key, so it never has to
    /// be stored); a repeat after it revokes the whole grant.
    pub fn refresh(
        &self,
        ledger: &Ledger,
        client: &OAuthClient,
        f: &TokenForm,
        now: i64,
        live: LiveCheck<'_>,
    ) -> Result<(TokenAnswer, Grant), OAuthFail> {
        let old = f
            .refresh_token
            .as_deref()
            .ok_or_else(|| OAuthFail::request("refresh_token is missing"))?;
        let hash = crypto::sha256_hex(old);
        let Some(rec) = ledger.oauth_refresh(&hash)? else {
            return Err(OAuthFail::grant("unknown refresh token"));
        };
        let (grant, cert) = self.live_grant(ledger, &rec.grant, now, live)?;
        if grant.client_id != client.client_id {
            return Err(OAuthFail::grant("refresh token of another client"));
        }
        if rec.expires_at <= now {
            return Err(OAuthFail::grant("refresh token expired"));
        }
        if let Some(r) = f.resource.as_deref() {
            if r != grant.resource {
                return Err(OAuthFail::new(400, "invalid_target", "resource differs"));
            }
        }
        let access = self.secret.derive(ACCESS_PREFIX, &["rotate-access", old]);
        let refresh = self.secret.derive(REFRESH_PREFIX, &["rotate-refresh", old]);
        match ledger.rotate_oauth_refresh(&hash, now)? {
            Rotation::Unknown => Err(OAuthFail::grant("unknown refresh token")),
            Rotation::First(_) => Ok((
                self.mint(ledger, &grant, &cert, access, refresh, now)?,
                grant,
            )),
            Rotation::Again(t) => {
                let at = t.rotated_at.unwrap_or(now);
                if now - at <= self.config.refresh_reuse_grace {
                    let exp = ledger
                        .oauth_access(&crypto::sha256_hex(&access))?
                        .map_or(now, |a| a.expires_at);
                    let answer = TokenAnswer {
                        access_token: access,
                        token_type: "Bearer",
                        expires_in: (exp - now).max(0),
                        refresh_token: refresh,
                        scope: scope_of(&grant.holder.role),
                    };
                    return Ok((answer, grant));
                }
                ledger.revoke_oauth_grant(
                    &grant.id,
                    now,
                    "refresh token reused after its rotation",
                )?;
                let mut fail = OAuthFail::grant(
                    "refresh token already used; every token of this grant was revoked",
                );
                fail.event = "refresh_reuse_detected";
                fail.revoked_grant = Some(grant.id);
                Err(fail)
            }
        }
    }

    /// A grant that may still issue tokens, and its live certificate; a grant whose
    /// certificate is gone is revoked here too (so `oauth grants` says why).
    fn live_grant(
        &self,
        ledger: &Ledger,
        id: &str,
        now: i64,
        live: LiveCheck<'_>,
    ) -> Result<(Grant, Live), OAuthFail> {
        let Some(grant) = ledger.oauth_grant(id)? else {
            return Err(OAuthFail::grant("unknown grant"));
        };
        if let Some(r) = &grant.revoked {
            return Err(OAuthFail::grant(format!("grant revoked: {}", r.reason)));
        }
        let cert = match live(&grant.holder) {
            Ok(c) => c,
            // A storage error says nothing about the grant: refused now, kept.
            Err(why) if why.starts_with("ledger:") => return Err(OAuthFail::internal(why)),
            Err(why) => {
                ledger.revoke_oauth_grant(&grant.id, now, &why)?;
                let mut fail = OAuthFail::grant(why);
                fail.revoked_grant = Some(grant.id);
                return Err(fail);
            }
        };
        // Renewed since: the grant now names the successor, so later walks are short.
        if cert.serial != grant.holder.serial {
            ledger.advance_oauth_grant(&grant.id, &cert.serial, cert.not_after)?;
        }
        if grant.expires_at <= now || cert.not_after <= now {
            return Err(OAuthFail::grant("grant expired"));
        }
        Ok((grant, cert))
    }

    /// The grant an access token belongs to, its live certificate and the token's expiry; or
    /// why it is refused (with the grant, when the token was known, so the refusal can be
    /// audited with its holder and client).
    pub fn check_access(
        &self,
        ledger: &Ledger,
        token: &str,
        now: i64,
        live: LiveCheck<'_>,
    ) -> Result<(Grant, Live, i64), TokenRefusal> {
        self.check_access_hashed(ledger, &crypto::sha256_hex(token), now, live)
    }

    /// [`Self::check_access`] for a token already hashed.
    pub fn check_access_hashed(
        &self,
        ledger: &Ledger,
        hash: &str,
        now: i64,
        live: LiveCheck<'_>,
    ) -> Result<(Grant, Live, i64), TokenRefusal> {
        let storage = |e: LedgerError| (format!("ledger: {e}"), None);
        let storage = |e| TokenRefusal::from(storage(e));
        let Some(rec) = ledger.oauth_access(hash).map_err(storage)? else {
            return Err(("unknown token".to_string(), None).into());
        };
        let Some(grant) = ledger.oauth_grant(&rec.grant).map_err(storage)? else {
            return Err(("unknown grant".to_string(), None).into());
        };
        let why = if rec.expires_at <= now {
            "token expired".to_string()
        } else if let Some(r) = &grant.revoked {
            format!("grant revoked: {}", r.reason)
        } else if grant.resource != self.endpoints.resource {
            "token for another resource".into()
        } else {
            match live(&grant.holder) {
                Err(why) => why,
                Ok(cert) if cert.not_after <= now => "certificate expired".into(),
                Ok(cert) => return Ok((grant, cert, rec.expires_at)),
            }
        };
        Err((why, Some(Box::new(grant))).into())
    }
}

/// Whether two URLs have the same host.
fn same_host(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.host_str().is_some() && a.host_str() == b.host_str(),
        _ => false,
    }
}

/// `uri` with `params` appended to its query (form-encoded).
fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut u) => {
            u.query_pairs_mut().extend_pairs(params);
            u.to_string()
        }
        Err(_) => uri.to_string(),
    }
}
