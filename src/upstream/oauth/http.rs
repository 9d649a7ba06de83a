//! The HTTP side of being an OAuth client to an upstream: discovery, registration, the token
//! endpoint and revocation.
//!
//! The upstream's metadata is input from a server on the network, and the URLs in it are
//! fetched by mcp-zt: an upstream that named `http://169.254.169.254/...` or another service
//! on the gateway's loopback as its token endpoint would make the gateway a request forger.
//! So a URL on the upstream's own host (what the operator configured) is reached as the
//! upstream is; any other must be https on a public address (checked for IP literals here
//! and for names by the resolver, which drops private answers), unless the upstream is marked
//! `oauth_allow_private`. Redirects are never followed.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use url::Url;
use zeroize::Zeroizing;

use super::discover::{self, Challenge, ResourceMetadata, ServerMetadata};
use crate::oauth::cimd::{fetch_error, url_allowed, Filtered};

/// Longest wait for one answer.
const TIMEOUT: Duration = Duration::from_secs(15);
/// Largest metadata or token answer read.
const MAX_BYTES: usize = 64 * 1024;

/// What discovery found.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The resource to ask tokens for (RFC 8707).
    pub resource: String,
    /// The authorization server's metadata.
    pub server: ServerMetadata,
    /// Scopes the challenge asked for.
    pub challenge_scopes: Vec<String>,
    /// Scopes the resource lists.
    pub resource_scopes: Vec<String>,
}

/// A token endpoint's answer.
pub struct Tokens {
    /// The access token.
    pub access: Zeroizing<String>,
    /// A refresh token, if given.
    pub refresh: Option<Zeroizing<String>>,
    /// Lifetime in seconds, if said.
    pub expires_in: Option<i64>,
    /// Granted scopes, if said.
    pub scope: Option<String>,
}

/// How mcp-zt authenticates at a token endpoint.
pub struct ClientAuth<'a> {
    /// Its client id.
    pub client_id: &'a str,
    /// Its secret, for a confidential client.
    pub secret: Option<&'a str>,
    /// `none`, `client_secret_post` or `client_secret_basic`.
    pub method: &'a str,
}

/// A registration's answer.
pub struct Registered {
    /// The client id.
    pub client_id: String,
    /// A secret, if the server gave one.
    pub client_secret: Option<Zeroizing<String>>,
    /// The method it agreed to.
    pub method: String,
}

