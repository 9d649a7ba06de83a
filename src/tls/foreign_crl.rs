//! A foreign trust's CRLs, checked when they are loaded: pure logic, no I/O.
//!
//! A `crl` file or `crl_url` body may hold several CRLs, and whoever can answer for a
//! plain-HTTP URL can put anything in it. So before webpki ever sees a CRL, mcp-zt checks it
//! here against the trust's CA bundle:
//!
//! - it parses, and names a CA of the bundle as its issuer;
//! - its signature verifies with that CA's key (through the same aws-lc-rs algorithms webpki
//!   uses), and that CA may sign CRLs (keyUsage cRLSign, when the CA has a keyUsage at all);
//! - its thisUpdate is not in the future beyond [`CLOCK_SKEW`], and it has a nextUpdate.
//!
//! Then exactly **one CRL per issuer** is chosen ([`choose`]): among those that verify, in the
//! new body and in force, the one with the highest CRL number, then the latest thisUpdate. That
//! CRL, and no other, is what webpki checks at the handshake. A forged CRL is refused; a genuine
//! but older CRL served again loses to the one in force and is refused too.

use std::cmp::Ordering;

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::asn1_rs::{Any, FromDer};
use x509_parser::num_bigint::BigUint;
use x509_parser::oid_registry;
use x509_parser::prelude::X509Certificate;

/// How far in the future a CRL's thisUpdate may be (clocks differ) before it is refused.
pub const CLOCK_SKEW: i64 = 300;

/// A CA of a trust's bundle, as the CRL check needs it.
#[derive(Debug, Clone)]
pub struct BundleCa {
    /// Subject name (DER): CRLs name it as their issuer.
    pub subject: Vec<u8>,
    /// Subject, for messages.
    pub subject_text: String,
    /// The contents of its SubjectPublicKeyInfo's AlgorithmIdentifier.
    spki_alg: Vec<u8>,
    /// Its subjectPublicKey bits.
    spki_key: Vec<u8>,
    /// Whether it may sign CRLs (no keyUsage, or keyUsage with cRLSign).
    crl_sign: bool,
    /// Its notAfter (Unix seconds): no certificate of it verifies past this.
    pub not_after: i64,
    /// Whether it is valid now (an expired CA is left out of the trust, with its CRLs).
    pub valid_now: bool,
}

impl BundleCa {
    /// Reads what the CRL check needs from a parsed CA certificate.
    pub fn from_cert(c: &X509Certificate<'_>, now: i64) -> Result<BundleCa, String> {
        let spki = c.public_key();
        let (spki_alg, spki_key) = split_spki(spki.raw)
            .ok_or_else(|| format!("{}: its public key does not parse", c.subject()))?;
        let crl_sign = match c.key_usage() {
            Ok(Some(ku)) => ku.value.crl_sign(),
            Ok(None) => true,
            Err(e) => return Err(format!("{}: keyUsage: {e}", c.subject())),
        };
        let v = c.validity();
        Ok(BundleCa {
            subject: c.subject().as_raw().to_vec(),
            subject_text: c.subject().to_string(),
            spki_alg,
            spki_key,
            crl_sign,
            not_after: v.not_after.timestamp(),
            valid_now: v.not_before.timestamp() <= now && now < v.not_after.timestamp(),
        })
    }
}

/// One entry of a verified CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlEntry {
    /// The serial as it is encoded (the identity key uses these bytes).
    pub serial: Vec<u8>,
    /// The entry's reason is removeFromCRL: a hold being lifted, not a revocation.
    pub remove_from_crl: bool,
}

