//! The PKI hierarchy: an offline root, rotation of the intermediate while the server runs, and
//! certificates of a foreign CA mapped to roles by the policy's trust rules.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{mode, openssl, verify_client_cert, Env};
use crate::server_env::{
    audit_len, client_of, http_client, post, wait_audit, wait_audit_after, Server, INIT,
};

/// Every file named `name` under `dir`.
fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(find_named(&p, name));
            } else if p.file_name().is_some_and(|n| n == name) {
                out.push(p);
            }
        }
    }
    out
}

/// The certificate blocks of a PEM file.
fn pem_blocks(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("pem");
    text.split_inclusive("-----END CERTIFICATE-----\n")
        .filter(|b| b.contains("BEGIN CERTIFICATE"))
        .map(str::to_string)
        .collect()
}

fn issuer_of(path: &Path) -> String {
    let (ok, text) = openssl(&[
        "x509",
        "-in",
        path.to_str().expect("utf8"),
        "-noout",
        "-issuer",
    ]);
    assert!(ok, "{text}");
    text.trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_root_rotation_keeps_old_clients_and_revocation_still_cuts_them() {
    let env = Env::new();
    let offline = env.path("offline");
    let out = env.run(&[
        "ca",
        "init",
        "--offline-root",
        offline.to_str().expect("utf8"),
    ]);
    out.ok();
    assert!(out.stderr.contains("store it offline"), "{out:?}");
    assert!(
        find_named(&env.home, "root.key").is_empty(),
        "no root key under HOME"
    );
    assert_eq!(mode(&offline.join("root.key")), 0o600);
    assert!(env.run(&["doctor"]).stdout.contains("root key offline"));

    env.issue("alice", "admin");
    let old_intermediate = pem_blocks(&env.home.join("intermediate.crt"));
    assert_eq!(
        pem_blocks(&env.home.join("clients/alice.crt"))[1],
        old_intermediate[0]
    );
    let (ok, text) = verify_client_cert(&env.home, &env.home.join("clients/alice.crt"));
    assert!(ok, "{text}");

    let server = Server::start(&env, &["--lockout-threshold", "0"]);
    let alice = client_of(&env, "alice");
    assert_eq!(
        post(&alice, &server, INIT).await.expect("alice").status(),
        200
    );

    // Rotation while the server runs and alice holds a connection.
    let before = audit_len(&env);
    let root_key = offline.join("root.key");
    env.run(&[
        "ca",
        "rotate",
        "--root-key",
        root_key.to_str().expect("utf8"),
    ])
    .ok();
    wait_audit_after(&env, before, |v| v["event"] == "intermediate_rotated");
    let new_intermediate = pem_blocks(&env.home.join("intermediate.crt"));
    assert_ne!(new_intermediate, old_intermediate);
    // The server takes a certificate from the new intermediate.
    wait_audit_after(&env, before, |v| v["event"] == "server_cert_renewed");

    // The old client keeps working, on its open connection and on a new one.
    assert_eq!(
        post(&alice, &server, INIT).await.expect("alice").status(),
        200
    );
    assert_eq!(
        post(&client_of(&env, "alice"), &server, INIT)
            .await
            .expect("alice again")
            .status(),
        200
    );
    // A new certificate comes from the new intermediate and works.
    env.issue("bob", "viewer");
    let bob_file = env.home.join("clients/bob.crt");
    assert_eq!(pem_blocks(&bob_file)[1], new_intermediate[0]);
    assert_ne!(
        issuer_of(&bob_file),
        issuer_of(&env.home.join("clients/alice.crt"))
    );
    assert_eq!(
        post(&client_of(&env, "bob"), &server, INIT)
            .await
            .expect("bob")
            .status(),
        200
    );

    // Revoking the old client still cuts it live, and its own intermediate's CRL lists it.
    let serial = env
        .list()
        .iter()
        .find(|c| c["name"] == "alice")
        .and_then(|c| c["serial"].as_str().map(str::to_string))
        .expect("alice");
    env.run(&["revoke", "alice"]).ok();
    wait_audit(&env, |v| {
        v["event"] == "revocation_applied" && v["serial"] == serial.as_str()
    });
    assert!(post(&alice, &server, INIT).await.is_err());
    assert!(post(&client_of(&env, "alice"), &server, INIT)
        .await
        .is_err());
    let crls: Vec<PathBuf> = std::fs::read_dir(env.home.join("intermediates"))
        .expect("intermediates")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crl"))
        .collect();
    assert_eq!(crls.len(), 2, "one CRL per intermediate: {crls:?}");
    let listing: Vec<bool> = crls
        .iter()
        .map(|c| {
            let (ok, text) = openssl(&["crl", "-in", c.to_str().expect("utf8"), "-noout", "-text"]);
            assert!(ok, "{text}");
            text.to_lowercase().contains(&serial)
        })
        .collect();
    assert_eq!(listing.iter().filter(|x| **x).count(), 1, "{crls:?}");
    // bob is untouched.
    assert_eq!(
        post(&client_of(&env, "bob"), &server, INIT)
            .await
            .expect("bob")
            .status(),
        200
    );
}

#[test]
fn rotation_refuses_a_wrong_root_key_and_single_ca_homes() {
    let env = Env::with_ca();
    let other = Env::with_ca();
    let before = std::fs::read(env.home.join("intermediate.crt")).expect("intermediate");
    env.run(&[
        "ca",
        "rotate",
        "--root-key",
        other.home.join("root.key").to_str().expect("utf8"),
    ])
    .fails_with("is not the root key");
    assert_eq!(
        std::fs::read(env.home.join("intermediate.crt")).expect("intermediate"),
        before
    );
    // With the root key in HOME, a plain `ca rotate` finds it.
    env.run(&["ca", "rotate"]).ok();
    assert_ne!(
        std::fs::read(env.home.join("intermediate.crt")).expect("intermediate"),
        before
    );
    env.issue("carol", "viewer");
    let (ok, text) = verify_client_cert(&env.home, &env.home.join("clients/carol.crt"));
    assert!(ok, "{text}");
    assert!(env
        .run(&["doctor"])
        .stdout
        .contains("2 intermediate(s) made"));

    // A single-CA home (the layout before hierarchies) keeps working and cannot rotate.
    let single = Env::new();
    single.run(&["ca", "init", "--single"]).ok();
    assert!(single.home.join("ca.key").exists());
    assert!(!single.home.join("intermediate.crt").exists());
    single.issue("dan", "viewer");
    let (ok, text) = verify_client_cert(&single.home, &single.home.join("clients/dan.crt"));
    assert!(ok, "{text}");
    assert!(single.run(&["doctor"]).stdout.contains("single CA"));
    single.run(&["ca", "rotate"]).fails_with("single CA");
}

/// A corporate CA made with rcgen: its certificate, key and a CRL maker.
struct Corp {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

impl Corp {
    fn new() -> Corp {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "Example Corp Root");
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example Corp");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = p.self_signed(&key).expect("root");
        let pem = cert.pem();
        Corp {
            issuer: rcgen::Issuer::new(p, key),
            pem,
        }
    }

    /// A client certificate with these subject fields and URI SANs; returns (cert, key, serial).
    fn leaf(
        &self,
        dir: &Path,
        file: &str,
        dn: &[(rcgen::DnType, &str)],
        uris: &[&str],
        role_ext: bool,
    ) -> (PathBuf, PathBuf, Vec<u8>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        for (t, v) in dn {
            p.distinguished_name.push(t.clone(), *v);
        }
        p.subject_alt_names = uris
            .iter()
            .map(|u| rcgen::SanType::URI((*u).try_into().expect("uri")))
            .collect();
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let serial = mcp_zt::pki::random_serial().expect("serial").to_vec();
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        if role_ext {
            let mut ext = rcgen::CustomExtension::from_oid_content(
                mcp_zt::pki::role_ext::DEFAULT_ROLE_OID,
                mcp_zt::pki::role_ext::encode("admin").expect("encode"),
            );
            ext.set_criticality(false);
            p.custom_extensions.push(ext);
        }
        let cert = p.signed_by(&key, &self.issuer).expect("leaf");
        let (c, k) = (
            dir.join(format!("{file}.crt")),
            dir.join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        (c, k, serial)
    }

    /// A CRL listing `serials`, valid for `secs` seconds.
    fn crl(&self, serials: &[&[u8]], secs: i64, number: u64) -> String {
        let now = time::OffsetDateTime::now_utc();
        rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::seconds(5),
            next_update: now + time::Duration::seconds(secs),
            crl_number: rcgen::SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from_slice(s),
                    revocation_time: now,
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .expect("crl")
        .pem()
        .expect("pem")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_certificates_get_roles_from_rules_and_their_crl_cuts_them_live() {
    use rcgen::DnType;
    let env = Env::with_ca();
    let corp = Corp::new();
    let dir = env.dir.path();
    std::fs::write(env.home.join("corp-ca.pem"), &corp.pem).expect("ca");
    let first_crl = corp.crl(&[], 86_400, 1);
    std::fs::write(env.home.join("corp.crl"), &first_crl).expect("crl");
    let mut policy = std::fs::read_to_string(env.home.join("policy.toml")).expect("policy");
    policy.push_str(
        r#"
[trust.corp]
ca = "corp-ca.pem"
crl = "corp.crl"
crl_grace = "0s"
[[trust.corp.roles]]
role = "admin"
match = { ou = "sre", o = "Example Corp" }
[[trust.corp.roles]]
role = "viewer"
match = { san_uri = "spiffe://corp.example/*" }
"#,
    );
    std::fs::write(env.home.join("policy.toml"), policy).expect("policy");

    let sam = corp.leaf(
        dir,
        "sam",
        &[
            (DnType::OrganizationName, "Example Corp"),
            (DnType::OrganizationalUnitName, "sre"),
            (DnType::CommonName, "sam"),
        ],
        &[],
        false,
    );
    let api = corp.leaf(
        dir,
        "api",
        &[(DnType::CommonName, "api")],
        &["spiffe://corp.example/ns/prod/sa/api"],
        false,
    );
    let mia = corp.leaf(
        dir,
        "mia",
        &[
            (DnType::OrganizationName, "Example Corp"),
            (DnType::OrganizationalUnitName, "marketing"),
            (DnType::CommonName, "mia"),
        ],
        &[],
        false,
    );
    let mallory = corp.leaf(
        dir,
        "mallory",
        &[(DnType::CommonName, "mallory")],
        &["spiffe://other.example/mallory"],
        true,
    );
    let server = Server::start(&env, &["--lockout-threshold", "0"]);
    let client = |c: &(PathBuf, PathBuf, Vec<u8>)| http_client(&env, Some((&c.0, &c.1)));

    let sam_client = client(&sam);
    assert_eq!(
        post(&sam_client, &server, INIT)
            .await
            .expect("sam")
            .status(),
        200
    );
    let ok = wait_audit(&env, |v| {
        v["event"] == "handshake_ok" && v["name"] == "corp:sam"
    });
    assert_eq!(ok["role"], "admin");
    assert!(
        ok["serial"]
            .as_str()
            .is_some_and(|s| s.starts_with("corp:")),
        "{ok}"
    );
    assert_eq!(
        post(&client(&api), &server, INIT)
            .await
            .expect("api")
            .status(),
        200
    );
    let ok = wait_audit(&env, |v| {
        v["event"] == "handshake_ok" && v["name"] == "corp:spiffe://corp.example/ns/prod/sa/api"
    });
    assert_eq!(ok["role"], "viewer");
    // mcp-zt's CA never renews a foreign certificate.
    let renew = client(&api)
        .post(format!("https://localhost:{}/renew", server.port))
        .body("-----BEGIN CERTIFICATE REQUEST-----\n")
        .send()
        .await
        .expect("renew");
    assert_eq!(renew.status(), 403);

    // No rule matches: refused; a role extension claiming admin changes nothing; and a SPIFFE
    // ID in mcp-zt's own trust domain is refused even when a rule matches.
    let imposter = corp.leaf(
        dir,
        "imposter",
        &[
            (DnType::OrganizationName, "Example Corp"),
            (DnType::OrganizationalUnitName, "sre"),
            (DnType::CommonName, "alice"),
        ],
        &["spiffe://mcp-zt.local/client/alice"],
        false,
    );
    for (who, why) in [
        (&mia, "no role rule"),
        (&mallory, "no role rule"),
        (&imposter, "own trust domain"),
    ] {
        let before = audit_len(&env);
        assert!(post(&client(who), &server, INIT).await.is_err());
        wait_audit_after(&env, before, |v| {
            v["event"] == "handshake_rejected"
                && v["reason"].as_str().is_some_and(|r| r.contains(why))
        });
    }

    // The corporate CRL now lists sam: the open connection is cut, new handshakes refused.
    let before = audit_len(&env);
    std::fs::write(env.home.join("corp.crl"), corp.crl(&[&sam.2], 86_400, 2)).expect("crl");
    wait_audit_after(&env, before, |v| {
        v["event"] == "revocation_applied"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("trust \"corp\""))
    });
    assert!(post(&sam_client, &server, INIT).await.is_err());
    let before = audit_len(&env);
    assert!(post(&client(&sam), &server, INIT).await.is_err());
    wait_audit_after(&env, before, |v| {
        v["event"] == "handshake_rejected"
            && v["reason"].as_str().is_some_and(|r| r.contains("revoked"))
    });
    assert_eq!(
        post(&client(&api), &server, INIT)
            .await
            .expect("api")
            .status(),
        200
    );
    // The first, older CRL served again cannot un-revoke sam.
    let before = audit_len(&env);
    std::fs::write(env.home.join("corp.crl"), &first_crl).expect("crl");
    wait_audit_after(&env, before, |v| {
        v["event"] == "crl_refused" && v["reason"].as_str().is_some_and(|r| r.contains("older"))
    });
    assert!(post(&client(&sam), &server, INIT).await.is_err());
    std::fs::write(env.home.join("corp.crl"), corp.crl(&[&sam.2], 86_400, 3)).expect("crl");

    // A CRL that goes stale (grace 0 s) refuses every new handshake of the trust, and every
    // request on a connection it admitted before.
    let api_client = client(&api);
    assert_eq!(
        post(&api_client, &server, INIT)
            .await
            .expect("api")
            .status(),
        200
    );
    let before = audit_len(&env);
    std::fs::write(env.home.join("corp.crl"), corp.crl(&[&sam.2], 3, 4)).expect("crl");
    wait_audit_after(&env, before, |v| v["event"] == "trust_loaded");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let open = post(&api_client, &server, INIT).await;
    assert!(
        open.map_or(true, |r| r.status() == 403),
        "stale CRL, open connection"
    );
    let before = audit_len(&env);
    assert!(post(&client(&api), &server, INIT).await.is_err());
    wait_audit_after(&env, before, |v| {
        v["event"] == "handshake_rejected"
            && v["reason"].as_str().is_some_and(|r| r.contains("stale"))
    });
    // mcp-zt's own certificates are not affected.
    env.issue("alice", "viewer");
    assert_eq!(
        post(&client_of(&env, "alice"), &server, INIT)
            .await
            .expect("alice")
            .status(),
        200
    );
    // doctor says the same once the server is gone.
    drop(server);
    let out = env.run(&["doctor"]);
    assert!(out.stdout.contains("its CRL is stale"), "{out:?}");
}

/// A client of `name` that trusts only the roots in `roots_pem`.
fn client_trusting(env: &Env, roots_pem: &[u8], name: &str) -> reqwest::Client {
    let dir = env.home.join("clients");
    let mut pem = std::fs::read(dir.join(format!("{name}.crt"))).expect("cert");
    pem.extend(std::fs::read(dir.join(format!("{name}.key"))).expect("key"));
    reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(roots_pem).expect("roots"))
        .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread")]
async fn root_rollover_keeps_clients_of_the_old_root_working_through_the_cross_certificate() {
    let env = Env::with_ca();
    let old_root = std::fs::read(env.home.join("ca.crt")).expect("root");
    env.issue("alice", "admin");
    let server = Server::start(&env, &["--lockout-threshold", "0"]);

    let before = audit_len(&env);
    env.run(&["ca", "rotate", "--root"]).ok();
    wait_audit_after(&env, before, |v| v["event"] == "server_cert_renewed");
    let both = std::fs::read(env.home.join("ca.crt")).expect("roots");
    assert_eq!(pem_blocks(&env.home.join("ca.crt")).len(), 2);
    assert!(!env.home.join("root.key.next").exists());
    // A client that trusts only the old root reaches the server through the cross
    // certificate; one with the new ca.crt as well; old and new client certificates work.
    env.issue("bob", "viewer");
    for (roots, who) in [
        (&old_root, "alice"),
        (&both, "alice"),
        (&old_root, "bob"),
        (&both, "bob"),
    ] {
        let status = post(&client_trusting(&env, roots, who), &server, INIT)
            .await
            .expect("connect")
            .status();
        assert_eq!(status, 200, "{who}");
    }
    let (ok, text) = verify_client_cert(&env.home, &env.home.join("clients/bob.crt"));
    assert!(ok, "{text}");

    // Finished: ca.crt is the new root alone, and clients that trust only it connect.
    let before = audit_len(&env);
    env.run(&["ca", "rotate", "--root", "--finish"]).ok();
    wait_audit_after(&env, before, |v| v["event"] == "server_cert_renewed");
    let new_root = std::fs::read(env.home.join("ca.crt")).expect("root");
    assert_eq!(pem_blocks(&env.home.join("ca.crt")).len(), 1);
    assert_ne!(new_root, old_root);
    for who in ["alice", "bob"] {
        let status = post(&client_trusting(&env, &new_root, who), &server, INIT)
            .await
            .expect("connect")
            .status();
        assert_eq!(status, 200, "{who}");
    }
    env.run(&["ca", "rotate", "--root", "--finish"])
        .fails_with("no rollover is in progress");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_imported_intermediate_signs_for_the_corporate_root_and_bad_imports_are_refused() {
    let env = Env::new();
    let corp = Corp::new();
    let dir = env.dir.path();
    // An intermediate for mcp-zt, twenty days left: shorter than the server certificate's
    // usual thirty, which must then end with it.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "Example Corp mcp-zt CA");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(20);
    let inter = p.signed_by(&key, &corp.issuer).expect("intermediate");
    let chain = dir.join("chain.pem");
    std::fs::write(&chain, format!("{}{}", inter.pem(), corp.pem)).expect("chain");
    let key_file = dir.join("int.key");
    std::fs::write(&key_file, key.serialize_pem()).expect("key");
    let (c, k) = (
        chain.to_str().expect("utf8"),
        key_file.to_str().expect("utf8"),
    );

    // Refused, changing nothing: a loose key file, a key of another certificate, no root.
    env.run(&["ca", "init", "--import-cert", c, "--import-key", k])
        .fails_with("chmod 600");
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let other = dir.join("other.key");
    std::fs::write(
        &other,
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("key")
            .serialize_pem(),
    )
    .expect("other");
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    env.run(&[
        "ca",
        "init",
        "--import-cert",
        c,
        "--import-key",
        other.to_str().expect("utf8"),
    ])
    .fails_with("does not belong");
    let no_root = dir.join("no-root.pem");
    std::fs::write(&no_root, inter.pem()).expect("write");
    env.run(&[
        "ca",
        "init",
        "--import-cert",
        no_root.to_str().expect("utf8"),
        "--import-key",
        k,
    ])
    .fails_with("self-signed root");
    assert!(!env.home.join("ca.crt").exists());

    env.run(&["ca", "init", "--import-cert", c, "--import-key", k])
        .ok();
    assert_eq!(
        std::fs::read_to_string(env.home.join("ca.crt")).expect("ca"),
        corp.pem.replace("\r\n", "\n")
    );
    assert!(env
        .run(&["doctor"])
        .stdout
        .contains("intermediate of an imported PKI"));
    env.issue("ivy", "editor");
    let (ok, text) = verify_client_cert(&env.home, &env.home.join("clients/ivy.crt"));
    assert!(ok, "{text}");
    let server = Server::start(&env, &[]);
    assert_eq!(
        post(&client_of(&env, "ivy"), &server, INIT)
            .await
            .expect("ivy")
            .status(),
        200
    );
    env.run(&["ca", "rotate"]).fails_with("--import-cert");
}

/// Serves whatever `body` holds at any path, over plain HTTP, until the test ends.
pub(crate) async fn serve_crl(body: std::sync::Arc<std::sync::Mutex<String>>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let text = body.lock().expect("lock").clone();
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crl_url_is_polled_and_a_newly_listed_certificate_is_refused() {
    use rcgen::DnType;
    let env = Env::with_ca();
    let corp = Corp::new();
    let body = std::sync::Arc::new(std::sync::Mutex::new(corp.crl(&[], 86_400, 1)));
    let port = serve_crl(body.clone()).await;
    std::fs::write(env.home.join("corp-ca.pem"), &corp.pem).expect("ca");
    let mut policy = std::fs::read_to_string(env.home.join("policy.toml")).expect("policy");
    policy.push_str(&format!(
        r#"
[trust.corp]
ca = "corp-ca.pem"
crl_url = "http://127.0.0.1:{port}/corp.crl"
crl_refresh = "1s"
[[trust.corp.roles]]
role = "viewer"
match = {{ cn = "*" }}
"#
    ));
    std::fs::write(env.home.join("policy.toml"), policy).expect("policy");
    let sam = corp.leaf(
        env.dir.path(),
        "sam",
        &[(DnType::CommonName, "sam")],
        &[],
        false,
    );
    let server = Server::start(&env, &["--lockout-threshold", "0"]);
    let sam_client = http_client(&env, Some((&sam.0, &sam.1)));
    assert_eq!(
        post(&sam_client, &server, INIT)
            .await
            .expect("sam")
            .status(),
        200
    );

    let before = audit_len(&env);
    *body.lock().expect("lock") = corp.crl(&[&sam.2], 86_400, 2);
    wait_audit_after(&env, before, |v| {
        v["event"] == "revocation_applied"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("1 open connection(s) closed"))
    });
    assert!(post(&sam_client, &server, INIT).await.is_err());
    assert!(
        post(&http_client(&env, Some((&sam.0, &sam.1))), &server, INIT)
            .await
            .is_err()
    );

    // The corporate CA leaves the bundle: open connections of the trust close, and its
    // certificates are refused (the trust no longer loads: fail closed).
    let bob = corp.leaf(
        env.dir.path(),
        "bob",
        &[(DnType::CommonName, "bob")],
        &[],
        false,
    );
    let bob_client = http_client(&env, Some((&bob.0, &bob.1)));
    assert_eq!(
        post(&bob_client, &server, INIT)
            .await
            .expect("bob")
            .status(),
        200
    );
    let before = audit_len(&env);
    std::fs::write(env.home.join("corp-ca.pem"), Corp::new().pem).expect("bundle");
    wait_audit_after(&env, before, |v| {
        v["event"] == "trust_changed"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("1 open connection(s) closed"))
    });
    assert!(post(&bob_client, &server, INIT).await.is_err());
    assert!(
        post(&http_client(&env, Some((&bob.0, &bob.1))), &server, INIT)
            .await
            .is_err()
    );
}

#[test]
fn the_offline_root_folder_may_not_be_inside_home_however_it_is_spelled() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("real")).expect("mkdir");
    let link = env.path("link");
    std::os::unix::fs::symlink(env.path("real"), &link).expect("symlink");
    // HOME given through the link, the folder through the real path (neither exists yet).
    let home = link.join("home");
    let inside = env.path("real").join("home").join("offline");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(crate::common::bin())
            .arg("--home")
            .arg(&home)
            .args(args)
            .output()
            .expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run(&[
        "ca",
        "init",
        "--offline-root",
        inside.to_str().expect("utf8"),
    ]);
    assert!(!ok && err.contains("inside HOME"), "{err}");
    let dotted = format!("{}/x/../offline", home.display());
    let (ok, err) = run(&["ca", "init", "--offline-root", &dotted]);
    assert!(!ok, "{err}");
    assert!(!home.join("ca.crt").exists());
    let (ok, err) = run(&[
        "ca",
        "init",
        "--offline-root",
        env.path("away").to_str().expect("utf8"),
    ]);
    assert!(ok, "{err}");
    assert!(find_named(&env.path("real"), "root.key").is_empty());
}

#[test]
fn rotation_with_a_wrong_passphrase_changes_nothing() {
    let env = Env::new();
    let pass = env.secret_file("pass", "correct horse battery staple\n");
    let wrong = env.secret_file("wrong", "not the right passphrase\n");
    let p = pass.to_str().expect("utf8");
    env.run(&["--passphrase-file", p, "ca", "init"]).ok();
    let listing = |env: &Env| {
        let mut v: Vec<_> = std::fs::read_dir(env.home.join("intermediates"))
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        v.sort();
        v
    };
    let before = listing(&env);
    env.run(&[
        "--passphrase-file",
        wrong.to_str().expect("utf8"),
        "ca",
        "rotate",
    ])
    .fails_with("wrong passphrase");
    assert_eq!(listing(&env), before);
    env.run(&["--passphrase-file", p, "ca", "rotate"]).ok();
    env.run(&[
        "--passphrase-file",
        p,
        "issue",
        "--role",
        "viewer",
        "--name",
        "eve",
    ])
    .ok();
}
