//! Command handlers: each opens what it needs, calls the library, prints the result.

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;
use zeroize::Zeroizing;

use super::backend::{self, Backend};
use super::ca_cmd;
use super::output::{self, CertView};
use super::{CaCommand, Cli, Command, IssueArgs};
use crate::ca::{self, Home, IssueRequest};
use crate::fsutil;
use crate::pki::{self, inspect};

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let spec = cli
        .ledger
        .as_deref()
        .map(|url| crate::ledger::LedgerSpec::new(url, cli.ledger_ca.clone()))
        .transpose()?;
    let home = Home::new(&cli.home).with_ledger(spec);
    let passphrase = cli
        .passphrase_file
        .as_deref()
        .map(ca::read_passphrase)
        .transpose()?;
    match cli.command {
        Command::Ca(CaCommand::Init {
            name,
            trust_domain,
            role_oid,
            key_type,
            offline_root,
            import_cert,
            import_key,
            single,
            crl_url,
            json,
        }) => ca_cmd::init(
            &home,
            passphrase,
            ca_cmd::InitArgs {
                name,
                trust_domain,
                role_oid,
                key_type,
                offline_root,
                import: import_cert.zip(import_key),
                single,
                crl_url,
                json,
            },
        ),
        Command::Ca(CaCommand::Rotate {
            root_key,
            root_passphrase_file,
            import_cert,
            import_key,
            root,
            offline_root,
            finish,
            json,
        }) => ca_cmd::rotate(
            &home,
            passphrase.as_ref(),
            ca_cmd::RotateArgs {
                root_key,
                root_passphrase_file,
                import: import_cert.zip(import_key),
                root: match (root, finish) {
                    (false, _) => None,
                    (true, false) => Some(ca_cmd::RootStep::Roll {
                        offline: offline_root,
                    }),
                    (true, true) => Some(ca_cmd::RootStep::Finish),
                },
                json,
            },
        ),
        Command::Issue(args) => issue(&home, passphrase.as_ref(), args),
        Command::List { json } => {
            let (records, _) = Backend::open(&home)?.records()?;
            let now = pki::now().unix_timestamp();
            let views: Vec<CertView> = records.iter().map(|r| CertView::new(r, now)).collect();
            if json {
                print_json(&views)
            } else {
                print_out(&output::table(&views))
            }
        }
        Command::Show { target, json } => {
            let (records, meta) = Backend::open(&home)?.records()?;
            let now = pki::now().unix_timestamp();
            let records = backend::find(records, &target)?;
            #[derive(Serialize)]
            struct ShowView {
                #[serde(flatten)]
                cert: CertView,
                decoded: Option<inspect::CertFields>,
            }
            let views: Vec<ShowView> = records
                .iter()
                .map(|r| ShowView {
                    cert: CertView::new(r, now),
                    decoded: inspect::pem_to_der(&r.cert_pem)
                        .and_then(|der| inspect::fields_from_der(&der, &meta.role_oid))
                        .ok(),
                })
                .collect();
            if json {
                return print_json(&views);
            }
            let text: Vec<String> = views
                .iter()
                .map(|v| output::detail(&v.cert, v.decoded.as_ref()))
                .collect();
            print_out(&text.join("\n"))
        }
        Command::Revoke {
            target,
            reason,
            json,
        } => {
            let revoked = Backend::open(&home)?.revoke(passphrase.as_ref(), &target, reason)?;
            let now = pki::now().unix_timestamp();
            let views: Vec<CertView> = revoked.iter().map(|r| CertView::new(r, now)).collect();
            for v in &views {
                eprintln!(
                    "revoked {} ({}) reason {}",
                    v.serial,
                    v.name,
                    reason.as_str()
                );
            }
            eprintln!("CRL republished at {}", home.crl().display());
            if json {
                print_json(&views)
            } else {
                print_out(&output::table(&views))
            }
        }
        Command::Crl { out } => {
            let pem = current_crl(&home, passphrase.as_ref())?;
            if let Some(path) = out {
                fsutil::write_atomic(&path, pem.as_bytes(), fsutil::PUBLIC_MODE)?;
            }
            print_out(&pem)
        }
        Command::Serve(args) => super::serve::run(&home, passphrase.as_ref(), *args),
        Command::Audit(args) => super::serve::audit(&home, args),
        Command::Connect(args) => {
            let code = super::connect::run(&home, args)?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::ClientConfig(args) => super::connect::client_config(&home, args),
        Command::Renew(args) => super::connect::renew(&home, args),
        Command::Doctor { repair, json } => doctor(&home, passphrase.as_ref(), repair, json),
        Command::Export(args) => {
            if !args.p12 {
                anyhow::bail!("say which format: --p12 (the only export format)");
            }
            let dir = home.clients();
            let out = args
                .out
                .unwrap_or_else(|| dir.join(format!("{}.p12", args.name)));
            pki::validate_name(&args.name)?;
            write_p12(
                &home,
                &args.name,
                &dir.join(format!("{}.crt", args.name)),
                &dir.join(format!("{}.key", args.name)),
                &args.p12_password_file,
                &out,
            )?;
            eprintln!("wrote {}", out.display());
            Ok(())
        }
        Command::Upstream(cmd) => super::upstream::run(&home, cmd),
        Command::Oauth(cmd) => super::oauth::run(&home, cmd),
        Command::Link(args) => super::link::link(&home, args),
        Command::Unlink { upstream, name } => super::link::unlink(&home, upstream, name),
        Command::Links { name, json } => super::link::links(&home, name, json),
        Command::Secret(cmd) => super::link::secret(&home, cmd),
        Command::Secrets(cmd) => super::link::secrets(&home, cmd),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "mcp-zt", &mut out);
            print_out(&String::from_utf8_lossy(&out))
        }
        Command::Man { markdown: true } => {
            let cmd = <Cli as clap::CommandFactory>::command();
            print_out(&super::reference::markdown(&cmd))
        }
        Command::Man { markdown: false } => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            print_out(&String::from_utf8_lossy(&out))
        }
        Command::Ledger(super::LedgerCommand::Migrate { to, json }) => {
            ledger_migrate(&home, &to, cli.ledger_ca, json)
        }
        Command::Roles { json } => {
            let policy = ca::load_policy(&home)?;
            #[derive(Serialize)]
            struct RoleView {
                role: String,
                inherits: Vec<String>,
                effective: Vec<String>,
                /// The built-in tools this role may call.
                tools: Vec<String>,
                /// `allow` rules in force (own and inherited).
                allow: Vec<String>,
                /// `deny` rules in force (own and inherited); they win over any grant.
                deny: Vec<String>,
            }
            let mut builtin: Vec<&str> = crate::mcp::tools::all()
                .iter()
                .map(|t| t.name.as_ref())
                .collect();
            builtin.sort_unstable();
            let views: Vec<RoleView> = policy
                .roles()
                .map(|r| {
                    let (allow, deny) = policy.effective_rules(r);
                    RoleView {
                        role: r.to_string(),
                        inherits: policy.direct_parents(r).to_vec(),
                        effective: policy.effective_roles(r).into_iter().collect(),
                        tools: policy
                            .allowed_of(r, &builtin)
                            .into_iter()
                            .map(str::to_string)
                            .collect(),
                        allow,
                        deny,
                    }
                })
                .collect();
            if json {
                return print_json(&views);
            }
            let mut out = format!("{:<12}  {:<20}  TOOLS\n", "ROLE", "INHERITS");
            for v in views {
                let inherits = if v.inherits.is_empty() {
                    "-".to_string()
                } else {
                    v.inherits.join(", ")
                };
                out.push_str(&format!(
                    "{:<12}  {:<20}  {}\n",
                    v.role,
                    inherits,
                    v.tools.join(", ")
                ));
                if !v.allow.is_empty() {
                    out.push_str(&format!("{:<36}allow: {}\n", "", v.allow.join(", ")));
                }
                if !v.deny.is_empty() {
                    out.push_str(&format!("{:<36}deny:  {}\n", "", v.deny.join(", ")));
                }
            }
            print_out(&out)
        }
    }
}