/// A CRL that verified against the bundle.
#[derive(Debug, Clone)]
pub struct VerifiedCrl {
    /// The issuer's subject (DER).
    pub issuer: Vec<u8>,
    /// The issuer, for messages.
    pub issuer_text: String,
    /// The CRL as loaded.
    pub der: CertificateRevocationListDer<'static>,
    /// Its CRL number (0 when it has none).
    pub number: BigUint,
    /// thisUpdate (Unix seconds).
    pub this_update: i64,
    /// nextUpdate (Unix seconds).
    pub next_update: i64,
    /// What it lists.
    pub entries: Vec<CrlEntry>,
    /// The issuing CA's notAfter: how long a serial it lists must be remembered.
    pub issuer_not_after: i64,
}

impl VerifiedCrl {
    /// Newer first: the higher CRL number, then the later thisUpdate.
    fn rank(&self) -> (&BigUint, i64) {
        (&self.number, self.this_update)
    }
}

/// What a CRL check decided about one CRL that was not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrlSkip {
    /// The CRL is refused: forged, malformed, from the future, or not the bundle's.
    Refused(String),
    /// The CRL belongs to a CA of the bundle that is not valid now: it counts for nothing.
    ExpiredIssuer,
}

/// Checks one CRL (DER) against the bundle's CAs at `now`.
pub fn verify(der: &[u8], cas: &[BundleCa], now: i64) -> Result<VerifiedCrl, CrlSkip> {
    let refuse = |m: String| CrlSkip::Refused(m);
    let (rest, crl) = x509_parser::parse_x509_crl(der)
        .map_err(|e| refuse(format!("a CRL does not parse: {e}")))?;
    if !rest.is_empty() {
        return Err(refuse("a CRL has bytes after its end".into()));
    }
    let issuer = crl.issuer().as_raw();
    let named: Vec<&BundleCa> = cas.iter().filter(|c| c.subject == issuer).collect();
    if named.is_empty() {
        return Err(refuse(format!(
            "a CRL names {} as its issuer, which is not a CA of the bundle",
            crl.issuer()
        )));
    }
    let named: Vec<&BundleCa> = named.into_iter().filter(|c| c.valid_now).collect();
    if named.is_empty() {
        return Err(CrlSkip::ExpiredIssuer);
    }
    // A partitioned (issuingDistributionPoint) or delta CRL covers only part of what the
    // issuer revokes, and webpki reads it by its own scope rules: one of them chosen as "the"
    // CRL of its issuer would hide the full CRL's later revocations. Neither is accepted, nor
    // a critical extension mcp-zt does not know.
    for ext in crl.extensions() {
        let oid = &ext.oid;
        if *oid == oid_registry::OID_X509_EXT_ISSUER_DISTRIBUTION_POINT
            || *oid == oid_registry::OID_X509_EXT_DELTA_CRL_INDICATOR
        {
            return Err(refuse(format!(
                "the CRL of {} is a partitioned or delta CRL ({oid}): give mcp-zt the issuer's full CRL",
                crl.issuer()
            )));
        }
        if ext.critical
            && *oid != oid_registry::OID_X509_EXT_CRL_NUMBER
            && *oid != oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER
        {
            return Err(refuse(format!(
                "the CRL of {} has a critical extension mcp-zt does not know ({oid})",
                crl.issuer()
            )));
        }
    }
    if crl.tbs_cert_list.signature != crl.signature_algorithm {
        return Err(refuse(format!(
            "the CRL of {}: its two signature algorithm fields differ",
            crl.issuer()
        )));
    }
    let (tbs, sig_alg, signature) = split_signed(der)
        .ok_or_else(|| refuse(format!("the CRL of {}: malformed", crl.issuer())))?;
    let signer = named
        .iter()
        .find(|ca| check_signature(ca, tbs, sig_alg, signature));
    let Some(signer) = signer else {
        return Err(refuse(format!(
            "the CRL of {} is not signed by that CA of the bundle (forged, or signed by another key)",
            crl.issuer()
        )));
    };
    if !signer.crl_sign {
        return Err(refuse(format!(
            "the CRL of {}: that CA's keyUsage does not allow cRLSign",
            crl.issuer()
        )));
    }
    let this_update = crl.last_update().timestamp();
    if this_update > now.saturating_add(CLOCK_SKEW) {
        return Err(refuse(format!(
            "the CRL of {} says it was made at {}, in the future",
            crl.issuer(),
            crate::pki::rfc3339(this_update)
        )));
    }
    let Some(next) = crl.next_update() else {
        return Err(refuse(format!(
            "the CRL of {} has no nextUpdate: its freshness cannot be judged",
            crl.issuer()
        )));
    };
    let entries = crl
        .iter_revoked_certificates()
        .map(|r| CrlEntry {
            serial: r.raw_serial().to_vec(),
            remove_from_crl: r
                .reason_code()
                .is_some_and(|(_, code)| code == x509_parser::x509::ReasonCode::RemoveFromCRL),
        })
        .collect();
    Ok(VerifiedCrl {
        issuer: issuer.to_vec(),
        issuer_text: crl.issuer().to_string(),
        der: CertificateRevocationListDer::from(der.to_vec()),
        number: crl.crl_number().cloned().unwrap_or_default(),
        this_update,
        next_update: next.timestamp(),
        entries,
        issuer_not_after: signer.not_after,
    })
}

