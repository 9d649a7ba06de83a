//! Every intermediate's CRL is published at its own path, and each certificate's CRL
//! distribution point names its own issuer's: after `ca rotate`, a relying party that follows
//! an old certificate's distribution point gets the CRL of the intermediate that signed it.

use rustls::pki_types::pem::PemObject;

use crate::common::{openssl, Env};
use crate::server_env::Server;

/// The CRL distribution point URI of the first certificate in `pem`.
fn distribution_point(pem: &str) -> String {
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("certificate");
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::CRLDistributionPoints(points) => points
                .points
                .iter()
                .find_map(|p| match &p.distribution_point {
                    Some(x509_parser::extensions::DistributionPointName::FullName(names)) => {
                        names.iter().find_map(|n| match n {
                            x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
                            _ => None,
                        })
                    }
                    _ => None,
                }),
            _ => None,
        })
        .expect("a CRL distribution point")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_of_a_rotated_intermediate_is_revoked_in_the_crl_its_own_distribution_point_serves(
) {
    let env = Env::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let base = format!("http://127.0.0.1:{port}/crl");
    env.run(&["ca", "init", "--crl-url", &base]).ok();
    env.issue("alice", "admin");
    let alice_pem = std::fs::read_to_string(env.home.join("clients/alice.crt")).expect("alice");
    let alice_dp = distribution_point(&alice_pem);
    assert!(
        alice_dp.starts_with(&format!("{base}/")),
        "{alice_dp} names its intermediate's own path under {base}"
    );

    env.run(&["ca", "rotate"]).ok();
    env.issue("bob", "viewer");
    let bob_dp = distribution_point(
        &std::fs::read_to_string(env.home.join("clients/bob.crt")).expect("bob"),
    );
    assert!(bob_dp.starts_with(&format!("{base}/")), "{bob_dp}");
    assert_ne!(alice_dp, bob_dp, "each intermediate has its own path");
    env.run(&["revoke", "alice"]).ok();

    let _server = Server::start(&env, &["--ops-listen", &format!("127.0.0.1:{port}")]);
    let http = reqwest::Client::new();
    let fetch = |url: String| {
        let http = http.clone();
        async move {
            let resp = http.get(&url).send().await.expect("fetch");
            (
                resp.status().as_u16(),
                resp.bytes().await.expect("body").to_vec(),
            )
        }
    };
    let (status, der) = fetch(alice_dp.clone()).await;
    assert_eq!(status, 200, "{alice_dp}");
    let crl_der = env.path("alice-issuer.crl.der");
    std::fs::write(&crl_der, &der).expect("write");
    let crl_pem = env.path("alice-issuer.crl.pem");
    let (ok, text) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        crl_der.to_str().expect("utf8"),
        "-out",
        crl_pem.to_str().expect("utf8"),
    ]);
    assert!(ok, "{text}");
    // alice.crt holds her certificate and the intermediate that signed it.
    let alice = env.home.join("clients/alice.crt");
    let (ok, text) = openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        env.home.join("ca.crt").to_str().expect("utf8"),
        "-untrusted",
        alice.to_str().expect("utf8"),
        "-CRLfile",
        crl_pem.to_str().expect("utf8"),
        alice.to_str().expect("utf8"),
    ]);
    assert!(!ok, "{text}");
    assert!(text.contains("certificate revoked"), "{text}");

    // bob's distribution point serves the current intermediate's CRL, which /crl serves too,
    // and bob verifies against it.
    let (status, current) = fetch(bob_dp).await;
    assert_eq!(status, 200);
    let (status, plain) = fetch(base.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(
        x509_parser::parse_x509_crl(&current)
            .expect("crl")
            .1
            .issuer()
            .to_string(),
        x509_parser::parse_x509_crl(&plain)
            .expect("crl")
            .1
            .issuer()
            .to_string()
    );
    // Paths that are not an intermediate's id are not found, and never leave the folder.
    for bad in ["/crl/zz", "/crl/..%2Fca.key", "/crl/00"] {
        let (status, _) = fetch(format!("http://127.0.0.1:{port}{bad}")).await;
        assert_eq!(status, 404, "{bad}");
    }
}
