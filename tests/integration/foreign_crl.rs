//! A foreign trust's CRL under attack: whoever answers for a plain-HTTP `crl_url` serves
//! forged CRLs (the corporate CA's name, another key, a thisUpdate in 2099) and replays old
//! genuine ones. Nothing they serve may un-revoke a certificate, hold back a later genuine
//! CRL, or lock the trust's holders out.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::common::{openssl, Env};
// The CRL server, and the attacker on its URL: it serves whatever the body holds.
use crate::pki_hierarchy::serve_crl;
use crate::server_env::{audit_len, http_client, post, wait_audit_after, Server, INIT};

/// A corporate root made by openssl, and what the test signs with its key.
struct Corp {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

impl Corp {
    fn from_openssl(dir: &Path) -> Corp {
        let (key, cert) = (dir.join("corp-root.key"), dir.join("corp-root.pem"));
        let (ok, text) = openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key.to_str().expect("utf8"),
            "-out",
            cert.to_str().expect("utf8"),
            "-days",
            "30",
            "-subj",
            "/O=Example Corp/CN=Example Corp Root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        assert!(ok, "{text}");
        let pem = std::fs::read_to_string(&cert).expect("root");
        let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(&key).expect("key"))
            .expect("openssl key");
        Corp {
            issuer: rcgen::Issuer::from_ca_cert_pem(&pem, key).expect("issuer"),
            pem,
        }
    }

    /// An impostor: the same issuer name as `self`, another key.
    fn impostor(&self) -> rcgen::Issuer<'static, rcgen::KeyPair> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        rcgen::Issuer::from_ca_cert_pem(&self.pem, key).expect("impostor")
    }

    /// A client certificate for `cn`: (cert, key, serial).
    fn leaf(&self, dir: &Path, cn: &str) -> (PathBuf, PathBuf, Vec<u8>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let serial = mcp_zt::pki::random_serial().expect("serial").to_vec();
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let cert = p.signed_by(&key, &self.issuer).expect("leaf");
        let (c, k) = (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")));
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        (c, k, serial)
    }
}

/// A CRL signed by `issuer` with this number, listing `serials`, made at `this_update`.
fn crl(
    issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
    number: u64,
    this_update: time::OffsetDateTime,
    serials: &[&[u8]],
) -> String {
    rcgen::CertificateRevocationListParams {
        this_update,
        next_update: this_update + time::Duration::days(1),
        crl_number: rcgen::SerialNumber::from_slice(&number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(s),
                revocation_time: this_update,
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .expect("crl")
    .pem()
    .expect("pem")
}

fn ago(secs: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() - time::Duration::seconds(secs)
}

fn in_2099() -> time::OffsetDateTime {
    time::macros::datetime!(2099-01-01 00:00 UTC)
}

fn trust_policy(env: &Env, corp: &Corp, port: u16) {
    std::fs::write(env.home.join("corp-ca.pem"), &corp.pem).expect("bundle");
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
}

/// Whether a fresh connection with this certificate gets in.
async fn admitted(env: &Env, server: &Server, who: &(PathBuf, PathBuf, Vec<u8>)) -> bool {
    post(&http_client(env, Some((&who.0, &who.1))), server, INIT)
        .await
        .is_ok_and(|r| r.status() == 200)
}

fn refused_crl(v: &serde_json::Value, why: &str) -> bool {
    v["event"] == "crl_refused" && v["reason"].as_str().is_some_and(|r| r.contains(why))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_crl_served_once_neither_unrevokes_nor_pins_the_trust_and_restarts_remember() {
    let env = Env::with_ca();
    let dir = env.dir.path();
    let corp = Corp::from_openssl(dir);
    let sam = corp.leaf(dir, "sam");
    let bob = corp.leaf(dir, "bob");
    let carol = corp.leaf(dir, "carol");
    let crl0 = crl(&corp.issuer, 1, ago(300), &[]);
    let crl1 = crl(&corp.issuer, 2, ago(200), &[&sam.2]);
    let body = Arc::new(Mutex::new(crl1.clone()));
    let port = serve_crl(body.clone()).await;
    trust_policy(&env, &corp, port);

    let server = Server::start(&env, &["--lockout-threshold", "0"]);
    assert!(
        !admitted(&env, &server, &sam).await,
        "sam is revoked by CRL1"
    );
    assert!(admitted(&env, &server, &carol).await);
    assert!(admitted(&env, &server, &bob).await);

    // The attacker answers one refresh: the old genuine CRL0, then a forged CRL dated 2099.
    let before = audit_len(&env);
    let forged = crl(&corp.impostor(), 999, in_2099(), &[]);
    *body.lock().expect("lock") = format!("{crl0}{forged}");
    // The refresher has read it once it says what it did with it (refused, or loaded).
    wait_audit_after(&env, before, |v| {
        v["event"] == "crl_refused" || v["event"] == "trust_loaded"
    });
    assert!(
        !admitted(&env, &server, &sam).await,
        "sam stays refused at the handshake"
    );
    assert!(
        admitted(&env, &server, &carol).await,
        "nobody is locked out"
    );
    wait_audit_after(&env, before, |v| refused_crl(v, "not signed by that CA"));
    wait_audit_after(&env, before, |v| {
        refused_crl(v, "older than the one in force")
    });

    // The genuine CA revokes bob: its next CRL is taken within one refresh.
    let before = audit_len(&env);
    let crl2 = crl(&corp.issuer, 3, ago(100), &[&sam.2, &bob.2]);
    *body.lock().expect("lock") = crl2;
    wait_audit_after(&env, before, |v| {
        v["event"] == "revocation_applied"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("trust \"corp\""))
    });
    assert!(!admitted(&env, &server, &bob).await, "bob is refused");
    assert!(!admitted(&env, &server, &sam).await);
    assert!(admitted(&env, &server, &carol).await);

    // A restart while the attacker replays the old genuine CRL0, which lists nobody: the
    // ledger remembers what was seen revoked.
    drop(server);
    *body.lock().expect("lock") = crl0;
    let server = Server::start(&env, &["--lockout-threshold", "0"]);
    assert!(
        !admitted(&env, &server, &sam).await,
        "sam stays refused after a restart"
    );
    assert!(
        !admitted(&env, &server, &bob).await,
        "bob stays refused after a restart"
    );
    assert!(admitted(&env, &server, &carol).await);
    let before = audit_len(&env);
    assert!(!admitted(&env, &server, &sam).await);
    wait_audit_after(&env, before, |v| {
        v["event"] == "handshake_rejected"
            && v["reason"].as_str().is_some_and(|r| r.contains("revoked"))
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_crl_first_in_the_body_locks_nobody_out() {
    let env = Env::with_ca();
    let dir = env.dir.path();
    let corp = Corp::from_openssl(dir);
    let sam = corp.leaf(dir, "sam");
    let carol = corp.leaf(dir, "carol");
    let forged = crl(&corp.impostor(), 999, in_2099(), &[]);
    let crl1 = crl(&corp.issuer, 2, ago(200), &[&sam.2]);
    let body = Arc::new(Mutex::new(format!("{forged}{crl1}")));
    let port = serve_crl(body).await;
    trust_policy(&env, &corp, port);

    let server = Server::start(&env, &["--lockout-threshold", "0"]);
    assert!(
        admitted(&env, &server, &carol).await,
        "carol is not locked out"
    );
    assert!(!admitted(&env, &server, &sam).await, "sam is revoked");
    wait_audit_after(&env, 0, |v| refused_crl(v, "not signed by that CA"));
}