/// The CRLs to put in force: one per issuer, the newest among `in_force` and `fresh`, and the
/// refusals of fresh CRLs that lost to a newer one (an older CRL served again, or two CRLs of
/// one issuer in one body).
pub fn choose(
    in_force: &[VerifiedCrl],
    fresh: Vec<VerifiedCrl>,
) -> (Vec<VerifiedCrl>, Vec<String>) {
    let mut chosen: Vec<VerifiedCrl> = in_force.to_vec();
    let mut refused = Vec::new();
    for crl in fresh {
        match chosen.iter_mut().find(|c| c.issuer == crl.issuer) {
            None => chosen.push(crl),
            Some(cur) => match crl.rank().cmp(&cur.rank()) {
                Ordering::Greater => {
                    if !in_force.iter().any(|p| p.der == cur.der) {
                        refused.push(older(cur, &crl, "another CRL in the same load"));
                    }
                    *cur = crl;
                }
                Ordering::Equal if crl.der == cur.der => {}
                _ => {
                    let what = if in_force.iter().any(|p| p.der == cur.der) {
                        "the one in force"
                    } else {
                        "another CRL in the same load"
                    };
                    refused.push(older(&crl, cur, what));
                }
            },
        }
    }
    (chosen, refused)
}

fn older(loser: &VerifiedCrl, winner: &VerifiedCrl, what: &str) -> String {
    format!(
        "refused a CRL of {} (number {}, thisUpdate {}) older than {what} (number {}, thisUpdate {}): an old CRL served again would un-revoke",
        loser.issuer_text,
        loser.number,
        crate::pki::rfc3339(loser.this_update),
        winner.number,
        crate::pki::rfc3339(winner.this_update),
    )
}

/// Whether `signature` over `tbs` verifies with `ca`'s key under the algorithm `sig_alg`
/// names, using the crypto provider's webpki algorithms (no hand-written cryptography).
fn check_signature(ca: &BundleCa, tbs: &[u8], sig_alg: &[u8], signature: &[u8]) -> bool {
    let algs = super::provider().signature_verification_algorithms.all;
    algs.iter().any(|alg| {
        alg.public_key_alg_id().as_ref() == ca.spki_alg.as_slice()
            && alg.signature_alg_id().as_ref() == sig_alg
            && alg.verify_signature(&ca.spki_key, tbs, signature).is_ok()
    })
}