/// The file `issue --bundle` writes for the holder, planned before anything is issued so that a
/// missing password or folder refuses the command instead of leaving a certificate behind.
enum BundleOut {
    /// A PKCS#12 file (.p12 or .pfx) and its password.
    Pkcs12 {
        path: std::path::PathBuf,
        password: Zeroizing<String>,
    },
    /// One PEM file: key, certificate, CA certificate.
    Pem { path: std::path::PathBuf },
}

impl BundleOut {
    fn plan(path: &std::path::Path, password_file: Option<&std::path::Path>) -> Result<BundleOut> {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => std::path::Path::new("."),
        };
        if !parent.is_dir() {
            anyhow::bail!(
                "--bundle {}: the folder {} does not exist",
                path.display(),
                parent.display()
            );
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if !matches!(ext.as_deref(), Some("p12" | "pfx")) {
            if password_file.is_some() {
                eprintln!(
                    "mcp-zt: note: {} is a PEM bundle: its key is not encrypted (the password is not used for it; name the file .p12 for a password-protected PKCS#12)",
                    path.display()
                );
            }
            return Ok(BundleOut::Pem {
                path: path.to_path_buf(),
            });
        }
        let Some(password_file) = password_file else {
            anyhow::bail!(
                "--bundle {}: a PKCS#12 bundle needs a password: --p12-password-file FILE",
                path.display()
            );
        };
        Ok(BundleOut::Pkcs12 {
            path: path.to_path_buf(),
            password: read_p12_password(password_file)?,
        })
    }

