//! mcp-zt's dependency check, run by `scripts/test.sh`: the lockfiles against a snapshot of
//! the RustSec advisory database, and every package's license against the allow-list, both
//! with the reviewed exceptions of `dependency-policy.toml`.
//!
//! Why this small crate on `rustsec` and `spdx`, not cargo-deny or cargo-audit: CI cannot
//! reach GitHub, so the database is a folder of plain files (`../shared/advisory-db`), not a
//! git clone. `rustsec::Database::open` reads such a folder as it is (the crate's `git`
//! feature is off), the same parser and version matching cargo-audit uses. cargo-deny 0.20.2
//! with `--offline` refuses it: it looks in a folder named after a hash of the database URL
//! and reads the time of `.git/FETCH_HEAD` or of `HEAD` ("not a git repository"), then refuses
//! a copy older than its staleness limit, so the snapshot would have to be made a throwaway git
//! repository first. Both tools are also large builds from crates.io: `cargo install
//! cargo-deny` took 3 min 47 s here (about 170 packages), cargo-audit is about 380 packages
//! against this crate's 67, and checks no licenses. This crate builds, runs its tests and checks
//! the tree in about 25 s from scratch on two cores (debug build), and its rules are short
//! enough to read (`advisories.rs`, `licenses.rs`).
//!
//! It is its own workspace with its own `Cargo.lock`: nothing here enters the main build.

mod advisories;
mod licenses;
mod policy;

use policy::Policy;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: xtask <command> [options]

commands:
  check                  advisories, then licenses (what scripts/test.sh runs)
  advisories [LOCKFILE]  lockfiles against the advisory database
                         (default: Cargo.lock and xtask/Cargo.lock)
  licenses               the main tree's licenses, from `cargo metadata --locked`

options:
  --db DIR         the advisory database, a copy of rustsec/advisory-db (plain files or git);
                   default: $MCP_ZT_ADVISORY_DB, else ../shared/advisory-db beside the repository
  --policy FILE    default: dependency-policy.toml at the repository root
  --metadata FILE  licenses: read this `cargo metadata --format-version 1` output instead
  --root DIR       the repository root (default: the folder above xtask/)

exit status: 0 passed, 1 a finding fails the check, 2 the check could not run";

struct Args {
    command: String,
    lockfiles: Vec<PathBuf>,
    db: Option<PathBuf>,
    policy: Option<PathBuf>,
    metadata: Option<PathBuf>,
    root: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args_os().skip(1);
    let command = args
        .next()
        .and_then(|c| c.into_string().ok())
        .ok_or_else(|| "a command is required".to_string())?;
    let mut parsed = Args {
        command,
        lockfiles: Vec::new(),
        db: None,
        policy: None,
        metadata: None,
        root: Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .map(PathBuf::from)
                .ok_or(format!("{name} needs a value"))
        };
        match arg.to_str() {
            Some("--db") => parsed.db = Some(value("--db")?),
            Some("--policy") => parsed.policy = Some(value("--policy")?),
            Some("--metadata") => parsed.metadata = Some(value("--metadata")?),
            Some("--root") => parsed.root = value("--root")?,
            Some("-h" | "--help") => return Err(String::new()),
            Some(s) if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => parsed.lockfiles.push(PathBuf::from(arg)),
        }
    }
    // Paths in the report read ../shared/advisory-db, not xtask/../../shared/advisory-db.
    parsed.root = std::fs::canonicalize(&parsed.root).unwrap_or(parsed.root);
    Ok(parsed)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("xtask: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::from(2)
        }
    }
}

/// `Ok(passed)`, or `Err` when the check could not run at all.
fn run(args: &Args) -> Result<bool, String> {
    let policy_path = args
        .policy
        .clone()
        .unwrap_or_else(|| args.root.join("dependency-policy.toml"));
    let policy = Policy::load(&policy_path)?;
    match args.command.as_str() {
        "check" => {
            if !args.lockfiles.is_empty() {
                return Err("check takes no lockfile: use `advisories LOCKFILE`".to_string());
            }
            let advisories = check_advisories(args, &policy)?;
            let licenses = check_licenses(args, &policy)?;
            Ok(advisories && licenses)
        }
        "advisories" => check_advisories(args, &policy),
        "licenses" => check_licenses(args, &policy),
        other => Err(format!("unknown command {other}\n{USAGE}")),
    }
}

fn advisory_db_path(args: &Args) -> (PathBuf, &'static str) {
    if let Some(db) = &args.db {
        return (db.clone(), "--db");
    }
    match std::env::var_os("MCP_ZT_ADVISORY_DB") {
        Some(db) if !db.is_empty() => (PathBuf::from(db), "MCP_ZT_ADVISORY_DB"),
        _ => {
            let default = args.root.join("../shared/advisory-db");
            (
                std::fs::canonicalize(&default).unwrap_or(default),
                "the default",
            )
        }
    }
}

fn check_advisories(args: &Args, policy: &Policy) -> Result<bool, String> {
    let (db_path, from) = advisory_db_path(args);
    if !db_path.is_dir() {
        return Err(format!(
            "no advisory database at {} ({from}): put a copy of rustsec/advisory-db there \
             (plain files are enough: crates/, rust/), or point MCP_ZT_ADVISORY_DB (or --db) at one",
            db_path.display()
        ));
    }
    let db = advisories::open_db(&db_path)?;
    let paths = if args.lockfiles.is_empty() {
        vec![
            args.root.join("Cargo.lock"),
            args.root.join("xtask/Cargo.lock"),
        ]
    } else {
        args.lockfiles.clone()
    };
    let mut lockfiles = Vec::new();
    for path in &paths {
        let lockfile = rustsec::Lockfile::load(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let label = path
            .strip_prefix(&args.root)
            .unwrap_or(path)
            .display()
            .to_string();
        lockfiles.push((label, lockfile));
    }
    println!(
        "advisories: {} advisories read from {}",
        db.iter().count(),
        db_path.display()
    );
    let report = advisories::scan(&db, &lockfiles, &policy.advisories);
    print!("{}", report.render());
    Ok(!report.failed())
}

fn check_licenses(args: &Args, policy: &Policy) -> Result<bool, String> {
    let json = match &args.metadata {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        None => cargo_metadata(&args.root)?,
    };
    let metadata = licenses::parse_metadata(&json)?;
    let report = licenses::check(&metadata, &policy.licenses);
    print!("{}", report.render());
    Ok(!report.failed())
}

/// Every package of the main tree, for every target and platform, dev-dependencies included.
fn cargo_metadata(root: &Path) -> Result<String, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--locked",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata --locked failed ({})",
            output.status
        ));
    }
    String::from_utf8(output.stdout).map_err(|e| format!("cargo metadata printed non-UTF-8: {e}"))
}
