//! OAuth (`serve --oauth`) against hostile clients: PKCE, redirect URIs, codes used twice,
//! refresh reuse, tokens that are tampered, expired, for another resource, of a revoked
//! certificate or bound to a certificate, client metadata documents that point inward or
//! never end, registration floods, forged consent answers and framing.

use std::collections::HashMap;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::common::Env;
use crate::server_env::{wait_audit, Server, INIT};

const VERIFIER: &str = "a-perfectly-ordinary-pkce-verifier-of-fifty-characters";

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A server with OAuth on: MCP name `localhost`, login name `127.0.0.1`, same port.
struct Oa {
    env: Env,
    _server: Server,
    mcp: String,
    login: String,
    base: String,
}

impl Oa {
    fn start(env: Env, oauth_toml: &str, extra: &[&str]) -> Oa {
        std::fs::write(env.home.join("oauth.toml"), oauth_toml).expect("oauth.toml");
        let port = free_port();
        let mcp = format!("https://localhost:{port}/mcp");
        let login = format!("https://127.0.0.1:{port}");
        let mut args = vec![
            "--oauth",
            "--public-url",
            &mcp,
            "--login-url",
            &login,
            "--lockout-threshold",
            "0",
        ];
        args.extend_from_slice(extra);
        let server = Server::start_on(&env, port, &args);
        Oa {
            base: format!("https://localhost:{port}"),
            env,
            _server: server,
            mcp,
            login,
        }
    }

    /// A client without a certificate that follows no redirects.
    fn anon(&self) -> reqwest::Client {
        let ca = std::fs::read(self.env.home.join("ca.crt")).expect("ca");
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca")])
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }

    /// `name`'s browser: presents the certificate, follows no redirects.
    fn browser(&self, name: &str) -> reqwest::Client {
        let dir = self.env.home.join("clients");
        let mut pem = std::fs::read(dir.join(format!("{name}.crt"))).expect("cert");
        pem.extend(std::fs::read(dir.join(format!("{name}.key"))).expect("key"));
        let ca = std::fs::read(self.env.home.join("ca.crt")).expect("ca");
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca")])
            .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }

    async fn register(&self, body: serde_json::Value) -> reqwest::Response {
        self.anon()
            .post(format!("{}/register", self.base))
            .json(&body)
            .send()
            .await
            .expect("register")
    }

    async fn client_id(&self) -> String {
        let r = self
            .register(serde_json::json!({
                "client_name": "test",
                "redirect_uris": ["http://127.0.0.1/cb"],
            }))
            .await;
        assert_eq!(r.status(), 201);
        let v: serde_json::Value = r.json().await.expect("json");
        v["client_id"].as_str().expect("client_id").to_string()
    }

    fn authorize_url(&self, client_id: &str, extra: &[(&str, &str)]) -> String {
        let mut u = url::Url::parse(&format!("{}/authorize", self.login)).expect("url");
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", client_id)
                .append_pair("redirect_uri", "http://127.0.0.1:5555/cb")
                .append_pair("state", "st")
                .append_pair("resource", &self.mcp);
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        u.to_string()
    }

    /// The consent page's form fields, as `name`'s browser sees them.
    async fn consent(&self, name: &str, client_id: &str) -> HashMap<String, String> {
        let url = self.authorize_url(
            client_id,
            &[
                ("code_challenge", &challenge(VERIFIER)),
                ("code_challenge_method", "S256"),
            ],
        );
        let r = self.browser(name).get(url).send().await.expect("authorize");
        assert_eq!(r.status(), 200);
        hidden_fields(&r.text().await.expect("html"))
    }

    async fn decide(
        &self,
        name: &str,
        fields: &HashMap<String, String>,
        origin: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .browser(name)
            .post(format!("{}/authorize/decide", self.login))
            .form(fields);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send().await.expect("decide")
    }

    /// Approves as `name` and returns the code.
    async fn code(&self, name: &str, client_id: &str) -> String {
        let mut fields = self.consent(name, client_id).await;
        fields.insert("decision".into(), "approve".into());
        let r = self.decide(name, &fields, Some(&self.login)).await;
        assert_eq!(r.status(), 303);
        let to = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_string();
        query_of(&to)["code"].clone()
    }

    async fn token(&self, client: &reqwest::Client, form: &[(&str, &str)]) -> reqwest::Response {
        client
            .post(format!("{}/token", self.base))
            .form(form)
            .send()
            .await
            .expect("token")
    }

