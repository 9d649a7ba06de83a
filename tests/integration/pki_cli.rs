//! The PKI core through the CLI: ca init, issue, list, show, revoke, crl, roles.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::common::{
    chain_args, mode, openssl, signing_cert, signing_key, verify_client_cert, Env,
};

#[test]
fn issued_certificate_verifies_with_openssl_and_shows_its_extensions() {
    let env = Env::with_ca();
    let serial = env.issue("alice", "admin");
    assert_eq!(serial.len(), 32, "128-bit serial in hex: {serial}");
    let crt = env.home.join("clients/alice.crt");
    let (ok, text) = verify_client_cert(&env.home, &crt);
    assert!(ok && text.contains(": OK"), "{text}");
    let (ok, text) = openssl(&[
        "x509",
        "-in",
        crt.to_str().expect("utf8"),
        "-noout",
        "-text",
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(!text.contains("TLS Web Server Authentication"), "{text}");
    assert!(
        text.contains("URI:spiffe://mcp-zt.local/client/alice"),
        "{text}"
    );
    assert!(text.contains("Subject: CN = alice"), "{text}");
    assert!(text.contains("X509v3 Subject Key Identifier"), "{text}");
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
    // The role extension is present and non-critical (openssl prints ": critical" otherwise).
    let ext_line = text
        .lines()
        .find(|l| l.contains("2.25.2722895933408864092"))
        .unwrap_or_else(|| panic!("role extension missing: {text}"));
    assert!(!ext_line.contains("critical"), "{ext_line}");
    // Serial printed by openssl matches the ledger's.
    let (_, s) = openssl(&[
        "x509",
        "-in",
        crt.to_str().expect("utf8"),
        "-noout",
        "-serial",
    ]);
    assert_eq!(
        s.trim().trim_start_matches("serial=").to_lowercase(),
        serial
    );
}

#[test]
fn show_decodes_the_role_from_the_certificate() {
    let env = Env::with_ca();
    let serial = env.issue("carol", "editor");
    let out = env.run(&["show", &serial, "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.ok()).expect("json");
    assert_eq!(v[0]["decoded"]["role"], "editor");
    assert_eq!(v[0]["decoded"]["role_critical"], false);
    assert_eq!(v[0]["decoded"]["client_auth"], true);
    assert_eq!(v[0]["status"], "active");
    assert!(env
        .run(&["show", "carol"])
        .ok()
        .contains("role (decoded)     editor"));
}

#[test]
fn revoked_certificate_is_listed_in_a_crl_openssl_accepts() {
    let env = Env::with_ca();
    env.issue("alice", "viewer");
    let keep = env.issue("bob", "viewer");
    let out = env.run(&["revoke", "alice", "--reason", "key-compromise"]);
    out.ok();
    assert!(out.stderr.contains("revoked"), "{out:?}");
    // The CRL is signed by the intermediate that signed the certificates.
    let signer = signing_cert(&env.home);
    let crl = env.home.join("crl.pem");
    let (ok, text) = openssl(&[
        "crl",
        "-in",
        crl.to_str().expect("utf8"),
        "-CAfile",
        signer.to_str().expect("utf8"),
        "-noout",
    ]);
    assert!(ok && text.contains("verify OK"), "{text}");
    let verify = |name: &str| {
        let crt = env.home.join(format!("clients/{name}.crt"));
        let mut args = vec![
            "verify".to_string(),
            "-crl_check".into(),
            "-CRLfile".into(),
            crl.to_str().expect("utf8").into(),
        ];
        args.extend(chain_args(&env.home));
        args.push(crt.to_str().expect("utf8").into());
        openssl(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (ok, text) = verify("alice");
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    let (ok, text) = verify("bob");
    assert!(ok, "bob {keep} must still verify: {text}");
    let (_, text) = openssl(&["crl", "-in", crl.to_str().expect("utf8"), "-noout", "-text"]);
    assert!(text.contains("Key Compromise"), "{text}");
    let list = env.list();
    let alice = list.iter().find(|c| c["name"] == "alice").expect("alice");
    assert_eq!(alice["status"], "revoked");
    assert_eq!(alice["revocation_reason"], "key-compromise");
}

#[test]
fn second_revoke_says_already_revoked_and_crl_number_only_grows() {
    let env = Env::with_ca();
    let serial = env.issue("alice", "viewer");
    let crl_number = || {
        let crl = env.home.join("crl.pem");
        let (_, text) = openssl(&[
            "crl",
            "-in",
            crl.to_str().expect("utf8"),
            "-noout",
            "-crlnumber",
        ]);
        u64::from_str_radix(text.trim().trim_start_matches("crlNumber=0x"), 16).expect("number")
    };
    let first = crl_number();
    env.run(&["revoke", &serial]).ok();
    let second = crl_number();
    assert!(second > first, "{first} -> {second}");
    env.run(&["revoke", &serial]).fails_with("already revoked");
    env.run(&["revoke", "alice"]).fails_with("already revoked");
    assert_eq!(crl_number(), second, "a refused revoke publishes nothing");
    env.run(&["revoke", "nobody"])
        .fails_with("no certificate matches");
    // `crl` prints the current CRL; re-running it does not lower the number.
    let printed = env.run(&["crl"]);
    assert!(printed.ok().contains("BEGIN X509 CRL"));
    assert!(crl_number() >= second);
}

#[test]
fn revoking_a_name_revokes_all_its_active_certificates() {
    let env = Env::with_ca();
    let a1 = env.issue("alice", "viewer");
    let a2 = env.issue("alice", "editor");
    let b = env.issue("bob", "viewer");
    let out = env.run(&["revoke", "alice", "--json"]);
    let revoked: Vec<serde_json::Value> = serde_json::from_str(out.ok()).expect("json");
    let got: BTreeSet<&str> = revoked
        .iter()
        .filter_map(|r| r["serial"].as_str())
        .collect();
    assert_eq!(got, BTreeSet::from([a1.as_str(), a2.as_str()]));
    let list = env.list();
    let status = |s: &str| {
        list.iter()
            .find(|c| c["serial"] == s)
            .map(|c| c["status"].clone())
    };
    assert_eq!(status(&b), Some("active".into()));
}

#[test]
fn ca_init_twice_fails_and_leaves_the_key_untouched() {
    let env = Env::with_ca();
    let key = signing_key(&env.home);
    let before = fs::read(&key).expect("key");
    env.run(&["ca", "init"]).fails_with("already exists");
    assert_eq!(fs::read(&key).expect("key"), before);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&env.home), 0o700);
    env.issue("alice", "viewer");
    assert_eq!(mode(&env.home.join("clients/alice.key")), 0o600);
    assert_eq!(mode(&env.home.join("clients")), 0o700);
}

#[test]
fn unknown_role_is_refused_naming_the_valid_roles_and_records_nothing() {
    let env = Env::with_ca();
    env.issue("alice", "viewer");
    let before = env.list();
    env.run(&["issue", "--role", "nosuchrole", "--name", "x"])
        .fails_with("admin, editor, viewer");
    assert_eq!(env.list(), before);
    assert!(!env.home.join("clients/x.key").exists());
}

#[test]
fn parallel_issues_on_one_home_all_succeed_with_distinct_serials() {
    let env = Env::with_ca();
    let spawned: Vec<_> = (0..8)
        .map(|i| {
            std::process::Command::new(crate::common::bin())
                .arg("--home")
                .arg(&env.home)
                .args(["issue", "--role", "viewer", "--name", &format!("q{i}")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut serials = BTreeSet::new();
    for child in spawned {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serials.insert(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    assert_eq!(serials.len(), 8);
    let listed: BTreeSet<String> = env
        .list()
        .iter()
        .filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with('q')))
        .filter_map(|c| c["serial"].as_str().map(str::to_string))
        .collect();
    assert_eq!(listed, serials);
}

#[test]
fn bad_input_gets_one_clear_error_line_and_writes_nothing() {
    let env = Env::new();
    let missing = env.path("does-not-exist");
    env.run_in(&missing, &["list"]).fails_with("no CA in");
    env.run_in(&missing, &["issue", "--role", "admin", "--name", "a"])
        .fails_with("ca init");
    assert!(!missing.exists(), "a failed command must not create HOME");
    let no_ca = env.path("empty");
    fs::create_dir(&no_ca).expect("mkdir");
    env.run_in(&no_ca, &["revoke", "alice"])
        .fails_with("no CA in");

    env.run(&["ca", "init"]).ok();
    let before = env.list();
    for name in ["../evil", "a/b", "a\u{1}b", ".hidden", ""] {
        env.run(&["issue", "--role", "admin", "--name", name])
            .fails_with("invalid name");
    }
    env.run(&["issue", "--role", "admin", "--name", "x", "--ttl", "4000d"])
        .fails_with("TTL too long");
    env.run(&["issue", "--role", "admin", "--name", "x", "--ttl", "soon"])
        .fails_with("invalid TTL");
    env.run(&[
        "issue",
        "--role",
        "admin",
        "--name",
        "x",
        "--san",
        "not a host",
    ])
    .fails_with("invalid SAN");
    assert_eq!(env.list(), before, "refused requests record nothing");
    assert!(!env.home.join("clients").exists());

    let key = signing_key(&env.home);
    let good = fs::read(&key).expect("key");
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).expect("chmod");
        env.run(&["issue", "--role", "admin", "--name", "x"])
            .fails_with("chmod 600");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .expect("corrupt");
    env.run(&["issue", "--role", "admin", "--name", "x"])
        .fails_with("corrupt key");
    // A valid key that is not the CA's is refused too.
    let other = Env::with_ca();
    fs::write(&key, fs::read(signing_key(&other.home)).expect("other key")).expect("swap");
    env.run(&["issue", "--role", "admin", "--name", "x"])
        .fails_with("does not belong to");
    fs::write(&key, good).expect("restore");
    env.issue("x", "admin");
}

#[test]
fn encrypted_ca_key_needs_the_right_passphrase() {
    let env = Env::new();
    let pass = env.secret_file("pass", "correct horse battery staple\n");
    let wrong = env.secret_file("wrong", "hunter2 is wrong\n");
    let p = pass.to_str().expect("utf8");
    // A passphrase file others may read is refused, and so is a short passphrase.
    let loose = env.path("loose");
    fs::write(&loose, "correct horse battery staple\n").expect("write");
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o644)).expect("chmod");
    env.run(&[
        "--passphrase-file",
        loose.to_str().expect("utf8"),
        "ca",
        "init",
    ])
    .fails_with("chmod 600");
    let short = env.secret_file("short", "hunter2\n");
    env.run(&[
        "--passphrase-file",
        short.to_str().expect("utf8"),
        "ca",
        "init",
    ])
    .fails_with("at least 12 characters");
    assert!(!env.home.join("ca.crt").exists());
    env.run(&["--passphrase-file", p, "ca", "init"]).ok();
    let key = signing_key(&env.home);
    // The intermediate's key and the root's are both encrypted.
    for k in [&key, &env.home.join("root.key")] {
        assert!(fs::read_to_string(k)
            .expect("key")
            .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    }
    let (ok, text) = openssl(&[
        "pkey",
        "-in",
        key.to_str().expect("utf8"),
        "-passin",
        &format!("file:{p}"),
        "-noout",
    ]);
    assert!(ok, "openssl reads the encrypted key: {text}");
    env.run(&["issue", "--role", "admin", "--name", "a"])
        .fails_with("is encrypted");
    env.run(&[
        "--passphrase-file",
        wrong.to_str().expect("utf8"),
        "issue",
        "--role",
        "admin",
        "--name",
        "a",
    ])
    .fails_with("wrong passphrase");
    env.run(&[
        "--passphrase-file",
        p,
        "issue",
        "--role",
        "admin",
        "--name",
        "a",
    ])
    .ok();
    // Listing needs no key.
    assert_eq!(env.list().len(), 1);
}

#[test]
fn role_oid_choice_is_recorded_and_used() {
    let env = Env::new();
    env.run(&["ca", "init", "--role-oid", "1.3.6.1.4.1.55555.7.1"])
        .ok();
    env.issue("alice", "viewer");
    let crt = env.home.join("clients/alice.crt");
    let (_, text) = openssl(&[
        "x509",
        "-in",
        crt.to_str().expect("utf8"),
        "-noout",
        "-text",
    ]);
    assert!(text.contains("1.3.6.1.4.1.55555.7.1"), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(env.run(&["show", "alice", "--json"]).ok()).expect("json");
    assert_eq!(v[0]["decoded"]["role"], "viewer");
    env.run_in(&env.path("h2"), &["ca", "init", "--role-oid", "1.2.x"])
        .fails_with("invalid OID");
}

#[test]
fn roles_lists_the_hierarchy() {
    let env = Env::with_ca();
    let v: serde_json::Value =
        serde_json::from_str(env.run(&["roles", "--json"]).ok()).expect("json");
    let admin = v
        .as_array()
        .and_then(|a| a.iter().find(|r| r["role"] == "admin"))
        .expect("admin");
    assert_eq!(admin["inherits"], serde_json::json!(["editor"]));
    assert_eq!(
        admin["effective"],
        serde_json::json!(["admin", "editor", "viewer"])
    );
}
