//! A foreign trust's CRL body on arbitrary bytes, alone and after a genuine CRL, with a CRL in
//! force: never panics, and nothing that is not signed by the bundle's CA is ever put in force.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mcp_zt::policy::trust::CrlSource;
use mcp_zt::policy::TrustConfig;
use mcp_zt::tls::foreign::ForeignTrust;
use mcp_zt::tls::foreign_crl::{self, VerifiedCrl};

struct Fixture {
    ca_pem: String,
    genuine_pem: String,
    in_force: VerifiedCrl,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(rcgen::DnType::CommonName, "Fuzz Corp Root");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = p.self_signed(&key).expect("root");
        let issuer = rcgen::Issuer::new(p, key);
        let now = time::OffsetDateTime::now_utc();
        let genuine = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(1),
            next_update: now + time::Duration::days(1),
            crl_number: rcgen::SerialNumber::from_slice(&[5]),
            issuing_distribution_point: None,
            revoked_certs: vec![rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(&[1, 2, 3]),
                revocation_time: now,
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .expect("crl");
        let bundle = foreign_crl::bundle_cas(
            &[cert.der().clone()],
            now.unix_timestamp(),
        )
        .expect("bundle");
        let in_force = foreign_crl::verify(genuine.der(), &bundle, now.unix_timestamp())
            .expect("the genuine CRL verifies");
        Fixture {
            ca_pem: cert.pem(),
            genuine_pem: genuine.pem().expect("pem"),
            in_force,
        }
    })
}

fn config() -> TrustConfig {
    TrustConfig {
        name: "fuzz".into(),
        ca: "ca.pem".into(),
        crl: CrlSource::File("crl.pem".into()),
        crl_grace_secs: 0,
        crl_refresh_secs: 60,
        roles: Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let in_force = std::slice::from_ref(&f.in_force);
    for body in [data.to_vec(), [f.genuine_pem.as_bytes(), data].concat()] {
        for floor in [&[][..], in_force] {
            if let Ok(loaded) = ForeignTrust::build(config(), f.ca_pem.as_bytes(), body.clone(), floor) {
                // Whatever the body held, what is in force verifies against the bundle, and
                // there is one CRL per issuer.
                assert_eq!(loaded.trust.crls.len(), 1);
                assert!(loaded.trust.crls[0].number >= f.in_force.number || floor.is_empty());
            }
        }
    }
});
