//! `serve` and `audit`.

use std::time::Duration;

use anyhow::{Context, Result};
use zeroize::Zeroizing;

use super::backend::load_signer;
use super::{AuditArgs, LogFormat, ServeArgs};
use crate::ca::{Authority, Home, RenewalPolicy};
use crate::server::{self, ServeOptions};
use crate::tls::lockout::{AdmissionPolicy, LockoutPolicy, DEFAULT_MAX_ENTRIES};

/// Longest server duration (timeouts, lockout): the server adds these to clock readings, which
/// must not overflow.
const MAX_DURATION_DAYS: i64 = 36_500;

fn duration(flag: &str, s: &str) -> Result<Duration> {
    let secs = crate::pki::parse_ttl(s).with_context(|| flag.to_string())?;
    if secs > MAX_DURATION_DAYS * 86_400 {
        anyhow::bail!("{flag} {s}: too long (at most {MAX_DURATION_DAYS}d)");
    }
    Ok(Duration::from_secs(secs.unsigned_abs()))
}

/// A duration flag where 0 (with or without a unit) means off.
fn optional(flag: &str, s: &str) -> Result<Option<Duration>> {
    if s.trim_end_matches(|c: char| c.is_ascii_alphabetic()) == "0" {
        return Ok(None);
    }
    duration(flag, s).map(Some)
}

/// Parses a size: bytes, or a number with K/M/G (powers of 1024; `KiB`, `KB`, `k` alike).
fn parse_size(s: &str) -> Result<u64> {
    let bad =
        || anyhow::anyhow!("invalid size {s:?}: use bytes or a number with K, M or G (e.g. 64MiB)");
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(bad()),
    };
    n.checked_mul(1 << shift).ok_or_else(bad)
}

/// Runs the server on a multi-threaded runtime until SIGINT/SIGTERM.
pub fn run(home: &Home, pass: Option<&Zeroizing<Vec<u8>>>, args: ServeArgs) -> Result<()> {
    server::check_platform()?;
    if crate::server::ctl::server_running(&home.ctl_socket()) {
        anyhow::bail!(
            "a server already runs on {} (its control socket answers)",
            home.display()
        );
    }
    let opts = ServeOptions {
        listen: args.listen,
        sans: args.san,
        allowed_origins: args.allowed_origin,
        handshake_timeout: duration("--handshake-timeout", &args.handshake_timeout)?,
        max_connections: args.max_connections.max(1),
        admission: AdmissionPolicy {
            lockout: LockoutPolicy {
                threshold: args.lockout_threshold,
                window: duration("--lockout-window", &args.lockout_window)?,
                block: duration("--lockout-duration", &args.lockout_duration)?,
            },
            handshake_burst: args.handshake_burst,
            handshake_rate: args.handshake_rate,
            max_handshakes: args.max_handshakes_per_address,
            max_entries: DEFAULT_MAX_ENTRIES,
        },
        max_connections_per_cert: args.max_connections_per_cert,
        header_read_timeout: optional("--header-read-timeout", &args.header_read_timeout)?,
        idle_timeout: optional("--idle-timeout", &args.idle_timeout)?,
        max_body_bytes: args.max_body_bytes,
        renewal: RenewalPolicy {
            window_percent: args.renewal_window_percent,
            min_interval_secs: duration("--renewal-min-interval", &args.renewal_min_interval)?
                .as_secs()
                .try_into()
                .unwrap_or(i64::MAX),
            max_chain_age_secs: duration("--renewal-max-chain-age", &args.renewal_max_chain_age)?
                .as_secs()
                .try_into()
                .unwrap_or(i64::MAX),
        },
        allow_socket_issue: args.allow_socket_issue,
        audit_to_stderr: args.log_format == LogFormat::Json,
        audit_max_size: parse_size(&args.audit_max_size).context("--audit-max-size")?,
        audit_keep: usize::from(args.audit_keep),
        diagnostic_tools: args.diagnostic_tools,
        request_state_ttl: duration("--request-state-ttl", &args.request_state_ttl)?,
        revocation_max_stale: duration("--revocation-max-stale", &args.revocation_max_stale)?,
        ops_listen: match args.ops_listen {
            Some(a) if !a.ip().is_loopback() && !args.ops_public => anyhow::bail!(
                "--ops-listen {a} is not a loopback address: the metrics tell who is connected; \
                 add --ops-public to serve them there anyway"
            ),
            a => a,
        },
        proxy_from: crate::server::proxy::ProxyFrom::parse(&args.proxy_protocol_from)
            .map_err(|e| anyhow::anyhow!(e))?,
        oauth: match (args.oauth, &args.public_url, &args.login_url) {
            (true, Some(p), Some(l)) => {
                Some(crate::oauth::Endpoints::new(p, l).map_err(|e| anyhow::anyhow!(e))?)
            }
            _ => None,
        },
        tls_public: args.tls_cert.zip(args.tls_key),
        console: args.console,
        transport: args.transport,
        oauth_cimd: crate::server::oauth::CimdOptions {
            allow_private: args.oauth_allow_private_cimd,
            extra_ca: args.oauth_cimd_ca,
        },
    };
    let authority = Authority::open(home)?;
    let signer = load_signer(&authority, pass)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(server::run(authority, signer, opts))
}