    async fn exchange(&self, client_id: &str, code: &str) -> reqwest::Response {
        self.token(
            &self.anon(),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", "http://127.0.0.1:5555/cb"),
                ("client_id", client_id),
                ("code_verifier", VERIFIER),
            ],
        )
        .await
    }

    /// Tokens for `name` through a registered client: (client_id, token answer).
    async fn tokens(&self, name: &str) -> (String, serde_json::Value) {
        let id = self.client_id().await;
        let code = self.code(name, &id).await;
        let r = self.exchange(&id, &code).await;
        assert_eq!(r.status(), 200);
        (id, r.json().await.expect("json"))
    }

    /// initialize with `token`: the status and the WWW-Authenticate header.
    async fn init(&self, token: &str) -> (u16, String) {
        let r = self
            .anon()
            .post(&self.mcp)
            .header("authorization", format!("Bearer {token}"))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(INIT)
            .send()
            .await
            .expect("mcp");
        let www = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default();
        (r.status().as_u16(), www)
    }
}

fn query_of(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .expect("url")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `<input type="hidden" name="N" value="V">` fields of a page.
fn hidden_fields(html: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for part in html.split("<input type=\"hidden\" name=\"").skip(1) {
        let (name, rest) = part.split_once('"').expect("name");
        let value = rest
            .split_once("value=\"")
            .and_then(|(_, v)| v.split_once('"'))
            .map(|(v, _)| v)
            .expect("value");
        out.insert(unescape(name), unescape(value));
    }
    out
}

fn env_with(names: &[(&str, &str)]) -> Env {
    let env = Env::with_ca();
    for (name, role) in names {
        env.issue(name, role);
    }
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn pkce_missing_or_plain_and_other_resources_are_refused() {
    let oa = Oa::start(env_with(&[("alice", "admin")]), "", &[]);
    let id = oa.client_id().await;
    for (extra, why) in [
        (vec![], "PKCE is required"),
        (
            vec![
                ("code_challenge", VERIFIER),
                ("code_challenge_method", "plain"),
            ],
            "plain is refused",
        ),
    ] {
        let r = oa
            .browser("alice")
            .get(oa.authorize_url(&id, &extra))
            .send()
            .await
            .expect("authorize");
        // A self-registered client's redirect is not vouched for: the error is shown on the
        // login name, never sent to the client's URI (no open redirector).
        assert_eq!(r.status(), 400, "{extra:?}");
        assert!(r.headers().get("location").is_none());
        assert!(r.text().await.expect("html").contains(why), "{extra:?}");
    }
    let r = oa
        .browser("alice")
        .get(
            oa.authorize_url(
                &id,
                &[
                    ("code_challenge", &challenge(VERIFIER)),
                    ("code_challenge_method", "S256"),
                ],
            )
            .replace(
                "resource=https",
                "resource=https%3A%2F%2Fevil.example%2Fmcp&x=https",
            ),
        )
        .send()
        .await
        .expect("authorize");
    assert_eq!(r.status(), 400);
    assert!(r.text().await.expect("html").contains("invalid_target"));
    wait_audit(&oa.env, |v| {
        v["event"] == "authorization_refused"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("PKCE is required"))
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unregistered_redirect_uri_gets_an_error_page_never_a_redirect() {
    let oa = Oa::start(env_with(&[("alice", "admin")]), "", &[]);
    let id = oa.client_id().await;
    let url = oa
        .authorize_url(&id, &[("code_challenge", &challenge(VERIFIER))])
        .replace("127.0.0.1%3A5555%2Fcb", "evil.example%2Fcb");
    let r = oa
        .browser("alice")
        .get(url)
        .send()
        .await
        .expect("authorize");
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.expect("html").contains("not registered"));
    // An unknown client: the same.
    let r = oa
        .browser("alice")
        .get(oa.authorize_url("mzt_dcr_nobody", &[]))
        .send()
        .await
        .expect("authorize");
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    wait_audit(&oa.env, |v| {
        v["event"] == "authorization_refused"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("not registered"))
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_used_twice_revokes_the_tokens_of_its_first_use() {
    let oa = Oa::start(env_with(&[("alice", "admin")]), "", &[]);
    let id = oa.client_id().await;
    let code = oa.code("alice", &id).await;
    let first = oa.exchange(&id, &code).await;
    assert_eq!(first.status(), 200);
    let first: serde_json::Value = first.json().await.expect("json");
    let access = first["access_token"].as_str().expect("access");
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(oa.init(access).await.0, 200, "the first tokens work");
    let again = oa.exchange(&id, &code).await;
    assert_eq!(again.status(), 400);
    let again: serde_json::Value = again.json().await.expect("json");
    assert_eq!(again["error"], "invalid_grant");
    let (status, www) = oa.init(access).await;
    assert_eq!(status, 401, "the first use's tokens are revoked");
    assert!(www.contains("error=\"invalid_token\""), "{www}");
    wait_audit(&oa.env, |v| v["event"] == "code_reuse_detected");
    // A wrong verifier burns the code too.
    let code = oa.code("alice", &id).await;
    let r = oa
        .token(
            &oa.anon(),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1:5555/cb"),
                ("client_id", &id),
                ("code_verifier", &"x".repeat(50)),
            ],
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(oa.exchange(&id, &code).await.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rotates_repeats_within_the_grace_and_revokes_the_family_after_it() {
    let oa = Oa::start(
        env_with(&[("alice", "admin")]),
        "refresh_reuse_grace = \"1s\"\n",
        &[],
    );
    let (id, t0) = oa.tokens("alice").await;
    let rt0 = t0["refresh_token"].as_str().expect("refresh");
    let refresh = |rt: String| {
        let id = id.clone();
        let oa = &oa;
        async move {
            oa.token(
                &oa.anon(),
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &rt),
                    ("client_id", &id),
                ],
            )
            .await
        }
    };
    let r1 = refresh(rt0.to_string()).await;
    assert_eq!(r1.status(), 200);
    let t1: serde_json::Value = r1.json().await.expect("json");
    assert_ne!(t1["refresh_token"], t0["refresh_token"], "rotated");
    let r1b: serde_json::Value = refresh(rt0.to_string()).await.json().await.expect("json");
    assert_eq!(
        r1b["access_token"], t1["access_token"],
        "same pair in the grace"
    );
    assert_eq!(r1b["refresh_token"], t1["refresh_token"]);
    let access1 = t1["access_token"].as_str().expect("access");
    assert_eq!(oa.init(access1).await.0, 200);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let late = refresh(rt0.to_string()).await;
    assert_eq!(late.status(), 400);
    let late: serde_json::Value = late.json().await.expect("json");
    assert_eq!(late["error"], "invalid_grant");
    assert_eq!(oa.init(access1).await.0, 401, "the whole family is revoked");
    let next = refresh(t1["refresh_token"].as_str().expect("rt").to_string()).await;
    assert_eq!(next.status(), 400);
    wait_audit(&oa.env, |v| {
        v["event"] == "refresh_reuse_detected" && v["client_id"] == id.as_str()
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_expired_foreign_audience_and_revoked_tokens_are_refused() {
    let oa = Oa::start(
        env_with(&[("alice", "admin"), ("bob", "viewer")]),
        "access_ttl = \"2s\"\n",
        &[],
    );
    // No token at all: the challenge names the metadata by absolute URL.
    let (status, www) = oa.init("").await;
    assert_eq!(status, 401);
    assert!(
        www.contains(&format!(
            "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
            oa.base
        )),
        "{www}"
    );
    let (_, t) = oa.tokens("alice").await;
    let access = t["access_token"].as_str().expect("access").to_string();
    assert_eq!(oa.init(&access).await.0, 200);
    let mut tampered = access.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let (status, www) = oa.init(&String::from_utf8(tampered).expect("utf8")).await;
    assert_eq!(status, 401);
    assert!(www.contains("invalid_token"));
    // An unknown session with a good token: 404, never 401 (a 401 makes hosted clients log in
    // again).
    let r = oa
        .anon()
        .post(&oa.mcp)
        .header("authorization", format!("Bearer {access}"))
        .header("mcp-session-id", "no-such-session")
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
        .send()
        .await
        .expect("mcp");
    assert_eq!(r.status(), 404);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, www) = oa.init(&access).await;
    assert_eq!(status, 401, "expired");
    assert!(www.contains("token expired"), "{www}");
    // Revoked certificate.
    let (_, t) = oa.tokens("bob").await;
    let bob = t["access_token"].as_str().expect("access").to_string();
    assert_eq!(oa.init(&bob).await.0, 200);
    oa.env.run(&["revoke", "bob"]).ok();
    let (status, www) = oa.init(&bob).await;
    assert_eq!(status, 401);
    assert!(www.contains("certificate revoked"), "{www}");
    wait_audit(&oa.env, |v| {
        v["event"] == "token_refused" && v["name"] == "bob" && v["reason"] == "certificate revoked"
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_for_another_resource_is_refused() {
    let env = env_with(&[("alice", "admin")]);
    let access = {
        let oa = Oa::start(env, "", &[]);
        let (_, t) = oa.tokens("alice").await;
        let access = t["access_token"].as_str().expect("access").to_string();
        assert_eq!(oa.init(&access).await.0, 200);
        (access, oa.env)
    };
    let (access, env) = access;
    // The same ledger, another public URL: the token's audience is the old one.
    let port = free_port();
    let other = Server::start_on(
        &env,
        port,
        &[
            "--oauth",
            "--public-url",
            &format!("https://localhost:{port}/mcp"),
            "--login-url",
            &format!("https://127.0.0.1:{port}"),
        ],
    );
    let ca = std::fs::read(env.home.join("ca.crt")).expect("ca");
    let anon = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca")])
        .build()
        .expect("client");
    let r = anon
        .post(format!("https://localhost:{}/mcp", other.port))
        .header("authorization", format!("Bearer {access}"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(INIT)
        .send()
        .await
        .expect("mcp");
    assert_eq!(r.status(), 401);
    let www = r.headers()["www-authenticate"]
        .to_str()
        .expect("www")
        .to_string();
    assert!(www.contains("another resource"), "{www}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_bound_token_is_refused_without_its_certificate() {
    let oa = Oa::start(env_with(&[("alice", "admin")]), "", &[]);
    let id = oa.client_id().await;
    let code = oa.code("alice", &id).await;
    // The token request comes over mTLS with alice's certificate: the tokens are bound to it.
    let r = oa
        .token(
            &oa.browser("alice"),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1:5555/cb"),
                ("client_id", &id),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let t: serde_json::Value = r.json().await.expect("json");
    let (status, www) = oa.init(t["access_token"].as_str().expect("access")).await;
    assert_eq!(status, 401);
    assert!(www.contains("certificate-bound"), "{www}");
    wait_audit(&oa.env, |v| {
        v["event"] == "code_exchanged"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("certificate-bound"))
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_consent_answers_and_framing_are_refused() {
    let oa = Oa::start(env_with(&[("alice", "admin"), ("bob", "viewer")]), "", &[]);
    let r = oa
        .register(serde_json::json!({
            "client_name": "<script>alert(1)</script>",
            "redirect_uris": ["http://127.0.0.1/cb"],
        }))
        .await;
    let id = r.json::<serde_json::Value>().await.expect("json")["client_id"]
        .as_str()
        .expect("id")
        .to_string();
    let page = oa
        .browser("alice")
        .get(oa.authorize_url(
            &id,
            &[
                ("code_challenge", &challenge(VERIFIER)),
                ("code_challenge_method", "S256"),
            ],
        ))
        .send()
        .await
        .expect("authorize");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text().await.expect("html");
    assert!(!html.contains("<script>"), "the client's name is escaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("self-registered, not verified"));
    let mut fields = hidden_fields(&html);
    fields.insert("decision".into(), "approve".into());
    // Another origin, no origin.
    for origin in [Some("https://evil.example"), Some("null"), None] {
        let r = oa.decide("alice", &fields, origin).await;
        assert_eq!(r.status(), 403, "{origin:?}");
        assert!(r.headers().get("location").is_none());
    }
    // No CSRF token, a wrong one, and alice's form answered with bob's certificate.
    let mut no_csrf = fields.clone();
    no_csrf.remove("csrf");
    assert_eq!(
        oa.decide("alice", &no_csrf, Some(&oa.login)).await.status(),
        403
    );
    let mut wrong = fields.clone();
    wrong.insert("csrf".into(), "AAAA".into());
    assert_eq!(
        oa.decide("alice", &wrong, Some(&oa.login)).await.status(),
        403
    );
    assert_eq!(
        oa.decide("bob", &fields, Some(&oa.login)).await.status(),
        403
    );
    // A role above the certificate's: refused. bob (viewer) asking for admin.
    let mut bob = oa.consent("bob", &id).await;
    bob.insert("decision".into(), "approve".into());
    bob.insert("role".into(), "admin".into());
    assert_eq!(oa.decide("bob", &bob, Some(&oa.login)).await.status(), 403);
    // The genuine answer works, with a narrower role.
    fields.insert("role".into(), "viewer".into());
    let r = oa.decide("alice", &fields, Some(&oa.login)).await;
    assert_eq!(r.status(), 303);
    wait_audit(&oa.env, |v| {
        v["event"] == "authorization_approved"
            && v["name"] == "alice"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("role viewer"))
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_keeps_allowed_redirects_and_a_flood_is_slowed() {
    let oa = Oa::start(env_with(&[]), "", &[]);
    let r = oa
        .register(serde_json::json!({
            "redirect_uris": [
                "https://vscode.dev/redirect",
                "http://127.0.0.1/",
                "cursor://anysphere.cursor-mcp/oauth/callback",
                "http://evil.example/cb",
                "javascript:alert(1)"
            ],
        }))
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        v["redirect_uris"],
        serde_json::json!([
            "https://vscode.dev/redirect",
            "http://127.0.0.1/",
            "cursor://anysphere.cursor-mcp/oauth/callback"
        ])
    );
    assert_eq!(v["token_endpoint_auth_method"], "none");
    let none = oa
        .register(serde_json::json!({"redirect_uris": ["http://evil.example/cb"]}))
        .await;
    assert_eq!(none.status(), 400);
    // Ten a minute per address; the rest get 429 (an address is slowed, never locked out).
    let mut limited = 0;
    for _ in 0..12 {
        let r = oa
            .register(serde_json::json!({"redirect_uris": ["http://127.0.0.1/cb"]}))
            .await;
        if r.status() == 429 {
            limited += 1;
        }
    }
    assert!(limited >= 3, "{limited} of 12 refused");
    wait_audit(&oa.env, |v| {
        v["event"] == "client_registration_refused"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("rate limited"))
    });
    // A deleted or unknown client at the token endpoint: 401 invalid_client.
    let r = oa
        .token(
            &oa.anon(),
            &[
                ("grant_type", "authorization_code"),
                ("code", "x"),
                ("client_id", "mzt_dcr_gone"),
            ],
        )
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["error"],
        "invalid_client"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_documents_that_point_inward_are_refused_before_any_connection() {
    let oa = Oa::start(env_with(&[("alice", "admin")]), "", &[]);
    let port = free_port();
    for (url, why) in [
        (
            format!("https://127.0.0.1:{port}/c.json"),
            "not a public address",
        ),
        (
            format!("https://127.0.0.2:{port}/c.json"),
            "not a public address",
        ),
        (
            format!("https://[::1]:{port}/c.json"),
            "not a public address",
        ),
        (
            format!("https://localhost:{port}/c.json"),
            "resolves to no public address",
        ),
    ] {
        let r = oa
            .browser("alice")
            .get(oa.authorize_url(&url, &[("code_challenge", &challenge(VERIFIER))]))
            .send()
            .await
            .expect("authorize");
        assert_eq!(r.status(), 400, "{url}");
        assert!(r.headers().get("location").is_none());
        let u = url.clone();
        wait_audit(&oa.env, move |v| {
            v["event"] == "cimd_refused"
                && v["client_id"] == u.as_str()
                && v["reason"].as_str().is_some_and(|r| r.contains(why))
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_register_list_and_revoke_through_the_running_server() {
    let oa = Oa::start(env_with(&[("alice", "admin")]), "", &[]);
    let out = oa
        .env
        .run(&[
            "oauth",
            "client",
            "add",
            "agent",
            "--redirect-uri",
            "http://127.0.0.1/cb",
            "--confidential",
        ])
        .ok()
        .to_string();
    assert!(out.contains("client_id agent"), "{out}");
    let secret_file = oa.env.home.join("oauth-clients/agent.secret");
    assert_eq!(crate::common::mode(&secret_file), 0o600);
    let secret = std::fs::read_to_string(&secret_file).expect("secret");
    let secret = secret.trim();
    assert!(!out.contains(secret), "the secret is never printed");
    let listed = oa.env.run(&["oauth", "clients", "--json"]).ok().to_string();
    let clients: serde_json::Value = serde_json::from_str(&listed).expect("json");
    assert_eq!(clients[0]["client_id"], "agent");
    assert_eq!(clients[0]["confidential"], true);
    assert!(!listed.contains(secret));

    // An operator-registered client's redirect is vouched for: errors go back to it.
    let r = oa
        .browser("alice")
        .get(oa.authorize_url("agent", &[]))
        .send()
        .await
        .expect("authorize");
    assert_eq!(r.status(), 303);
    let q = query_of(r.headers()["location"].to_str().expect("location"));
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(q["state"], "st");
    assert_eq!(q["iss"], oa.base, "RFC 9207 iss");

    // A confidential client must authenticate.
    let code = oa.code("alice", "agent").await;
    assert_eq!(oa.exchange("agent", &code).await.status(), 401);
    let code = oa.code("alice", "agent").await;
    let r = oa
        .anon()
        .post(format!("{}/token", oa.base))
        .basic_auth("agent", Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://127.0.0.1:5555/cb"),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), 200);
    let t: serde_json::Value = r.json().await.expect("json");
    let access = t["access_token"].as_str().expect("access");
    assert_eq!(oa.init(access).await.0, 200);

    let grants = oa
        .env
        .run(&["oauth", "grants", "--name", "alice", "--json"])
        .ok()
        .to_string();
    let grants: serde_json::Value = serde_json::from_str(&grants).expect("json");
    let live: Vec<&serde_json::Value> = grants
        .as_array()
        .expect("array")
        .iter()
        .filter(|g| g["client_id"] == "agent" && g["revoked"].is_null())
        .collect();
    assert_eq!(live.len(), 1, "{grants}");
    let table = oa.env.run(&["oauth", "grants"]).ok().to_string();
    assert!(
        table.contains("alice") && table.contains("active"),
        "{table}"
    );

    oa.env.run(&["oauth", "revoke", "--client", "agent"]).ok();
    let (status, www) = oa.init(access).await;
    assert_eq!(status, 401);
    assert!(www.contains("grant revoked"), "{www}");
    wait_audit(&oa.env, |v| {
        v["event"] == "grant_revoked" && v["client_id"] == "agent" && v["name"] == "alice"
    });
    let r = oa.env.run(&["oauth", "revoke", "nosuchgrant"]);
    r.fails_with("no grant matches");
}

/// A throwaway CA (`PREFIX-ca.crt`) and a leaf it signed for `sans` (`PREFIX.crt`,
/// `PREFIX.key`), made by openssl in the test's folder.
fn ca_and_leaf(env: &Env, prefix: &str, sans: &str) -> [std::path::PathBuf; 3] {
    use crate::common::openssl;
    let p = |n: &str| env.path(&format!("{prefix}{n}")).display().to_string();
    let subject = format!("/CN={prefix} test CA");
    for args in [
        vec![
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &subject,
            "-keyout",
            &p("-ca.key"),
            "-out",
            &p("-ca.crt"),
        ],
        vec![
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &p(".key"),
            "-out",
            &p(".csr"),
        ],
    ] {
        let (ok, out) = openssl(&args);
        assert!(ok, "{out}");
    }
    std::fs::write(
        p(".ext"),
        format!("subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"),
    )
    .expect("ext");
    let (ok, out) = openssl(&[
        "x509",
        "-req",
        "-in",
        &p(".csr"),
        "-CA",
        &p("-ca.crt"),
        "-CAkey",
        &p("-ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p(".ext"),
        "-out",
        &p(".crt"),
    ]);
    assert!(ok, "{out}");
    [p("-ca.crt").into(), p(".crt").into(), p(".key").into()]
}

/// A client metadata document server on loopback (`scripts/cimd_server.py`), with a
/// certificate from a throwaway CA: (its CA file, its port, the process).
fn document_server(env: &Env) -> (std::path::PathBuf, u16, crate::common::Killed) {
    let [ca, cert, key] = ca_and_leaf(env, "doc", "DNS:localhost,IP:127.0.0.1");
    let p = |n: &str| env.path(n).display().to_string();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cimd_server.py");
    let child = std::process::Command::new("python3")
        .arg(script)
        .arg(&cert)
        .arg(&key)
        .arg(p("doc.port"))
        .spawn()
        .expect("python3");
    let killed = crate::common::Killed(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let port = loop {
        if let Ok(s) = std::fs::read_to_string(env.path("doc.port")) {
            if let Ok(port) = s.trim().parse() {
                break port;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "document server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    (ca, port, killed)
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_documents_that_are_huge_endless_or_about_another_client_are_refused() {
    let env = env_with(&[("alice", "admin")]);
    let (ca, port, _server) = document_server(&env);
    let ca = ca.display().to_string();
    let oa = Oa::start(
        env,
        "",
        &["--oauth-allow-private-cimd", "--oauth-cimd-ca", &ca],
    );
    wait_audit(&oa.env, |v| v["event"] == "oauth_warning");
    let doc = |path: &str| format!("https://localhost:{port}/{path}");
    // The genuine document: the consent page names its host.
    let good = doc("client.json");
    let page = oa
        .browser("alice")
        .get(
            oa.authorize_url(
                &good,
                &[
                    ("code_challenge", &challenge(VERIFIER)),
                    ("code_challenge_method", "S256"),
                ],
            )
            // The document lists http://127.0.0.1/callback (any port).
            .replace("5555%2Fcb", "5555%2Fcallback"),
        )
        .send()
        .await
        .expect("authorize");
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .expect("html")
        .contains("(from localhost)"));
    for (path, why) in [
        ("big.json", "over 5120 bytes"),
        ("endless.json", "within 5s"),
        ("mismatch.json", "not its URL"),
        ("redirect.json", "not its URL"),
    ] {
        let url = doc(path);
        let started = std::time::Instant::now();
        let r = oa
            .browser("alice")
            .get(oa.authorize_url(&url, &[("code_challenge", &challenge(VERIFIER))]))
            .send()
            .await
            .expect("authorize");
        assert_eq!(r.status(), 400, "{path}");
        assert!(started.elapsed() < Duration::from_secs(8), "{path}");
        wait_audit(&oa.env, move |v| {
            v["event"] == "cimd_refused"
                && v["client_id"] == url.as_str()
                && v["reason"].as_str().is_some_and(|r| r.contains(why))
        });
    }
}

/// A client trusting only the CA in `ca` (no client certificate).
fn trusting(ca: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("ca");
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("ca")])
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_from_outside_is_served_for_the_public_names_and_reloaded() {
    let env = env_with(&[("alice", "admin")]);
    let sans = "DNS:localhost,IP:127.0.0.1";
    let [ca1, cert1, key1] = ca_and_leaf(&env, "web1", sans);
    let [ca2, cert2, key2] = ca_and_leaf(&env, "web2", sans);
    let cert = env.path("fullchain.pem");
    let key = env.path("privkey.pem");
    std::fs::copy(&cert1, &cert).expect("copy");
    std::fs::copy(&key1, &key).expect("copy");
    // A certificate that does not name the public names is refused at start.
    let [_, wrong, wrong_key] = ca_and_leaf(&env, "wrong", "DNS:elsewhere.example");
    let r = env.run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--oauth",
        "--public-url",
        "https://localhost:1/mcp",
        "--login-url",
        "https://127.0.0.1:1",
        "--tls-cert",
        &wrong.display().to_string(),
        "--tls-key",
        &wrong_key.display().to_string(),
    ]);
    r.fails_with("does not name localhost");
    let oa = Oa::start(
        env,
        "",
        &[
            "--tls-cert",
            &cert.display().to_string(),
            "--tls-key",
            &key.display().to_string(),
        ],
    );
    let meta = format!("{}/.well-known/oauth-authorization-server", oa.base);
    let r = trusting(&ca1).get(&meta).send().await.expect("web PKI");
    assert_eq!(
        r.status(),
        200,
        "the public name gets the outside certificate"
    );
    // mcp-zt's own clients on other names keep the CA-issued certificate (no SNI for an IP).
    let own = trusting(&oa.env.home.join("ca.crt"));
    assert_eq!(
        own.get(format!(
            "{}/.well-known/oauth-authorization-server",
            oa.login
        ))
        .send()
        .await
        .expect("own CA")
        .status(),
        200
    );
    // A renewal on disk is picked up.
    std::fs::copy(&cert2, &cert).expect("copy");
    std::fs::copy(&key2, &key).expect("copy");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if trusting(&ca2).get(&meta).send().await.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was not loaded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_audit(&oa.env, |v| v["event"] == "tls_certificate_loaded");
    // A bad file is refused; the certificate in force stays.
    std::fs::write(&cert, "not a certificate").expect("write");
    wait_audit(&oa.env, |v| v["event"] == "tls_certificate_refused");
    assert_eq!(
        trusting(&ca2)
            .get(&meta)
            .send()
            .await
            .expect("still served")
            .status(),
        200
    );
}