/// HTTP clients for one upstream's OAuth traffic.
pub struct OAuthHttp {
    upstream: Url,
    own: reqwest::Client,
    public: reqwest::Client,
    allow_private: bool,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl OAuthHttp {
    /// Clients for the upstream at `url`: `own` reaches its host (as its connection does);
    /// `allow_private` lets other hosts be private or loopback.
    pub fn new(url: &str, own: reqwest::Client, allow_private: bool) -> Result<OAuthHttp, String> {
        let upstream = Url::parse(url).map_err(|e| format!("upstream url: {e}"))?;
        let public = reqwest::Client::builder()
            .no_proxy()
            .https_only(!allow_private)
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .user_agent("mcp-zt (upstream OAuth client)")
            .dns_resolver(Arc::new(Filtered { allow_private }))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(OAuthHttp {
            upstream,
            own,
            public,
            allow_private,
        })
    }

    /// The upstream's URL.
    pub fn upstream(&self) -> &Url {
        &self.upstream
    }

    /// The client for `url`, or why mcp-zt will not send anything there.
    pub fn client_for(&self, url: &str) -> Result<(&reqwest::Client, Url), String> {
        let u = Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if u.scheme() == self.upstream.scheme()
            && u.host_str() == self.upstream.host_str()
            && u.port_or_known_default() == self.upstream.port_or_known_default()
        {
            return Ok((&self.own, u));
        }
        if self.allow_private && matches!(u.scheme(), "http" | "https") {
            return Ok((&self.public, u));
        }
        // The address first: it is what makes a URL dangerous (https to a private address is
        // no better).
        let literal: Option<std::net::IpAddr> = match u.host() {
            Some(url::Host::Ipv4(a)) => Some(a.into()),
            Some(url::Host::Ipv6(a)) => Some(a.into()),
            _ => None,
        };
        let why = match literal {
            Some(ip) if !crate::oauth::addr::is_public(ip) => {
                Some(format!("{ip} is not a public address"))
            }
            _ => url_allowed(&u, false).err(),
        };
        if let Some(why) = why {
            return Err(format!(
                "{url} is not on the upstream's own origin and {why} (oauth_allow_private = true \
                 is for an upstream known to be local)"
            ));
        }
        Ok((&self.public, u))
    }

    async fn read_body(resp: reqwest::Response) -> Result<Vec<u8>, String> {
        let mut resp = resp;
        if resp.content_length().is_some_and(|n| n > MAX_BYTES as u64) {
            return Err(format!("answer over {MAX_BYTES} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fetch_error(&e))? {
            if body.len() + chunk.len() > MAX_BYTES {
                return Err(format!("answer over {MAX_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let (client, u) = self.client_for(url)?;
        let resp = tokio::time::timeout(
            TIMEOUT,
            client
                .get(u)
                .header(http::header::ACCEPT, "application/json")
                .send(),
        )
        .await
        .map_err(|_| format!("{url}: no answer within {TIMEOUT:?}"))?
        .map_err(|e| format!("{url}: {}", fetch_error(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        let body = tokio::time::timeout(TIMEOUT, Self::read_body(resp))
            .await
            .map_err(|_| format!("{url}: no complete answer within {TIMEOUT:?}"))??;
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not the expected JSON: {e}"))
    }

    /// The upstream's challenge to a request without a token: an `initialize` POST, as an MCP
    /// client's first request is.
    pub async fn challenge(&self) -> Result<Challenge, String> {
        let body = serde_json::json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": { "name": "mcp-zt", "version": env!("CARGO_PKG_VERSION") }
            }
        });
        let resp = tokio::time::timeout(
            TIMEOUT,
            self.own
                .post(self.upstream.clone())
                .header(http::header::ACCEPT, "application/json, text/event-stream")
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.to_string())
                .send(),
        )
        .await
        .map_err(|_| format!("no answer within {TIMEOUT:?}"))?
        .map_err(|e| fetch_error(&e))?;
        let header = resp
            .headers()
            .get(http::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match (resp.status().as_u16(), header) {
            (401, Some(h)) => Ok(discover::parse_challenge(&h)),
            (401, None) => Ok(Challenge::default()),
            (s, _) => Err(format!(
                "answered {s} to a request without a token: it does not ask for OAuth (use auth = \"static\")"
            )),
        }
    }

    /// Discovery: challenge, protected-resource metadata, authorization-server metadata.
    pub async fn discover(&self) -> Result<Discovered, String> {
        let challenge = self.challenge().await?;
        let mut tried = Vec::new();
        let mut prm: Option<ResourceMetadata> = None;
        for url in discover::resource_metadata_urls(&self.upstream, &challenge) {
            match self.get_json::<ResourceMetadata>(&url).await {
                Ok(m) => {
                    prm = Some(m);
                    break;
                }
                Err(e) => tried.push(e),
            }
        }
        let prm =
            prm.ok_or_else(|| format!("no protected-resource metadata: {}", tried.join("; ")))?;
        discover::check_resource(&prm.resource, &self.upstream)?;
        let issuer = prm
            .authorization_servers
            .first()
            .ok_or("its protected-resource metadata names no authorization server")?
            .clone();
        let issuer_url =
            Url::parse(&issuer).map_err(|e| format!("authorization server {issuer:?}: {e}"))?;
        // The issuer itself is where the metadata is fetched from: it passes the same check.
        self.client_for(issuer_url.as_str())?;
        let mut server: Option<ServerMetadata> = None;
        let mut tried = Vec::new();
        for url in discover::server_metadata_urls(&issuer_url) {
            match self.get_json::<ServerMetadata>(&url).await {
                Ok(m) => {
                    server = Some(m);
                    break;
                }
                Err(e) => tried.push(e),
            }
        }
        let server = server.ok_or_else(|| {
            format!(
                "no authorization-server metadata for {issuer}: {}",
                tried.join("; ")
            )
        })?;
        discover::check_server_metadata(&server, &issuer)?;
        for endpoint in [
            Some(&server.authorization_endpoint),
            Some(&server.token_endpoint),
            server.registration_endpoint.as_ref(),
            server.revocation_endpoint.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            self.client_for(endpoint)
                .map_err(|e| format!("its metadata names an endpoint mcp-zt will not use: {e}"))?;
        }
        Ok(Discovered {
            resource: prm.resource,
            server,
            challenge_scopes: challenge.scopes(),
            resource_scopes: prm.scopes_supported,
        })
    }

    async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        auth: Option<&ClientAuth<'_>>,
    ) -> Result<(u16, Vec<u8>), String> {
        let (client, u) = self.client_for(url)?;
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        let mut req = client
            .post(u)
            .header(http::header::ACCEPT, "application/json");
        if let Some(a) = auth {
            match (a.method, a.secret) {
                ("client_secret_basic", Some(s)) => {
                    let enc = |v: &str| {
                        url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                    };
                    let pair = Zeroizing::new(format!("{}:{}", enc(a.client_id), enc(s)));
                    req = req.header(
                        http::header::AUTHORIZATION,
                        format!("Basic {}", STANDARD.encode(pair.as_bytes())),
                    );
                }
                ("client_secret_post", Some(s)) => {
                    fields.push(("client_id", a.client_id));
                    fields.push(("client_secret", s));
                }
                _ => fields.push(("client_id", a.client_id)),
            }
        }
        let body = Zeroizing::new(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields)
                .finish(),
        );
        let resp = tokio::time::timeout(
            TIMEOUT,
            req.header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body.to_string())
            .send(),
        )
        .await
        .map_err(|_| format!("{url}: no answer within {TIMEOUT:?}"))?
        .map_err(|e| format!("{url}: {}", fetch_error(&e)))?;
        let status = resp.status().as_u16();
        let body = Self::read_body(resp).await?;
        Ok((status, body))
    }

    /// Calls the token endpoint (a code exchange or a refresh).
    pub async fn token(
        &self,
        endpoint: &str,
        form: &[(&str, &str)],
        auth: &ClientAuth<'_>,
    ) -> Result<Tokens, TokenError> {
        let (status, body) = self
            .post_form(endpoint, form, Some(auth))
            .await
            .map_err(TokenError::Transport)?;
        if !(200..300).contains(&status) {
            return Err(match serde_json::from_slice::<ErrorAnswer>(&body) {
                Ok(e) => TokenError::Refused {
                    error: e.error,
                    description: e.error_description,
                },
                Err(_) => TokenError::Transport(format!("token endpoint answered {status}")),
            });
        }
        let t: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| TokenError::Transport(format!("token answer: {e}")))?;
        if let Some(tt) = &t.token_type {
            if !tt.eq_ignore_ascii_case("bearer") {
                return Err(TokenError::Transport(format!(
                    "token type {tt:?}: only Bearer tokens are used"
                )));
            }
        }
        if t.access_token.is_empty() || http::HeaderValue::from_str(&t.access_token).is_err() {
            return Err(TokenError::Transport("an unusable access token".into()));
        }
        Ok(Tokens {
            access: Zeroizing::new(t.access_token),
            refresh: t
                .refresh_token
                .filter(|r| !r.is_empty())
                .map(Zeroizing::new),
            expires_in: t.expires_in.filter(|n| *n > 0),
            scope: t.scope,
        })
    }

    /// Dynamic client registration (RFC 7591) as a public client.
    pub async fn register(&self, endpoint: &str, redirect_uri: &str) -> Result<Registered, String> {
        let (client, u) = self.client_for(endpoint)?;
        let body = serde_json::json!({
            "client_name": "mcp-zt",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        });
        let resp = tokio::time::timeout(
            TIMEOUT,
            client
                .post(u)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.to_string())
                .send(),
        )
        .await
        .map_err(|_| format!("registration: no answer within {TIMEOUT:?}"))?
        .map_err(|e| format!("registration: {}", fetch_error(&e)))?;
        let status = resp.status();
        let bytes = Self::read_body(resp).await?;
        if !status.is_success() {
            let why = serde_json::from_slice::<ErrorAnswer>(&bytes)
                .map(|e| format!("{}: {}", e.error, e.error_description.unwrap_or_default()))
                .unwrap_or_else(|_| status.to_string());
            return Err(format!("registration refused: {why}"));
        }
        #[derive(Deserialize)]
        struct Answer {
            client_id: String,
            #[serde(default)]
            client_secret: Option<String>,
            #[serde(default)]
            token_endpoint_auth_method: Option<String>,
        }
        let a: Answer =
            serde_json::from_slice(&bytes).map_err(|e| format!("registration answer: {e}"))?;
        let method = a.token_endpoint_auth_method.unwrap_or_else(|| {
            if a.client_secret.is_some() {
                "client_secret_basic"
            } else {
                "none"
            }
            .into()
        });
        Ok(Registered {
            client_id: a.client_id,
            client_secret: a.client_secret.map(Zeroizing::new),
            method,
        })
    }

    /// Revokes a token (RFC 7009); the status the server answered.
    pub async fn revoke(
        &self,
        endpoint: &str,
        token: &str,
        hint: &str,
        auth: &ClientAuth<'_>,
    ) -> Result<u16, String> {
        let (status, _) = self
            .post_form(
                endpoint,
                &[("token", token), ("token_type_hint", hint)],
                Some(auth),
            )
            .await?;
        Ok(status)
    }
}

/// A failed token request.
#[derive(Debug)]
pub enum TokenError {
    /// The server refused (an OAuth error): `invalid_grant` means the link is gone.
    Refused {
        /// The OAuth error code.
        error: String,
        /// Its description.
        description: Option<String>,
    },
    /// No usable answer.
    Transport(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Refused { error, description } => match description {
                Some(d) => write!(f, "{error}: {}", crate::audit::escape_for_terminal(d)),
                None => f.write_str(error),
            },
            TokenError::Transport(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(upstream: &str, allow_private: bool) -> OAuthHttp {
        OAuthHttp::new(upstream, reqwest::Client::new(), allow_private).expect("client")
    }

    #[test]
    fn endpoints_elsewhere_must_be_public_https() {
        let local = h("http://127.0.0.1:8000/mcp", false);
        assert!(local.client_for("http://127.0.0.1:8000/token").is_ok());
        for bad in [
            "http://127.0.0.2:8000/token",
            "https://127.0.0.1:8001/token",
            "https://10.0.0.5/token",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/token",
            "https://[fd00::1]/token",
            "https://192.168.1.1/token",
            "http://login.example.com/token",
            "file:///etc/passwd",
        ] {
            let e = local.client_for(bad).expect_err(bad);
            assert!(e.contains("not on the upstream's own origin"), "{bad}: {e}");
        }
        assert!(local
            .client_for("https://127.0.0.2/token")
            .expect_err("loopback")
            .contains("127.0.0.2 is not a public address"));
        assert!(local.client_for("https://login.example.com/token").is_ok());
        let trusted = h("http://127.0.0.1:8000/mcp", true);
        assert!(trusted.client_for("http://127.0.0.2:9000/token").is_ok());
    }
}
