//! Benchmark setup: adds N synthetic *revoked* client records to a throwaway CA home, then
//! republishes the CRL, so `scripts/bench.sh` can measure handshakes and startup against large
//! revocation lists. Never run it on a real CA: the records stand for no real certificate.
//!
//! Usage: seed_ledger HOME N

use mcp_zt::ca::{Authority, Home, Signer};
use mcp_zt::ledger::{CertKind, CertRecord, Revocation, RECORD_VERSION};
use mcp_zt::pki::{self, build::Reason};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(home), Some(n)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: seed_ledger HOME N");
    };
    let n: usize = n.parse()?;
    let home = Home::new(home);
    let authority = Authority::open(&home)?;
    let signer = Signer::load(&home, None)?;
    let now = pki::now().unix_timestamp();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let serial = hex::encode(pki::random_serial()?);
        batch.push(CertRecord {
            v: RECORD_VERSION,
            serial,
            name: format!("bench-synthetic-{i}"),
            role: Some("viewer".into()),
            kind: CertKind::Client,
            spiffe_id: format!("spiffe://bench/client/bench-synthetic-{i}"),
            sans: vec![],
            not_before: now - 60,
            not_after: now + 86_400,
            issued_at: now,
            cert_pem: String::new(),
            revocation: Some(Revocation {
                at: now,
                reason: Reason::KeyCompromise,
            }),
            renewed_from: None,
            superseded_by: None,
            chain_root: None,
            chain_started: None,
            issuer: signer.current().id().map(str::to_string),
        });
        if batch.len() == 10_000 {
            authority.ledger().insert_many(&batch)?;
            batch.clear();
        }
    }
    authority.ledger().insert_many(&batch)?;
    authority.publish_crl(&signer)?;
    eprintln!("seeded {n} revoked records into {}", home.display());
    Ok(())
}
