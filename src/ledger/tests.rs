//! The ledger's own tests (sled), apart from its interface.

use super::*;

#[test]
fn a_storage_error_is_said_once_as_main_prints_it() {
    let inner = sled::Error::Unsupported("no such thing".into());
    let chain = format!("{:#}", anyhow::Error::from(LedgerError::from(inner)));
    assert_eq!(chain.matches("no such thing").count(), 1, "{chain}");
    assert!(chain.starts_with("ledger storage error: "), "{chain}");
}

fn record(serial: &str, name: &str) -> CertRecord {
    CertRecord {
        v: RECORD_VERSION,
        serial: serial.into(),
        name: name.into(),
        role: Some("viewer".into()),
        kind: CertKind::Client,
        spiffe_id: format!("spiffe://example.org/client/{name}"),
        sans: vec![],
        not_before: 0,
        not_after: i64::MAX / 2,
        issued_at: 1,
        cert_pem: String::new(),
        revocation: None,
        renewed_from: None,
        superseded_by: None,
        chain_root: None,
        chain_started: None,
        issuer: None,
    }
}

fn successor(old: &CertRecord, serial: &str) -> CertRecord {
    CertRecord {
        serial: serial.into(),
        renewed_from: Some(old.serial.clone()),
        chain_root: Some(old.chain_root().to_string()),
        chain_started: Some(old.chain_started()),
        ..record(serial, &old.name)
    }
}

#[test]
fn revoking_any_certificate_of_a_chain_revokes_the_whole_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let l = Ledger::open_sled(dir.path(), LOCK_WAIT).expect("open");
    let a = record("0a", "alice");
    l.insert_new(&a).expect("insert");
    let b = successor(&a, "0b");
    l.record_renewal("0a", &b, 10).expect("renew a");
    let c = successor(&b, "0c");
    l.record_renewal("0b", &c, 11).expect("renew b");
    // The middle one was retired as superseded already.
    l.revoke("0b", Reason::Superseded, 12).expect("retire b");
    let out = l
        .revoke_chain("0a", Reason::KeyCompromise, 13)
        .expect("chain");
    let newly: Vec<&str> = out.newly.iter().map(|r| r.serial.as_str()).collect();
    assert_eq!(newly, ["0a", "0c"]);
    assert_eq!(out.already.len(), 1);
    for s in ["0a", "0b", "0c"] {
        assert!(l.get(s).expect("get").expect("rec").revocation.is_some());
    }
    assert_eq!(l.get("0c").expect("get").expect("c").chain_root(), "0a");
    // Once revoked, nothing in the chain can be renewed.
    let d = successor(&c, "0d");
    assert!(matches!(
        l.record_renewal("0c", &d, 14),
        Err(LedgerError::NotRenewable { why: "revoked", .. })
    ));
    assert!(l.get("0d").expect("get").is_none());
}

#[test]
fn a_renewal_is_refused_for_expired_or_already_renewed_certificates_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let l = Ledger::open_sled(dir.path(), LOCK_WAIT).expect("open");
    let a = CertRecord {
        not_after: 100,
        ..record("0a", "alice")
    };
    l.insert_new(&a).expect("insert");
    assert!(matches!(
        l.record_renewal("0a", &successor(&a, "0b"), 101),
        Err(LedgerError::NotRenewable { why: "expired", .. })
    ));
    l.record_renewal("0a", &successor(&a, "0c"), 99)
        .expect("renew");
    assert!(matches!(
        l.record_renewal("0a", &successor(&a, "0d"), 99),
        Err(LedgerError::AlreadyRenewed(_))
    ));
    let serials: Vec<String> = l
        .all()
        .expect("all")
        .into_iter()
        .map(|r| r.serial)
        .collect();
    assert_eq!(serials.len(), 2, "{serials:?}");
    assert_eq!(
        l.get("0a")
            .expect("get")
            .expect("a")
            .superseded_by
            .as_deref(),
        Some("0c")
    );
}

#[test]
fn revoke_is_compare_and_swap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let l = Ledger::open_sled(dir.path(), LOCK_WAIT).expect("open");
    l.insert_new(&record("01aa", "alice")).expect("insert");
    assert!(matches!(
        l.insert_new(&record("01aa", "mallory")),
        Err(LedgerError::DuplicateSerial(_))
    ));
    let r = l.revoke("01aa", Reason::KeyCompromise, 5).expect("revoke");
    assert_eq!(r.revocation.map(|x| x.reason), Some(Reason::KeyCompromise));
    assert!(matches!(
        l.revoke("01aa", Reason::Superseded, 6),
        Err(LedgerError::AlreadyRevoked { .. })
    ));
    assert!(matches!(
        l.revoke("02bb", Reason::Superseded, 6),
        Err(LedgerError::NotFound(_))
    ));
    assert_eq!(l.all().expect("all")[0].name, "alice");
}

#[test]
fn crl_numbers_only_go_up_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let l = Ledger::open_sled(dir.path(), LOCK_WAIT).expect("open");
        assert_eq!(l.next_crl_number().expect("n"), 1);
        assert_eq!(l.next_crl_number().expect("n"), 2);
    }
    let l = Ledger::open_sled(dir.path(), LOCK_WAIT).expect("reopen");
    assert_eq!(l.crl_number().expect("n"), 2);
    assert_eq!(l.next_crl_number().expect("n"), 3);
}