/// Prints audit events. Everything printed comes from the log, which holds what peers sent
/// (claimed certificate names, tool names): human output escapes control, C1 and bidi
/// characters, and JSON output escapes them as `\uXXXX`.
pub fn audit(home: &Home, args: AuditArgs) -> Result<()> {
    let since = match &args.since {
        Some(s) => {
            let secs = crate::pki::parse_ttl(s).context("--since")?;
            let start = time::OffsetDateTime::now_utc()
                .checked_sub(time::Duration::seconds(secs))
                .ok_or_else(|| {
                    anyhow::anyhow!("--since {s}: too far back (before the year -9999)")
                })?;
            Some(start)
        }
        None => None,
    };
    let path = home.audit_log();
    let (events, bad) = crate::audit::read(&path, since, &args.event)
        .with_context(|| format!("read {}", path.display()))?;
    if bad > 0 {
        eprintln!(
            "mcp-zt: skipped {bad} unreadable line(s) in {}",
            path.display()
        );
    }
    let mut out = String::new();
    for e in &events {
        if args.json {
            out.push_str(&crate::audit::to_json_line(e)?);
        } else {
            out.push_str(&human_line(e));
        }
        out.push('\n');
    }
    super::commands::print_out(&out)
}

/// One event as a table row, every field escaped for the terminal. A refused certificate's
/// name is shown as `claimed:NAME`: it was never verified.
fn human_line(e: &crate::audit::Event) -> String {
    use crate::audit::escape_for_terminal as esc;
    let who = match (&e.name, &e.role, &e.claimed_name) {
        (Some(n), Some(r), _) => format!("{}({})", esc(n), esc(r)),
        (Some(n), None, _) => esc(n).into_owned(),
        (None, _, Some(c)) => format!("claimed:{}", esc(c)),
        _ => "-".into(),
    };
    let mut reason = esc(e.reason.as_deref().unwrap_or("")).into_owned();
    if let Some(n) = e.count {
        reason.push_str(&format!(" (x{n})"));
    }
    format!(
        "{}  {:<20} {:<22} {:<20} {:<12} {}",
        esc(&e.time),
        esc(&e.event),
        esc(e.peer.as_deref().unwrap_or("-")),
        who,
        esc(e.tool.as_deref().unwrap_or("-")),
        reason
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units_and_overflow_is_an_error() {
        assert_eq!(parse_size("0").expect("size"), 0);
        assert_eq!(parse_size("500").expect("size"), 500);
        assert_eq!(parse_size("64MiB").expect("size"), 64 << 20);
        assert_eq!(parse_size("2k").expect("size"), 2048);
        assert_eq!(parse_size("1G").expect("size"), 1 << 30);
        for bad in [
            "",
            "M",
            "-1",
            "1T",
            "12 MB",
            "99999999999999999999G",
            "17179869184G",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn human_lines_show_claimed_names_escaped() {
        let e = crate::audit::Event::new("handshake_rejected")
            .peer("127.0.0.1:5")
            .claimed(Some("01".into()), Some("x\n\u{1b}[2J".into()))
            .reason("unknown issuer");
        let line = human_line(&e);
        assert!(line.contains("claimed:x\\u{a}\\u{1b}[2J"), "{line}");
        assert!(!line.chars().any(crate::audit::is_unsafe_char), "{line:?}");
    }
}
