//! The load generator's command line.

use std::path::PathBuf;

pub fn usage() -> ! {
    eprintln!(
        "usage: loadgen MODE --addr HOST:PORT (--ca CA --cert CERT --key KEY | --ca CA --bearer TOKEN | --plain) [options]\n\
         modes: handshake | calls | idle | revocation | soak\n\
         options: --concurrency N --duration SECS --pid PID (repeatable) --static --legacy --stateless\n\
         \x20        --tool NAME (the tool called, default whoami)\n\
         \x20        --count N --hold SECS (idle) | --trials N --mcp-zt BIN --home HOME --prefix P (revocation)"
    );
    std::process::exit(2)
}

#[derive(Debug, Default)]
pub struct Args {
    pub mode: String,
    pub addr: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub concurrency: usize,
    pub duration: f64,
    pub pids: Vec<u32>,
    pub static_reply: bool,
    pub legacy: bool,
    /// calls: session-less 2026-07-28 calls on kept-alive connections instead of a session.
    pub stateless: bool,
    pub count: usize,
    pub hold: f64,
    pub trials: usize,
    pub mcp_zt: PathBuf,
    pub home: PathBuf,
    pub prefix: String,
    pub plain: bool,
    pub tool: String,
    /// An OAuth access token sent on every request (then no client certificate is needed).
    pub bearer: String,
}

pub fn parse_args() -> Args {
    let mut a = Args {
        concurrency: 1,
        duration: 5.0,
        hold: 5.0,
        tool: "whoami".into(),
        ..Args::default()
    };
    let mut it = std::env::args().skip(1);
    a.mode = it.next().unwrap_or_else(|| usage());
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--addr" => a.addr = val(),
            "--ca" => a.ca = val().into(),
            "--cert" => a.cert = val().into(),
            "--key" => a.key = val().into(),
            "--concurrency" => a.concurrency = val().parse().unwrap_or_else(|_| usage()),
            "--duration" => a.duration = val().parse().unwrap_or_else(|_| usage()),
            "--pid" => a.pids.push(val().parse().unwrap_or_else(|_| usage())),
            "--static" => a.static_reply = true,
            "--legacy" => a.legacy = true,
            "--stateless" => a.stateless = true,
            "--count" => a.count = val().parse().unwrap_or_else(|_| usage()),
            "--hold" => a.hold = val().parse().unwrap_or_else(|_| usage()),
            "--trials" => a.trials = val().parse().unwrap_or_else(|_| usage()),
            "--mcp-zt" => a.mcp_zt = val().into(),
            "--home" => a.home = val().into(),
            "--prefix" => a.prefix = val(),
            "--plain" => a.plain = true,
            "--tool" => a.tool = val(),
            "--bearer" => a.bearer = val(),
            _ => usage(),
        }
    }
    // Revocation and soak are about client certificates: they need TLS.
    let tls_only = matches!(a.mode.as_str(), "revocation" | "soak");
    let needed: &[&PathBuf] = if a.bearer.is_empty() {
        &[&a.ca, &a.cert, &a.key]
    } else {
        &[&a.ca]
    };
    let missing_tls = needed.iter().any(|p| p.as_os_str().is_empty());
    if a.addr.is_empty() || (a.plain && tls_only) || (!a.plain && missing_tls) {
        usage()
    }
    a
}
