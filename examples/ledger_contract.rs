//! The ledger's contract, checked against a real PostgreSQL database (scripts/fleet-test.sh
//! runs it on a throwaway cluster): what the database itself must enforce, with many
//! connections racing, not a lock in one process.
//!
//! Usage: ledger_contract POSTGRES_URL [CA_FILE]   (the database should be empty)

use std::sync::{Arc, Barrier};

use mcp_zt::ledger::{
    CaMeta, CertKind, CertRecord, ForeignRevocation, Layout, Ledger, LedgerError, LedgerSpec,
    RECORD_VERSION,
};
use mcp_zt::pki::build::{KeyAlgorithm, Reason};

fn record(serial: &str) -> CertRecord {
    CertRecord {
        v: RECORD_VERSION,
        serial: serial.into(),
        name: format!("contract-{serial}"),
        role: Some("viewer".into()),
        kind: CertKind::Client,
        spiffe_id: format!("spiffe://contract/client/{serial}"),
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

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        anyhow::bail!("usage: ledger_contract POSTGRES_URL [CA_FILE]");
    };
    let spec = LedgerSpec::new(&url, args.next().map(Into::into))?;
    let open = || Ledger::open(std::path::Path::new("unused"), Some(&spec));
    let ledger = open()?;
    anyhow::ensure!(ledger.all()?.is_empty(), "the database is not empty");

    // Opening again (migrations already applied) is a no-op.
    drop(open()?);

    ledger.set_ca_meta(&CaMeta {
        v: RECORD_VERSION,
        name: "contract".into(),
        trust_domain: "contract".into(),
        role_oid: Default::default(),
        key_algorithm: KeyAlgorithm::EcdsaP256,
        key_encrypted: false,
        created_at: 1,
        not_after: 2,
        layout: Layout::Single,
        root_offline: false,
        crl_url: None,
    })?;

    // 1. A serial is written once: 8 processes' worth of connections insert the same one.
    let opener = || open().expect("open");
    let winners = race(8, opener, |l| l.insert_new(&record("0a0b")).is_ok());
    anyhow::ensure!(winners == 1, "{winners} inserts of one serial succeeded");
    println!("ok: 8 concurrent inserts of one serial: exactly 1 succeeded");
    match ledger.insert_new(&record("0a0b")) {
        Err(LedgerError::DuplicateSerial(_)) => {}
        other => anyhow::bail!("duplicate insert: {other:?}"),
    }

    // 2. Compare-and-swap revoke: 8 racing revokes, one revocation.
    let winners = race(8, opener, |l| {
        l.revoke("0a0b", Reason::KeyCompromise, 5).is_ok()
    });
    anyhow::ensure!(winners == 1, "{winners} revokes of one serial succeeded");
    match ledger.revoke("0a0b", Reason::KeyCompromise, 6) {
        Err(LedgerError::AlreadyRevoked { .. }) => {}
        other => anyhow::bail!("second revoke: {other:?}"),
    }
    println!("ok: 8 concurrent revokes of one serial: exactly 1 succeeded, then AlreadyRevoked");

    // 3. CRL numbers: 8 connections x 25 each, all distinct and increasing per caller.
    let start = ledger.crl_number()?;
    let numbers = Arc::new(std::sync::Mutex::new(Vec::new()));
    race(8, opener, |l| {
        let mut last = 0;
        for _ in 0..25 {
            let n = l.next_crl_number().expect("crl number");
            assert!(n > last, "CRL number went down for one caller");
            last = n;
            numbers.lock().expect("lock").push(n);
        }
        true
    });
    let mut all = numbers.lock().expect("lock").clone();
    all.sort_unstable();
    all.dedup();
    anyhow::ensure!(
        all.len() == 200,
        "{} distinct CRL numbers of 200",
        all.len()
    );
    anyhow::ensure!(
        ledger.crl_number()? == start + 200,
        "the counter skipped or repeated"
    );
    ledger.raise_crl_number(1)?;
    anyhow::ensure!(
        ledger.crl_number()? == start + 200,
        "raise lowered the counter"
    );
    println!("ok: 200 concurrent CRL numbers: all distinct, the counter never went down");

    // 4. Renewal racing revocation of the same chain: either the renewal lands and the chain
    //    revocation takes the successor too, or the renewal fails. Never a live successor of
    //    a revoked chain.
    for round in 0..20 {
        let old = format!("{:04x}", 0x1000 + round);
        let new = format!("{:04x}", 0x2000 + round);
        ledger.insert_new(&record(&old))?;
        let mut succ = record(&new);
        succ.renewed_from = Some(old.clone());
        let barrier = Arc::new(Barrier::new(2));
        let (b1, b2) = (barrier.clone(), barrier);
        let (o1, o2) = (old.clone(), old.clone());
        let (l1, l2) = (open()?, open()?);
        let renew = std::thread::spawn(move || {
            let l = l1;
            b1.wait();
            l.record_renewal(&o1, &succ, 10).is_ok()
        });
        let revoke = std::thread::spawn(move || {
            let l = l2;
            b2.wait();
            l.revoke_chain(&o2, Reason::KeyCompromise, 10)
                .expect("revoke chain")
        });
        let renewed = renew.join().expect("renew thread");
        revoke.join().expect("revoke thread");
        let successor = ledger.get(&new)?;
        match (renewed, successor) {
            (true, Some(s)) if s.revocation.is_some() => {}
            (false, None) => {}
            (r, s) => anyhow::bail!("round {round}: renewed={r}, successor={s:?}"),
        }
    }
    println!("ok: 20 renewal/revocation races: never a live successor of a revoked chain");

    // 5. The ledger's records read back as written.
    let all = ledger.all()?;
    anyhow::ensure!(all.len() == 1 + 20 + all.iter().filter(|r| r.renewed_from.is_some()).count());
    println!("ok: {} records read back", all.len());

    // 6. Foreign revocations: what one replica records, every other reads; 8 replicas that
    // record the same serial at once keep one row and the first sighting.
    let foreign = |seen_at: i64| ForeignRevocation {
        key: "corp:00112233445566778899aabbccddeeff:0a".into(),
        trust: "corp".into(),
        issuer: "CN=Corp Root".into(),
        serial: "0a".into(),
        seen_at,
        until: 4_000_000_000,
    };
    let new = race(8, opener, |l| {
        l.remember_foreign_revocations(&[foreign(100)])
            .is_ok_and(|n| n == 1)
    });
    anyhow::ensure!(
        new == 1,
        "{new} replicas recorded one foreign serial as new"
    );
    anyhow::ensure!(ledger.remember_foreign_revocations(&[foreign(999)])? == 0);
    let other = open()?;
    let seen = other.foreign_revocations(1_000)?;
    anyhow::ensure!(
        seen == vec![foreign(100)],
        "another connection read {seen:?}"
    );
    anyhow::ensure!(other.foreign_revocations(4_000_000_000)?.is_empty());
    let gone = other.forget_foreign_revocations(&[foreign(0).key])?;
    anyhow::ensure!(gone.len() == 1 && ledger.foreign_revocations(1_000)?.is_empty());
    println!("ok: foreign revocations are shared, recorded once, expire with their CA, and only removeFromCRL forgets them");
    Ok(())
}

/// Opens `n` ledgers (one connection each), releases the `n` threads together to run `f`
/// on theirs; returns how many returned true.
fn race(n: usize, open: impl Fn() -> Ledger + Sync, f: impl Fn(&Ledger) -> bool + Sync) -> usize {
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (b, f, open) = (&barrier, &f, &open);
                s.spawn(move || {
                    let l = open();
                    b.wait();
                    f(&l)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(false))
            .filter(|ok| *ok)
            .count()
    })
}