/// Splits a signed DER structure (`SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING }`) into
/// the signed bytes (the whole tbs element), the algorithm identifier's contents and the
/// signature bytes.
fn split_signed(der: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (_, outer) = Any::from_der(der).ok()?;
    let body = outer.data;
    let (after_tbs, _) = Any::from_der(body).ok()?;
    let tbs = &body[..body.len() - after_tbs.len()];
    let (after_alg, alg) = Any::from_der(after_tbs).ok()?;
    let (rest, sig) = Any::from_der(after_alg).ok()?;
    if !rest.is_empty() || sig.header.tag() != x509_parser::asn1_rs::Tag::BitString {
        return None;
    }
    // The first byte of a BIT STRING counts its unused bits: a signature has none.
    match sig.data.split_first() {
        Some((0, bits)) => Some((tbs, alg.data, bits)),
        _ => None,
    }
}

/// A SubjectPublicKeyInfo's AlgorithmIdentifier contents and key bits.
fn split_spki(raw: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (_, outer) = Any::from_der(raw).ok()?;
    let (after_alg, alg) = Any::from_der(outer.data).ok()?;
    let (_, key) = Any::from_der(after_alg).ok()?;
    match key.data.split_first() {
        Some((0, bits)) => Some((alg.data.to_vec(), bits.to_vec())),
        _ => None,
    }
}

/// Refuses a bundle in which two CAs valid now share a subject with different keys: a CRL
/// names its issuer by subject only, so webpki would check one key's certificates against the
/// other key's CRL (refusing them all), and their serials would share one identity space.
pub fn distinct_issuers(cas: &[BundleCa]) -> Result<(), String> {
    let valid: Vec<&BundleCa> = cas.iter().filter(|c| c.valid_now).collect();
    for (i, a) in valid.iter().enumerate() {
        if let Some(b) = valid[i + 1..]
            .iter()
            .find(|b| b.subject == a.subject && b.spki_key != a.spki_key)
        {
            return Err(format!(
                "two CAs valid now are both named {} with different keys; CRLs name their issuer by subject, so keep one of them in the bundle",
                b.subject_text
            ));
        }
    }
    Ok(())
}

