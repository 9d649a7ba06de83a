//! The flow against hostile clients: PKCE, redirects, codes, refresh, tokens, consent.

use std::time::Duration;

use super::*;
use crate::server_env::{wait_audit, Server, INIT};

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
    // Browser-based clients (MCP Inspector) preflight the machine endpoints.
    for path in [
        "/token",
        "/register",
        "/.well-known/oauth-authorization-server",
    ] {
        let pre = oa
            .anon()
            .request(reqwest::Method::OPTIONS, format!("{}{path}", oa.base))
            .header("origin", "http://localhost:6274")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .expect("preflight");
        assert_eq!(pre.status(), 204, "{path}");
        assert_eq!(pre.headers()["access-control-allow-origin"], "*", "{path}");
    }
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
