//! Renewal cannot outlive revocation: chains are revoked whole, renewal is bounded in time and
//! rate, and a lost renewal answer can be fetched again with the same key.

use std::path::Path;

use crate::common::{openssl, Env};
use crate::server_env::{client_of, http_client, post, wait_audit, Server, INIT};

fn status_of(env: &Env, serial: &str) -> String {
    env.list()
        .iter()
        .find(|c| c["serial"] == serial)
        .map(|c| c["status"].as_str().unwrap_or("?").to_string())
        .unwrap_or_else(|| panic!("{serial} not listed"))
}

/// Issues NAME with a short lifetime, so that renewal is open at once.
fn issue_short(env: &Env, name: &str, role: &str) -> String {
    env.run(&["issue", "--role", role, "--name", name, "--ttl", "20s"])
        .ok()
        .trim()
        .to_string()
}

/// A P-256 key and a CSR for it, made by openssl (nobody's code but openssl's).
fn openssl_csr(env: &Env, stem: &str) -> (std::path::PathBuf, String) {
    let key = env.path(&format!("{stem}.key"));
    let k = key.to_str().expect("utf8");
    let (ok, text) = openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        k,
    ]);
    assert!(ok, "{text}");
    let (ok, csr) = openssl(&["req", "-new", "-key", k, "-subj", "/CN=renewal"]);
    assert!(ok, "{csr}");
    (key, csr)
}

async fn try_post_csr(
    client: &reqwest::Client,
    server: &Server,
    csr: &str,
) -> reqwest::Result<(u16, String)> {
    let resp = client
        .post(format!("https://localhost:{}/renew", server.port))
        .body(csr.to_string())
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?))
}

async fn post_csr(client: &reqwest::Client, server: &Server, csr: &str) -> (u16, String) {
    try_post_csr(client, server, csr)
        .await
        .expect("POST /renew")
}