/// The bundle's CAs, parsed for the CRL check. Errors name the bundle's problem.
pub fn bundle_cas(cas: &[CertificateDer<'_>], now: i64) -> Result<Vec<BundleCa>, String> {
    cas.iter()
        .map(|der| {
            let (_, c) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
            BundleCa::from_cert(&c, now)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ca {
        issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
        der: Vec<u8>,
    }

    fn ca(cn: &str, crl_sign: bool) -> Ca {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let today = time::OffsetDateTime::now_utc();
        p.not_before = today - time::Duration::days(1);
        p.not_after = today + time::Duration::days(30);
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        if crl_sign {
            p.key_usages.push(rcgen::KeyUsagePurpose::CrlSign);
        }
        let cert = p.self_signed(&key).expect("self-signed");
        // rcgen will not sign a CRL for a CA without cRLSign: sign with the same name and key
        // as if it had it, so the check here is the one under test.
        p.key_usages.push(rcgen::KeyUsagePurpose::CrlSign);
        Ca {
            der: cert.der().to_vec(),
            issuer: rcgen::Issuer::new(p, key),
        }
    }

    fn crl(ca: &Ca, number: u64, this_update: i64, serials: &[(&[u8], bool)]) -> Vec<u8> {
        let at = time::OffsetDateTime::from_unix_timestamp(this_update).expect("time");
        let mut p = rcgen::CertificateRevocationListParams {
            this_update: at,
            next_update: at + time::Duration::days(1),
            crl_number: rcgen::SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        for (s, remove) in serials {
            p.revoked_certs.push(rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(s),
                revocation_time: at,
                reason_code: Some(if *remove {
                    rcgen::RevocationReason::RemoveFromCrl
                } else {
                    rcgen::RevocationReason::KeyCompromise
                }),
                invalidity_date: None,
            });
        }
        p.signed_by(&ca.issuer).expect("crl").der().to_vec()
    }

    fn cas(list: &[&Ca], now: i64) -> Vec<BundleCa> {
        let ders: Vec<CertificateDer<'static>> = list
            .iter()
            .map(|c| CertificateDer::from(c.der.clone()))
            .collect();
        bundle_cas(&ders, now).expect("bundle")
    }

    fn now() -> i64 {
        crate::pki::now().unix_timestamp()
    }

    fn refused(r: Result<VerifiedCrl, CrlSkip>) -> String {
        match r {
            Err(CrlSkip::Refused(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_genuine_crl_verifies_and_keeps_its_number_dates_and_entries() {
        let corp = ca("Corp Root", true);
        let t = now() - 10;
        let v = verify(
            &crl(&corp, 7, t, &[(&[1, 2], false), (&[3], true)]),
            &cas(&[&corp], now()),
            now(),
        )
        .expect("verifies");
        assert_eq!(v.number, BigUint::from(7u8));
        assert_eq!(v.this_update, t);
        assert_eq!(v.next_update, t + 86_400);
        assert_eq!(
            v.entries,
            vec![
                CrlEntry {
                    serial: vec![1, 2],
                    remove_from_crl: false
                },
                CrlEntry {
                    serial: vec![3],
                    remove_from_crl: true
                }
            ]
        );
    }

    #[test]
    fn a_crl_signed_by_another_key_with_the_same_name_is_refused() {
        let corp = ca("Corp Root", true);
        let fake = ca("Corp Root", true);
        let forged = crl(&fake, 99, now(), &[]);
        let m = refused(verify(&forged, &cas(&[&corp], now()), now()));
        assert!(m.contains("not signed by that CA"), "{m}");
        // With both in the bundle it is the fake's own (genuine) CRL: accepted.
        assert!(verify(&forged, &cas(&[&corp, &fake], now()), now()).is_ok());
    }

    #[test]
    fn a_tampered_crl_is_refused() {
        let corp = ca("Corp Root", true);
        let mut der = crl(&corp, 1, now(), &[(&[0x42], false)]);
        let pos = der.iter().rposition(|b| *b == 0x42).expect("serial byte");
        der[pos] = 0x43;
        let m = refused(verify(&der, &cas(&[&corp], now()), now()));
        assert!(m.contains("not signed"), "{m}");
    }

    #[test]
    fn a_crl_from_the_future_or_of_a_ca_without_crl_sign_or_of_a_stranger_is_refused() {
        let corp = ca("Corp Root", true);
        let m = refused(verify(
            &crl(&corp, 1, now() + 3600, &[]),
            &cas(&[&corp], now()),
            now(),
        ));
        assert!(m.contains("in the future"), "{m}");
        // A little skew is tolerated.
        assert!(verify(
            &crl(&corp, 1, now() + 60, &[]),
            &cas(&[&corp], now()),
            now()
        )
        .is_ok());
        let no_crl_sign = ca("Signer", false);
        let m = refused(verify(
            &crl(&no_crl_sign, 1, now(), &[]),
            &cas(&[&no_crl_sign], now()),
            now(),
        ));
        assert!(m.contains("cRLSign"), "{m}");
        let other = ca("Other", true);
        let m = refused(verify(
            &crl(&other, 1, now(), &[]),
            &cas(&[&corp], now()),
            now(),
        ));
        assert!(m.contains("not a CA of the bundle"), "{m}");
        for garbage in [&b""[..], b"\x30\x03\x02\x01\x00", b"not a crl at all"] {
            let m = refused(verify(garbage, &cas(&[&corp], now()), now()));
            assert!(m.contains("does not parse"), "{m}");
        }
    }

    #[test]
    fn the_crl_of_an_expired_ca_counts_for_nothing() {
        let corp = ca("Corp Root", true);
        let later = now() + 60 * 86_400;
        let v = verify(&crl(&corp, 1, now(), &[]), &cas(&[&corp], later), later);
        assert!(matches!(v, Err(CrlSkip::ExpiredIssuer)), "{v:?}");
    }

    #[test]
    fn one_crl_per_issuer_the_highest_number_then_the_latest_this_update() {
        let corp = ca("Corp Root", true);
        let b = cas(&[&corp], now());
        let t = now() - 100;
        let v = |n: u64, at: i64| verify(&crl(&corp, n, at, &[]), &b, now()).expect("verifies");
        // Two in one body: the higher number wins, whatever the order.
        for fresh in [vec![v(1, t), v(2, t - 50)], vec![v(2, t - 50), v(1, t)]] {
            let (chosen, refused) = choose(&[], fresh);
            assert_eq!(chosen.len(), 1);
            assert_eq!(chosen[0].number, BigUint::from(2u8));
            assert_eq!(refused.len(), 1, "{refused:?}");
        }
        // Same number: the later thisUpdate wins.
        let (chosen, _) = choose(&[], vec![v(3, t), v(3, t + 10)]);
        assert_eq!(chosen[0].this_update, t + 10);
        // An older CRL than the one in force is refused and the one in force stays.
        let in_force = vec![v(5, t)];
        let (chosen, refused) = choose(&in_force, vec![v(4, t + 20)]);
        assert_eq!(chosen[0].number, BigUint::from(5u8));
        assert!(
            refused[0].contains("older than the one in force"),
            "{refused:?}"
        );
        // The same CRL again: nothing refused, nothing changes.
        let (chosen, refused) = choose(&in_force, vec![in_force[0].clone()]);
        assert_eq!(chosen[0].der, in_force[0].der);
        assert!(refused.is_empty());
        // A newer one replaces it.
        let (chosen, refused) = choose(&in_force, vec![v(6, t)]);
        assert_eq!(chosen[0].number, BigUint::from(6u8));
        assert!(refused.is_empty());
    }

    #[test]
    fn a_partitioned_crl_is_refused() {
        let corp = ca("Corp Root", true);
        let at = time::OffsetDateTime::now_utc();
        let der = rcgen::CertificateRevocationListParams {
            this_update: at,
            next_update: at + time::Duration::days(1),
            crl_number: rcgen::SerialNumber::from_slice(&[9]),
            issuing_distribution_point: Some(rcgen::CrlIssuingDistributionPoint {
                distribution_point: rcgen::CrlDistributionPoint {
                    uris: vec!["http://crl.example/users.crl".into()],
                },
                scope: Some(rcgen::CrlScope::UserCertsOnly),
            }),
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&corp.issuer)
        .expect("crl")
        .der()
        .to_vec();
        let m = refused(verify(&der, &cas(&[&corp], now()), now()));
        assert!(m.contains("partitioned or delta"), "{m}");
    }

    #[test]
    fn two_cas_of_one_name_with_different_keys_are_refused_in_one_bundle() {
        let a = ca("Corp Root", true);
        let b = ca("Corp Root", true);
        let m = distinct_issuers(&cas(&[&a, &b], now())).expect_err("same name, two keys");
        assert!(m.contains("keep one"), "{m}");
        assert!(distinct_issuers(&cas(&[&a, &ca("Other", true)], now())).is_ok());
        // The same certificate twice is harmless.
        assert!(distinct_issuers(&cas(&[&a, &a], now())).is_ok());
    }

    #[test]
    fn each_issuer_keeps_its_own_crl() {
        let a = ca("Corp A", true);
        let b = ca("Corp B", true);
        let bundle = cas(&[&a, &b], now());
        let va = verify(&crl(&a, 1, now(), &[]), &bundle, now()).expect("a");
        let vb = verify(&crl(&b, 1, now(), &[]), &bundle, now()).expect("b");
        let (chosen, refused) = choose(std::slice::from_ref(&va), vec![vb]);
        assert_eq!(chosen.len(), 2);
        assert!(refused.is_empty());
        assert!(chosen.iter().any(|c| c.der == va.der));
    }
}
