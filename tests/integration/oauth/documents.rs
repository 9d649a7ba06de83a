//! Client metadata documents: inward addresses, huge, endless, about another client.

use std::time::Duration;

use super::*;
use crate::server_env::wait_audit;

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
