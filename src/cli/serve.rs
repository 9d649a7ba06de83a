//! `serve` and `audit`.

use std::time::Duration;

use anyhow::{Context, Result};
use zeroize::Zeroizing;

use super::backend::load_signer;
use super::{AuditArgs, LogFormat, ServeArgs};
use crate::ca::{Authority, Home, RenewalPolicy};
use crate::server::{self, ServeOptions};
use crate::tls::lockout::{AdmissionPolicy, LockoutPolicy, DEFAULT_MAX_ENTRIES};

fn duration(flag: &str, s: &str) -> Result<Duration> {
    let secs = crate::pki::parse_ttl(s).with_context(|| flag.to_string())?;
    Ok(Duration::from_secs(secs.unsigned_abs()))
}

/// A duration flag where 0 (with or without a unit) means off.
fn optional(flag: &str, s: &str) -> Result<Option<Duration>> {
    if s.trim_end_matches(|c: char| c.is_ascii_alphabetic()) == "0" {
        return Ok(None);
    }
    duration(flag, s).map(Some)
}

/// Runs the server on a multi-threaded runtime until SIGINT/SIGTERM.
pub fn run(home: &Home, pass: Option<&Zeroizing<Vec<u8>>>, args: ServeArgs) -> Result<()> {
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
    };
    let authority = Authority::open(home)?;
    let signer = load_signer(&authority, pass)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(server::run(authority, signer, opts))
}

/// Prints audit events.
pub fn audit(home: &Home, args: AuditArgs) -> Result<()> {
    let since = match &args.since {
        Some(s) => {
            let secs = crate::pki::parse_ttl(s).context("--since")?;
            Some(time::OffsetDateTime::now_utc() - time::Duration::seconds(secs))
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
            out.push_str(&serde_json::to_string(e)?);
        } else {
            let who = match (&e.name, &e.role) {
                (Some(n), Some(r)) => format!("{n}({r})"),
                (Some(n), None) => n.clone(),
                _ => "-".into(),
            };
            out.push_str(&format!(
                "{}  {:<20} {:<22} {:<20} {:<12} {}",
                e.time,
                e.event,
                e.peer.as_deref().unwrap_or("-"),
                who,
                e.tool.as_deref().unwrap_or("-"),
                e.reason.as_deref().unwrap_or("")
            ));
        }
        out.push('\n');
    }
    super::commands::print_out(&out)
}