fn serial_of_pem(pem_path: &Path) -> String {
    let (ok, text) = openssl(&[
        "x509",
        "-in",
        pem_path.to_str().expect("utf8"),
        "-noout",
        "-serial",
    ]);
    assert!(ok, "{text}");
    text.trim().trim_start_matches("serial=").to_lowercase()
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_the_original_serial_revokes_the_renewed_certificate_live() {
    let env = Env::with_ca();
    let a = issue_short(&env, "alice", "admin");
    let server = Server::start(&env, &["--lockout-threshold", "0"]);
    let cert = env.home.join("clients/alice.crt");
    let key = env.home.join("clients/alice.key");
    let b = env
        .run(&[
            "renew",
            &server.url(),
            "--cert",
            cert.to_str().expect("utf8"),
            "--key",
            key.to_str().expect("utf8"),
        ])
        .ok()
        .trim()
        .to_string();
    assert_ne!(a, b);
    // The renewed certificate is in use (which retires A as superseded)...
    let alice = client_of(&env, "alice");
    assert_eq!(post(&alice, &server, INIT).await.expect("B").status(), 200);
    // ...and the operator revokes the serial the audit log named first: A.
    let out = env.run(&["revoke", &a, "--reason", "key-compromise"]);
    let text = out.ok();
    assert!(
        text.contains(&b),
        "the revocation names the successor: {text}"
    );
    wait_audit(&env, |v| {
        v["event"] == "revocation_applied" && v["serial"] == b.as_str()
    });
    // The open connection of B is closed and B's next handshake is refused.
    assert!(post(&alice, &server, INIT).await.is_err());
    assert!(post(&client_of(&env, "alice"), &server, INIT)
        .await
        .is_err());
    assert_eq!(status_of(&env, &b), "revoked");
    // `show` tells the chain.
    let show = env.run(&["show", &b]);
    assert!(
        show.ok().contains(&format!("{:<18} {a}", "renewed from")),
        "{show:?}"
    );
    assert!(
        show.ok()
            .contains(&format!("{:<18} {a}", "chain began with")),
        "{show:?}"
    );
    // Nothing in the chain can be renewed any more.
    env.run(&["renew", &server.url(), "--name", "alice"])
        .fails_with("revoked");
    // The CRL lists both.
    let crl = std::fs::read_to_string(env.home.join("crl.pem")).expect("crl");
    let (ok, text) = crate::common::openssl_stdin(&["crl", "-noout", "-text"], &crl);
    assert!(ok, "{text}");
    for s in [&a, &b] {
        assert!(
            text.to_lowercase().contains(&s.to_lowercase()),
            "{s} not in {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_is_refused_too_early_too_often_and_past_the_chain_age() {
    let env = Env::with_ca();
    env.issue("bob", "viewer");
    let erin_a = issue_short(&env, "erin", "editor");
    {
        let server = Server::start(&env, &["--renewal-min-interval", "1h"]);
        // A fresh 24 h certificate: not inside the last third of its lifetime.
        env.run(&["renew", &server.url(), "--name", "bob"])
            .fails_with("too early");
        // Once, then the rate limit for that holder.
        env.run(&["renew", &server.url(), "--name", "erin"]).ok();
        env.run(&["renew", &server.url(), "--name", "erin"])
            .fails_with("was renewed less than 3600 s ago");
        wait_audit(&env, |v| {
            v["event"] == "renewal_refused"
                && v["reason"].as_str().is_some_and(|r| r.contains("retry in"))
        });
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let server = Server::start(
        &env,
        &[
            "--renewal-max-chain-age",
            "1s",
            "--renewal-window-percent",
            "100",
        ],
    );
    env.run(&["renew", &server.url(), "--name", "erin"])
        .fails_with("an operator must issue a new certificate");
    assert_eq!(
        env.list().iter().filter(|c| c["name"] == "erin").count(),
        2,
        "refusals record nothing"
    );
    // The first certificate was retired once its successor was used: the chain is intact.
    assert_eq!(status_of(&env, &erin_a), "superseded");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_renewal_answer_is_fetched_again_with_the_same_key() {
    let env = Env::with_ca();
    let a = issue_short(&env, "erin", "editor");
    let server = Server::start(&env, &[]);
    let erin = client_of(&env, "erin");
    let (key, csr) = openssl_csr(&env, "next");
    let (status, first) = post_csr(&erin, &server, &csr).await;
    assert_eq!(status, 200, "{first}");
    // The answer was lost: the same key asks again and gets the same certificate.
    let (status, again) = post_csr(&erin, &server, &csr).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(first, again);
    // Another key is refused: the certificate was renewed already.
    let (_, other_csr) = openssl_csr(&env, "other");
    let (status, text) = post_csr(&erin, &server, &other_csr).await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("already renewed"), "{text}");
    let erins = || env.list().iter().filter(|c| c["name"] == "erin").count();
    assert_eq!(erins(), 2);
    // The holder's bridge died after writing the new key: `renew` finds it as erin.key.next,
    // retries with it, and ends with the matching pair in place.
    let pending = env.home.join("clients/erin.key.next");
    std::fs::copy(&key, &pending).expect("copy");
    std::fs::set_permissions(
        &pending,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let serial = env
        .run(&["renew", &server.url(), "--name", "erin"])
        .ok()
        .trim()
        .to_string();
    let issued = env.path("first.crt");
    std::fs::write(&issued, &first).expect("write");
    assert_eq!(serial, serial_of_pem(&issued));
    assert!(!pending.exists());
    assert_eq!(
        std::fs::read(env.home.join("clients/erin.key")).expect("key"),
        std::fs::read(&key).expect("key")
    );
    assert_eq!(
        post(&client_of(&env, "erin"), &server, INIT)
            .await
            .expect("renewed pair works")
            .status(),
        200
    );
    assert_ne!(serial, a);
    assert_eq!(erins(), 2, "no third certificate was issued");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewal_racing_a_revocation_never_leaves_an_active_certificate() {
    let env = Env::with_ca();
    let server = Server::start(&env, &["--lockout-threshold", "0"]);
    for round in 0..4 {
        let name = format!("racer{round}");
        let first = issue_short(&env, &name, "viewer");
        let client = http_client(
            &env,
            Some((
                &env.home.join(format!("clients/{name}.crt")),
                &env.home.join(format!("clients/{name}.key")),
            )),
        );
        let (_, csr) = openssl_csr(&env, &name);
        let home = env.home.clone();
        let revoke = std::thread::spawn(move || {
            std::process::Command::new(crate::common::bin())
                .arg("--home")
                .arg(&home)
                .args(["revoke", &first, "--reason", "key-compromise"])
                .output()
                .expect("revoke")
        });
        // The revocation may close the connection under the request: the renewal lost.
        let renewal = try_post_csr(&client, &server, &csr).await;
        let revoked = revoke.join().expect("join");
        assert!(revoked.status.success(), "{revoked:?}");
        let chain: Vec<_> = env
            .list()
            .into_iter()
            .filter(|c| c["name"] == name.as_str())
            .collect();
        assert!(
            chain.iter().all(|c| c["status"] != "active"),
            "round {round}: renewal ({renewal:?}) survived the revocation: {chain:?}"
        );
    }
}
