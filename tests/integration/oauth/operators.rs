//! Operator commands through the running server, and a certificate from outside.

use std::time::Duration;

use super::*;
use crate::server_env::wait_audit;

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