    fn path(&self) -> &std::path::Path {
        match self {
            BundleOut::Pkcs12 { path, .. } | BundleOut::Pem { path } => path,
        }
    }

    /// Writes the bundle of `cert` and `key` with the CA of HOME (0600, atomically).
    fn write(
        &self,
        home: &Home,
        alias: &str,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<()> {
        let creds = holder_files(home, cert, key)?;
        let bytes = match self {
            BundleOut::Pkcs12 { password, .. } => {
                Zeroizing::new(pki::p12::bundle(alias, &creds, password)?)
            }
            BundleOut::Pem { .. } => Zeroizing::new(creds.to_pem_bundle()?.as_bytes().to_vec()),
        };
        fsutil::write_atomic(self.path(), &bytes, fsutil::SECRET_MODE)?;
        Ok(())
    }
}

fn issue(home: &Home, passphrase: Option<&Zeroizing<Vec<u8>>>, args: IssueArgs) -> Result<()> {
    let ttl_secs = pki::parse_ttl(&args.ttl)?;
    let bundle = args
        .bundle
        .as_deref()
        .map(|p| BundleOut::plan(p, args.p12_password_file.as_deref()))
        .transpose()?;
    let issued = Backend::open(home)?.issue(
        passphrase,
        IssueRequest {
            name: args.name,
            role: args.role,
            ttl_secs,
            out_dir: args.out,
            sans: args.san,
        },
    )?;
    let p12_path = match (&args.p12_password_file, args.p12) {
        (Some(pass), true) => {
            let out = issued.key_path.with_extension("p12");
            write_p12(
                home,
                &issued.record.name,
                &issued.cert_path,
                &issued.key_path,
                pass,
                &out,
            )?;
            Some(out)
        }
        _ => None,
    };
    if let Some(b) = &bundle {
        b.write(
            home,
            &issued.record.name,
            &issued.cert_path,
            &issued.key_path,
        )?;
    }
    // The extra files, listed under the certificate and key.
    let mut extra = String::new();
    if let Some(p) = &p12_path {
        extra.push_str(&format!("\n  PKCS#12:     {}", p.display()));
    }
    if let Some(b) = &bundle {
        extra.push_str(&format!(
            "\n  bundle:      {} (the one file to hand to the holder)",
            b.path().display()
        ));
    }
    let now = pki::now().unix_timestamp();
    if args.json {
        if !extra.is_empty() {
            eprintln!("{}", extra.trim_start_matches('\n'));
        }
        #[derive(Serialize)]
        struct IssuedView {
            #[serde(flatten)]
            cert: CertView,
            cert_path: String,
            key_path: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            bundle_path: Option<String>,
        }
        print_json(&IssuedView {
            cert: CertView::new(&issued.record, now),
            cert_path: issued.cert_path.display().to_string(),
            key_path: issued.key_path.display().to_string(),
            bundle_path: bundle.as_ref().map(|b| b.path().display().to_string()),
        })
    } else {
        eprintln!(
            "issued {} certificate for {:?}, valid until {}\n  certificate: {}\n  key:         {}{extra}",
            issued.record.role.as_deref().unwrap_or("-"),
            issued.record.name,
            pki::rfc3339(issued.record.not_after),
            issued.cert_path.display(),
            issued.key_path.display()
        );
        print_out(&format!("{}\n", issued.record.serial))
    }
}

/// `doctor`: prints findings; exit 1 when any is an error.
fn doctor(home: &Home, pass: Option<&Zeroizing<Vec<u8>>>, repair: bool, json: bool) -> Result<()> {
    if crate::server::ctl::server_running(&home.ctl_socket()) {
        anyhow::bail!("a server runs on this HOME and owns the ledger: stop it to run doctor");
    }
    let authority = ca::Authority::open(home)?;
    let mut findings = ca::doctor::check(&authority)?;
    if repair && findings.iter().any(|f| f.check == "crl") {
        let signer = backend::load_signer(&authority, pass)?;
        authority.publish_crl(&signer)?;
        eprintln!("republished {}", home.crl().display());
        findings = ca::doctor::check(&authority)?;
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == ca::doctor::Severity::Error)
        .count();
    if json {
        print_json(&findings)?;
    } else {
        let mut out = String::new();
        for f in &findings {
            let sev = match f.severity {
                ca::doctor::Severity::Error => "ERROR",
                ca::doctor::Severity::Warning => "warning",
                ca::doctor::Severity::Info => "info",
            };
            out.push_str(&format!("{sev:<8} {:<12} {}\n", f.check, f.message));
        }
        out.push_str(&format!(
            "{} error(s), {} warning(s)\n",
            errors,
            findings
                .iter()
                .filter(|f| f.severity == ca::doctor::Severity::Warning)
                .count()
        ));
        print_out(&out)?;
    }
    if errors > 0 {
        anyhow::bail!("{errors} error(s) found in {}", home.display());
    }
    Ok(())
}

/// Reads a PKCS#12 password file (mode 0600, first line, at least 8 characters).
fn read_p12_password(path: &std::path::Path) -> Result<Zeroizing<String>> {
    let bytes = ca::read_passphrase(path)?;
    let text = std::str::from_utf8(&bytes).context("the PKCS#12 password must be UTF-8")?;
    if text.chars().count() < pki::p12::MIN_PASSWORD_LEN {
        anyhow::bail!(
            "the PKCS#12 password in {} must have at least {} characters",
            path.display(),
            pki::p12::MIN_PASSWORD_LEN
        );
    }
    Ok(Zeroizing::new(text.to_string()))
}

/// The certificate and key files `issue` wrote, with the CA of HOME.
fn holder_files(
    home: &Home,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<pki::holder::HolderCredentials> {
    pki::keyfile::check_permissions(key)?;
    let ca = home.ca_cert();
    let (c, k, a) = (
        Zeroizing::new(fsutil::read(cert)?),
        Zeroizing::new(fsutil::read(key)?),
        Zeroizing::new(fsutil::read(&ca)?),
    );
    pki::holder::HolderCredentials::from_pem_parts(&c, &k, &a)
        .with_context(|| format!("{} / {} / {}", cert.display(), key.display(), ca.display()))
}

/// Writes a PKCS#12 bundle of a certificate and key (0600).
fn write_p12(
    home: &Home,
    alias: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
    password_file: &std::path::Path,
    out: &std::path::Path,
) -> Result<()> {
    BundleOut::Pkcs12 {
        path: out.to_path_buf(),
        password: read_p12_password(password_file)?,
    }
    .write(home, alias, cert, key)
}

/// The CRL in HOME, re-signed first if it is missing, unreadable, or past half its lifetime.
fn current_crl(home: &Home, passphrase: Option<&Zeroizing<Vec<u8>>>) -> Result<String> {
    if let Ok(bytes) = fsutil::read(&home.crl()) {
        if let Ok(text) = String::from_utf8(bytes) {
            if ca::crl_is_fresh(&text) {
                return Ok(text);
            }
        }
    }
    Backend::open(home)?.publish_crl(passphrase)
}

pub(super) fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    print_out(&text)
}

/// Writes to stdout; a closed pipe (e.g. `| head`) is not an error.
pub(super) fn print_out(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// `ledger migrate --to URL`: HOME's sled ledger into PostgreSQL, verified.
fn ledger_migrate(home: &Home, to: &str, ca: Option<std::path::PathBuf>, json: bool) -> Result<()> {
    use crate::ledger::{migrate, Ledger, LedgerSpec};
    if home.ledger_spec().is_some() {
        anyhow::bail!(
            "ledger migrate copies HOME/ledger (sled); leave --ledger/MCP_ZT_LEDGER out and \
             name the target with --to"
        );
    }
    if !home.ledger().is_dir() {
        anyhow::bail!("no sled ledger at {}", home.ledger().display());
    }
    let src = Ledger::open(&home.ledger(), None).with_context(|| {
        format!(
            "opening {} (is `mcp-zt serve` running on it?)",
            home.ledger().display()
        )
    })?;
    let dst = Ledger::open(&home.ledger(), Some(&LedgerSpec::new(to, ca)?))?;
    let report = migrate::copy_and_verify(&src, &dst)?;
    if json {
        return print_json(&report);
    }
    println!(
        "{} {} records ({} revoked) into {}; CRL number {}",
        if report.resumed { "verified" } else { "copied" },
        report.records,
        report.revoked,
        report.target,
        report.crl_number
    );
    println!("verified: every record and the CA metadata read back equal; the CRL number did not go down");
    println!(
        "from now on run every command of this CA with --ledger URL (or MCP_ZT_LEDGER); \
         HOME/ledger is kept for reference, read-only: commands that would write it are refused"
    );
    Ok(())
}
