//! Renewal, automatic renewal in `connect`, and PKCS#12 export.

use std::time::{Duration, Instant};

use crate::common::{openssl, verify_client_cert, Env};
use crate::server_env::{client_of, post, wait_audit, Server, INIT};

fn record<'a>(list: &'a [serde_json::Value], serial: &str) -> &'a serde_json::Value {
    list.iter()
        .find(|c| c["serial"] == serial)
        .unwrap_or_else(|| panic!("{serial} not in {list:?}"))
}

/// Polls `list --json` until `pred` holds (5 s at most).
fn wait_list(env: &Env, pred: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let list = env.list();
        if pred(&list) {
            return list;
        }
        assert!(Instant::now() < deadline, "condition not reached: {list:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn renew_gives_a_new_serial_with_the_same_identity_and_supersedes_the_old() {
    let env = Env::with_ca();
    // Short-lived, so that renewal is open at once (it opens in the last third of the lifetime).
    let old = env
        .run(&[
            "issue", "--role", "editor", "--name", "erin", "--ttl", "20s",
        ])
        .ok()
        .trim()
        .to_string();
    let server = Server::start(&env, &[]);
    let out = env.run(&["renew", &server.url(), "--name", "erin"]);
    let new = out.ok().trim().to_string();
    assert_ne!(new, old);
    assert_eq!(new.len(), 32);
    let list = env.list();
    let n = record(&list, &new);
    assert_eq!(n["name"], "erin");
    assert_eq!(n["role"], "editor");
    assert_eq!(n["status"], "active");
    assert_eq!(n["renewed_from"], old.as_str());
    assert_eq!(record(&list, &old)["superseded_by"], new.as_str());
    // The renewed certificate carries the role itself, and the files were replaced.
    let show: serde_json::Value =
        serde_json::from_str(env.run(&["show", &new, "--json"]).ok()).expect("json");
    assert_eq!(show[0]["decoded"]["role"], "editor");
    let (_, text) = openssl(&[
        "x509",
        "-in",
        env.home.join("clients/erin.crt").to_str().expect("utf8"),
        "-noout",
        "-serial",
    ]);
    assert_eq!(
        text.trim().trim_start_matches("serial=").to_lowercase(),
        new
    );
    // First use of the new certificate retires the old one.
    assert_eq!(
        post(&client_of(&env, "erin"), &server, INIT)
            .await
            .expect("new")
            .status(),
        200
    );
    let list = wait_list(&env, |l| record(l, &old)["status"] == "superseded");
    assert_eq!(record(&list, &new)["status"], "active");
    wait_audit(&env, |v| {
        v["event"] == "certificate_renewed" && v["name"] == "erin"
    });
    // The table shows it too.
    let plain = env.run(&["list"]);
    assert!(plain.ok().contains("superseded"), "{plain:?}");
}

#[test]
fn renewing_a_revoked_certificate_fails_clearly() {
    let env = Env::with_ca();
    env.issue("vic", "viewer");
    let server = Server::start(&env, &["--lockout-threshold", "0"]);
    env.run(&["revoke", "vic"]).ok();
    let out = env.run(&["renew", &server.url(), "--name", "vic"]);
    out.fails_with("certificate revoked");
    assert_eq!(env.list().iter().filter(|c| c["name"] == "vic").count(), 1);
}

#[test]
fn connect_renews_a_short_lived_certificate_by_itself() {
    let env = Env::with_ca();
    // 20 s of lifetime after a 60 s backdate: less than a third left, so due at once.
    env.run(&[
        "issue", "--role", "editor", "--name", "erin", "--ttl", "20s",
    ])
    .ok();
    let old = env.list()[0]["serial"]
        .as_str()
        .expect("serial")
        .to_string();
    let server = Server::start(&env, &[]);
    let mut child = std::process::Command::new(crate::common::bin())
        .arg("--home")
        .arg(&env.home)
        .args(["connect", "--name", "erin", &server.url()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("connect");
    {
        use std::io::{BufRead, Write};
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "{INIT}").expect("write");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        assert!(line.contains("\"serverInfo\""), "{line}");
        let list = wait_list(&env, |l| {
            l.iter()
                .any(|c| c["status"] == "superseded" && c["serial"] == old.as_str())
        });
        let renewed = list
            .iter()
            .find(|c| c["renewed_from"] == old.as_str())
            .expect("renewed certificate");
        assert_eq!(renewed["status"], "active");
        assert_eq!(renewed["role"], "editor");
        drop(stdin);
    }
    let _ = child.wait();
}

#[test]
fn pkcs12_bundle_is_readable_by_openssl_and_verifies_against_the_ca() {
    let env = Env::with_ca();
    let pass = env.secret_file("p12pass", "correct horse battery\n");
    let p = pass.to_str().expect("utf8");
    env.run(&[
        "issue",
        "--role",
        "admin",
        "--name",
        "alice",
        "--p12",
        "--p12-password-file",
        p,
    ])
    .ok();
    let bundle = env.home.join("clients/alice.p12");
    assert_eq!(crate::common::mode(&bundle), 0o600);
    let b = bundle.to_str().expect("utf8");
    let (ok, text) = openssl(&[
        "pkcs12",
        "-in",
        b,
        "-info",
        "-passin",
        &format!("file:{p}"),
        "-noout",
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("AES-256-CBC"), "{text}");
    let (ok, pem) = openssl(&[
        "pkcs12",
        "-in",
        b,
        "-passin",
        &format!("file:{p}"),
        "-clcerts",
        "-nokeys",
    ]);
    assert!(ok, "{pem}");
    let extracted = env.path("extracted.pem");
    std::fs::write(&extracted, pem).expect("write");
    let (ok, text) = verify_client_cert(&env.home, &extracted);
    assert!(ok && text.contains(": OK"), "{text}");
    let wrong = env.path("wrong");
    std::fs::write(&wrong, "not the password\n").expect("write");
    let (ok, _) = openssl(&[
        "pkcs12",
        "-in",
        b,
        "-info",
        "-passin",
        &format!("file:{}", wrong.to_str().expect("utf8")),
        "-noout",
    ]);
    assert!(!ok, "a wrong password must not open the bundle");
    // export writes the same kind of bundle; short passwords are refused.
    let out = env.path("alice2.p12");
    env.run(&[
        "export",
        "--p12",
        "alice",
        "--p12-password-file",
        p,
        "--out",
        out.to_str().expect("utf8"),
    ])
    .ok();
    assert!(out.exists());
    let short = env.secret_file("short", "short\n");
    env.run(&[
        "export",
        "--p12",
        "alice",
        "--p12-password-file",
        short.to_str().expect("utf8"),
    ])
    .fails_with("at least 8 characters");
}
