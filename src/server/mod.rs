//! `mcp-zt serve`: wires the CA, TLS, HTTP and MCP layers together and runs them until a signal.
//!
//! Serving needs a unix system (Linux, macOS): the control socket, the uid check on it, the
//! HOME mode check and SIGHUP reloads have no Windows counterpart here. Elsewhere [`run`]
//! refuses at once; the holder's side (`connect`, `client-config`, `renew`) is portable.

pub mod accept;
pub mod certs;
pub mod ctl;
pub mod gateway;
pub mod http;
pub mod link;
pub mod metrics;
pub mod native;
pub mod oauth;
pub mod ops;
pub mod proxy;
pub mod public_cert;
pub mod replica;
pub mod state;
#[cfg(unix)]
pub mod trust;

use std::net::SocketAddr;
#[cfg(unix)]
use std::sync::{Arc, RwLock};
use std::time::Duration;

#[cfg(unix)]
use anyhow::Context;
use anyhow::Result;
#[cfg(unix)]
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio_util::sync::CancellationToken;

#[cfg(unix)]
use crate::audit::{Audit, AuditSettings, Event};
use crate::ca::{self, Authority, Signer};
#[cfg(unix)]
use crate::tls::lockout::Admission;
use crate::tls::lockout::AdmissionPolicy;
#[cfg(unix)]
use crate::tls::{self, RevocationSet, ServerCert, TlsSettings};
#[cfg(unix)]
use state::AppState;

/// Options of `serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Extra names for the server certificate (and allowed Host headers).
    pub sans: Vec<String>,
    /// Allowed Origin header values.
    pub allowed_origins: Vec<String>,
    /// TLS handshake timeout.
    pub handshake_timeout: Duration,
    /// Connection cap.
    pub max_connections: usize,
    /// Handshake rate, concurrent handshakes and certificate lockout per address.
    pub admission: AdmissionPolicy,
    /// Most simultaneous connections of one certificate (0: no cap).
    pub max_connections_per_cert: usize,
    /// HTTP/1.1 request-head timeout (None: off).
    pub header_read_timeout: Option<Duration>,
    /// Idle connection timeout (None: off).
    pub idle_timeout: Option<Duration>,
    /// Request body limit.
    pub max_body_bytes: usize,
    /// Also print audit lines (JSON) on stderr.
    pub audit_to_stderr: bool,
    /// Renewal rules.
    pub renewal: ca::RenewalPolicy,
    /// `issue` over the control socket without the CA passphrase.
    pub allow_socket_issue: bool,
    /// Audit file size that triggers rotation (0: never).
    pub audit_max_size: u64,
    /// Rotated audit files kept.
    pub audit_keep: usize,
    /// Serve the diagnostic `test_*` tools (protocol checks).
    pub diagnostic_tools: bool,
    /// How long an `input_required` answer may be continued.
    pub request_state_ttl: Duration,
    /// With a shared ledger: how long the server keeps admitting new handshakes after it
    /// lost the ledger (revocations made meanwhile would be unknown to it).
    pub revocation_max_stale: Duration,
    /// The operations listener (`/metrics`, `/healthz`, `/readyz`, `/crl`), if any.
    pub ops_listen: Option<std::net::SocketAddr>,
    /// Load balancers whose connections start with a PROXY v2 header.
    pub proxy_from: proxy::ProxyFrom,
    /// `--oauth`: the public MCP URL and the login name.
    pub oauth: Option<crate::oauth::Endpoints>,
    /// `--tls-cert`, `--tls-key`: served for the public names.
    pub tls_public: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// `--oauth-allow-private-cimd`, `--oauth-cimd-ca`.
    pub oauth_cimd: oauth::CimdOptions,
    /// Serve the browser console at /console/ (on the login name with OAuth).
    pub console: bool,
    /// Which transport serves `/mcp`.
    pub transport: native::Transport,
}

/// Runs the server until SIGINT or SIGTERM.
#[cfg(unix)]
pub async fn run(authority: Authority, signer: Signer, opts: ServeOptions) -> Result<()> {
    let home = authority.home().clone();
    check_home_mode(home.dir())?;
    if let crate::ledger::Ledger::Sled(s) = authority.ledger() {
        if let Some(to) = s.moved_to() {
            anyhow::bail!(
                "HOME/ledger was moved to {to} by `ledger migrate`: serving from it would miss \
                 every revocation made since; run serve with --ledger URL (or MCP_ZT_LEDGER)"
            );
        }
    }
    let policy = Arc::new(RwLock::new(Arc::new(authority.policy()?)));
    let all = authority.ledger().all()?;
    let revoked = RevocationSet::new(
        all.iter()
            .filter(|r| r.revocation.is_some())
            .map(|r| r.serial.clone()),
    );
    let audit = Audit::open_with(
        &home.audit_log(),
        AuditSettings {
            to_stderr: opts.audit_to_stderr,
            max_size: opts.audit_max_size,
            keep: opts.audit_keep,
        },
    )
    .with_context(|| format!("open {}", home.audit_log().display()))?;

    let oauth_state = match &opts.oauth {
        Some(endpoints) => Some(Arc::new(oauth::start(
            &authority,
            endpoints.clone(),
            &opts.oauth_cimd,
        )?)),
        None => None,
    };
    let mut names = certs::default_names();
    let oauth_hosts = opts.oauth.as_ref().map(|e| e.hosts()).unwrap_or_default();
    for san in opts.sans.iter().chain(&oauth_hosts) {
        if !names.contains(san) {
            names.push(san.clone());
        }
    }
    let (server_pem, fresh) = certs::ensure(&authority, &signer, &names)?;
    let server_cert = Arc::new(ServerCert::from_pem(&server_pem.cert, &server_pem.key)?);
    let public_cert = match (&opts.tls_public, &opts.oauth) {
        (Some((cert, key)), Some(e)) => {
            let files = public_cert::PublicCert {
                cert: cert.clone(),
                key: key.clone(),
                names: e.hosts(),
            };
            files
                .load(&server_cert)
                .map_err(|why| anyhow::anyhow!("--tls-cert: {why}"))?;
            Some(files)
        }
        _ => None,
    };
    let (tls_config, verifier) = tls::server_config(&TlsSettings {
        anchors: signer.anchors(),
        server_cert: server_cert.clone(),
        role_oid: authority.meta().role_oid.clone(),
        trust_domain: authority.meta().trust_domain.clone(),
        policy: policy.clone(),
        revoked: revoked.clone(),
        certificate_optional: oauth_state.is_some(),
    })?;
    // Other consumers must never see a stale CRL, nor one missing a revocation (a revoke killed
    // between the ledger and the CRL): republished at start if so, then kept fresh hourly.
    let complete = authority.crls_missing(&signer, &all).is_empty();
    if complete {
        authority.refresh_crl(&signer)?;
    } else {
        authority.publish_crl(&signer)?;
    }

    let data = match authority.ledger().data_tree()? {
        Some(tree) => tree,
        None => {
            // A shared ledger holds only the CA's records; the demo data stays per replica.
            crate::fsutil::ensure_private_dir(&home.data_store())?;
            sled::open(home.data_store())
                .with_context(|| format!("open {}", home.data_store().display()))?
                .open_tree("data")?
        }
    };
    let shared_ledger = authority.ledger().is_shared();
    let metrics = Arc::new(metrics::Metrics::new());
    {
        let m = metrics.clone();
        audit.set_observer(Box::new(move |e| m.observe(e)));
    }
    // Renewals whose predecessor is still valid: retired at first use or after the grace period.
    let pending = pending_renewals(&all);
    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("listen on {}", opts.listen))?;
    let local = listener.local_addr()?;
    let audit = Arc::new(audit);
    let linker = linker_for(&authority, &audit, &opts, local)?;
    let state = Arc::new(AppState {
        authority,
        signer: RwLock::new(Arc::new(signer)),
        policy,
        revoked,
        audit,
        conns: Default::default(),
        sessions: Default::default(),
        hub: std::sync::OnceLock::new(),
        data,
        verifier,
        allowed_origins: opts.allowed_origins.clone(),
        max_body_bytes: opts.max_body_bytes,
        pending_renewals: std::sync::Mutex::new(pending),
        renewal_policy: opts.renewal,
        last_renewal: Default::default(),
        server_cert_revoked: Default::default(),
        allow_socket_issue: opts.allow_socket_issue,
        replica: replica::Health::new(shared_ledger, opts.revocation_max_stale),
        crl_stale: Default::default(),
        metrics,
        tls_reload: tokio::sync::Notify::new(),
        oauth: oauth_state,
        linker,
        console: if opts.console {
            Some(Arc::new(
                crate::console::Console::new().map_err(|e| anyhow::anyhow!(e))?,
            ))
        } else {
            None
        },
    });

    let ops_listener = match opts.ops_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("--ops-listen {addr}"))?,
        ),
        None => None,
    };
    let ctl_listener = ctl::bind(&home.ctl_socket())
        .with_context(|| format!("control socket {}", home.ctl_socket().display()))?;

    let shutdown = CancellationToken::new();
    let mut allowed_hosts = Vec::new();
    for n in &names {
        allowed_hosts.push(n.clone());
        if n.contains(':') {
            allowed_hosts.push(format!("[{n}]"));
        }
    }
    if let Some(e) = &opts.oauth {
        for a in [&e.mcp_authority, &e.login_authority] {
            if !allowed_hosts.contains(a) {
                allowed_hosts.push(a.clone());
            }
        }
    }
    // With the native transport, calls answered directly never reach rmcp's session worker,
    // whose idle timer would end a busy session: mcp-zt's sweep keeps that timer instead.
    let session_idle =
        rmcp::transport::streamable_http_server::session::local::SessionConfig::DEFAULT_KEEP_ALIVE;
    let mut sessions_local =
        rmcp::transport::streamable_http_server::session::local::LocalSessionManager::default();
    let own_idle = (opts.transport == native::Transport::Native).then(|| {
        sessions_local.session_config.keep_alive = None;
        state.sessions.track_activity();
        session_idle
    });
    let session_manager = Arc::new(sessions_local);
    let (hub, upstreams) = match gateway::start(
        &state,
        shutdown.child_token(),
        opts.diagnostic_tools,
        opts.request_state_ttl,
    )
    .await
    {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_file(home.ctl_socket());
            return Err(e);
        }
    };
    let router = http::router(
        state.clone(),
        hub.clone(),
        &http::HttpSettings {
            allowed_hosts,
            max_body_bytes: opts.max_body_bytes,
            shutdown: shutdown.clone(),
            session_manager: session_manager.clone(),
            transport: opts.transport,
        },
    );

    // Foreign trusts are in force before the server says it listens.
    let mut trusts = trust::Tracker::new();
    trust::refresh(&state, &mut trusts).await;

    if opts.oauth.is_some() && opts.oauth_cimd.allow_private {
        eprintln!(
            "mcp-zt: WARNING: --oauth-allow-private-cimd: client metadata documents may be \
             fetched from loopback and private addresses (SSRF); for tests only"
        );
        state.audit.log(Event::new("oauth_warning").reason(
            "--oauth-allow-private-cimd: client metadata documents may be fetched from \
             loopback and private addresses",
        ));
    }
    state.audit.log(Event::new("server_started").reason(format!(
        "listening on {local}; server certificate {}; {} revoked serial(s) loaded",
        if fresh { "issued" } else { "reused" },
        state.revoked.len()
    )));
    match &opts.oauth {
        None => {
            eprintln!("mcp-zt: serving MCP on https://{local}/mcp (client certificate required)")
        }
        Some(e) => eprintln!(
            "mcp-zt: serving MCP on https://{local}/mcp (client certificate or OAuth access token; \
             public URL {}, login at {})",
            e.resource, e.login
        ),
    }
    if opts.transport == native::Transport::Native {
        eprintln!(
            "mcp-zt: transport native (tool calls answered or relayed by mcp-zt, the rest by rmcp)"
        );
    }
    if let Some(l) = &ops_listener {
        if let Ok(a) = l.local_addr() {
            eprintln!(
                "mcp-zt: operations endpoints on http://{a}/ (metrics, healthz, readyz, crl)"
            );
            println!("ops {a}");
        }
    }
    // Machine-readable line for scripts and tests: the bound address.
    let sig = Signals::install().context("install signal handlers")?;
    println!("listening {local}");

    tokio::spawn(ctl::serve(ctl_listener, state.clone(), shutdown.clone()));
    tokio::spawn(signals(
        state.clone(),
        hub,
        upstreams.clone(),
        shutdown.clone(),
        sig,
    ));
    tokio::spawn(retire_loop(state.clone(), shutdown.clone()));
    if let Some(linker) = state.linker.clone() {
        // Links started and never finished expire after 10 minutes; their records go here.
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(600)) => {
                        let l = linker.clone();
                        let _ = tokio::task::spawn_blocking(move || l.sweep()).await;
                    }
                }
            }
        });
    }
    if state.oauth.is_some() {
        tokio::spawn(oauth::sweep(state.clone(), shutdown.clone()));
    }
    if let Some(files) = public_cert {
        tokio::spawn(public_cert::watch(
            state.clone(),
            server_cert.clone(),
            files,
            shutdown.clone(),
        ));
    }
    if let Some(l) = ops_listener {
        tokio::spawn(ops::serve(l, state.clone(), shutdown.clone()));
    }
    if let crate::ledger::Ledger::Postgres(pg) = state.authority.ledger() {
        tokio::spawn(replica::run(
            state.clone(),
            pg.pg_target().clone(),
            shutdown.clone(),
        ));
        tokio::spawn(replica::crl_publisher(state.clone(), shutdown.clone()));
    }
    tokio::spawn(trust::run(state.clone(), trusts, shutdown.clone()));
    tokio::spawn(http::sweep_sessions(
        state.clone(),
        session_manager,
        Duration::from_secs(30),
        own_idle,
        shutdown.clone(),
    ));
    tokio::spawn(renew_loop(
        state.clone(),
        server_cert,
        names.clone(),
        server_pem.not_before,
        server_pem.not_after,
        shutdown.clone(),
    ));

    accept::run(
        listener,
        state.clone(),
        tls_config,
        router,
        Arc::new(Admission::new(opts.admission)),
        accept::AcceptSettings {
            handshake_timeout: opts.handshake_timeout,
            max_connections: opts.max_connections,
            drain_timeout: Duration::from_secs(5),
            max_connections_per_cert: opts.max_connections_per_cert,
            header_read_timeout: opts.header_read_timeout,
            idle_timeout: opts.idle_timeout,
        },
        Arc::new(opts.proxy_from.clone()),
        shutdown,
    )
    .await;

    // The upstreams' children stop before the last audit line (stdin closed, SIGTERM, SIGKILL).
    upstreams.stop_all().await;
    let _ = std::fs::remove_file(home.ctl_socket());
    // Waits for the audit writer to reach the disk, off the async workers: first the refusals
    // still being counted, so the last line is the one saying the server stopped.
    let st = state.clone();
    let _ = tokio::task::spawn_blocking(move || {
        st.audit.sync();
        st.audit.log(Event::new("server_stopped"));
        st.audit.sync();
    })
    .await;
    state.authority.ledger().flush()?;
    eprintln!("mcp-zt: stopped");
    Ok(())
}

/// Refuses at once: serving needs a unix system (see the module documentation).
#[cfg(not(unix))]
pub async fn run(_authority: Authority, _signer: Signer, _opts: ServeOptions) -> Result<()> {
    check_platform()
}

/// Fails on a system where [`run`] cannot serve (not unix), saying what works there instead:
/// checked before HOME is opened or a passphrase is asked for.
pub fn check_platform() -> Result<()> {
    if cfg!(unix) {
        return Ok(());
    }
    anyhow::bail!(
        "mcp-zt serve needs Linux or macOS (its control socket and signal handling are unix-only); \
         on this system mcp-zt is the holder's side: connect, client-config, renew"
    )
}

/// Refuses a HOME that group or others can read or enter: it holds the CA key, the ledger
/// and the control socket that issues certificates.
#[cfg(unix)]
fn check_home_mode(dir: &std::path::Path) -> Result<()> {
    let meta = std::fs::metadata(dir).with_context(|| format!("read {}", dir.display()))?;
    if let Some(mode) = crate::fsutil::exposed_mode(&meta) {
        anyhow::bail!(
            "{} has mode {:04o}: group or others can reach the CA key, the ledger and the control socket; run chmod 700 {} (refusing to serve)",
            dir.display(),
            mode,
            dir.display()
        );
    }
    Ok(())
}

/// Renewed certificates whose predecessor is still valid: new serial → (old serial, Unix time
/// after which the old one is retired even if the new one was never used).
pub fn pending_renewals(
    all: &[crate::ledger::CertRecord],
) -> std::collections::HashMap<String, (String, i64)> {
    let active: std::collections::HashSet<&str> = all
        .iter()
        .filter(|r| r.revocation.is_none())
        .map(|r| r.serial.as_str())
        .collect();
    all.iter()
        .filter(|r| r.revocation.is_none())
        .filter_map(|r| {
            let old = r.renewed_from.as_ref()?;
            active.contains(old.as_str()).then(|| {
                (
                    r.serial.clone(),
                    (old.clone(), r.issued_at + ca::RENEWAL_GRACE_SECS),
                )
            })
        })
        .collect()
}

/// Every 30 s: retires renewed certificates past their grace period; every hour: keeps the
/// CRL on disk fresh.
#[cfg(unix)]
async fn retire_loop(state: Arc<AppState>, shutdown: CancellationToken) {
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        if state.authority.ledger().is_shared() {
            // Renewals made by other replicas or the CLI: this replica retires their
            // predecessors too (at first use here, or after the grace), so no old certificate
            // outlives a replica that went away.
            let st = state.clone();
            let found =
                tokio::task::spawn_blocking(move || st.authority.ledger().pending_renewals()).await;
            if let Ok(Ok(found)) = found {
                let mut p = state
                    .pending_renewals
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                for (new, old, issued_at) in found {
                    p.entry(new)
                        .or_insert((old, issued_at + ca::RENEWAL_GRACE_SECS));
                }
            }
        }
        state.retire_expired_renewals(crate::pki::now().unix_timestamp());
        ticks += 1;
        if ticks.is_multiple_of(120) {
            let st = state.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = st.authority.refresh_crl(&st.signer()) {
                    eprintln!("mcp-zt: CRL refresh failed: {e}");
                }
            })
            .await;
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP, installed before the server says it listens: a signal sent
/// right after that line must reach these handlers, not the default action.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

#[cfg(unix)]
async fn signals(
    state: Arc<AppState>,
    hub: Arc<crate::mcp::hub::Hub>,
    upstreams: Arc<gateway::Upstreams>,
    shutdown: CancellationToken,
    sig: Signals,
) {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = sig;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                // Reopen first, so the reload's own line lands in the new file after logrotate.
                state.audit.reopen();
                reload_policy(&state);
                state.tls_reload.notify_one();
                upstreams.reload(&state, &hub);
                // The policy may have changed what each session sees.
                let _ = hub.sender().try_send(crate::mcp::provider::HubEvent::Changed);
            }
        }
    }
    eprintln!("mcp-zt: shutting down");
    shutdown.cancel();
}

/// Reloads policy.toml; an invalid file is refused and the old policy stays in force.
#[cfg(unix)]
fn reload_policy(state: &AppState) {
    match ca::load_policy(state.authority.home()) {
        Ok(p) => {
            match state.policy.write() {
                Ok(mut g) => *g = Arc::new(p),
                Err(poisoned) => *poisoned.into_inner() = Arc::new(p),
            }
            state.audit.log(Event::new("policy_reloaded"));
        }
        Err(e) => {
            eprintln!("mcp-zt: policy reload refused, keeping the old policy: {e}");
            state
                .audit
                .log(Event::new("policy_reload_failed").reason(e.to_string()));
        }
    }
}

#[cfg(unix)]
async fn renew_loop(
    state: Arc<AppState>,
    cert: Arc<ServerCert>,
    names: Vec<String>,
    mut not_before: i64,
    mut not_after: i64,
    shutdown: CancellationToken,
) {
    loop {
        let revoked = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => false,
            _ = state.server_cert_revoked.notified() => true,
        };
        let now = crate::pki::now().unix_timestamp();
        if !revoked && !certs::needs_renewal(not_before, not_after, now) {
            continue;
        }
        let st = state.clone();
        let n = names.clone();
        let renewed =
            tokio::task::spawn_blocking(move || certs::ensure(&st.authority, &st.signer(), &n))
                .await;
        match renewed {
            Ok(Ok((pem, _))) => match cert.replace(&pem.cert, &pem.key) {
                Ok(()) => {
                    not_before = pem.not_before;
                    not_after = pem.not_after;
                    state.audit.log(Event::new("server_cert_renewed"));
                }
                Err(e) => eprintln!("mcp-zt: server certificate renewal failed: {e}"),
            },
            Ok(Err(e)) => eprintln!("mcp-zt: server certificate renewal failed: {e}"),
            Err(e) => eprintln!("mcp-zt: server certificate renewal failed: {e}"),
        }
    }
}

/// The per-holder credential service. `secrets.key` is loaded at start when it exists (a key
/// group or others may read stops the start) and created when an upstream needs each
/// holder's own OAuth login; otherwise at the first static secret.
#[cfg(unix)]
fn linker_for(
    authority: &Authority,
    audit: &Arc<crate::audit::Audit>,
    opts: &ServeOptions,
    local: std::net::SocketAddr,
) -> Result<Option<Arc<crate::upstream::oauth::linker::Linker>>> {
    let home = authority.home().dir().to_path_buf();
    let upstreams = crate::upstream::config::load(&home)?;
    let key = if upstreams.list.iter().any(|u| u.oauth().is_some()) {
        Some(crate::secrets::load_or_create(&home)?)
    } else {
        crate::secrets::load_existing(&home)?
    };
    let host = match opts.sans.first() {
        Some(h) if h.contains(':') => format!("[{h}]"),
        Some(h) => h.clone(),
        None => "localhost".to_string(),
    };
    let own = format!("https://{host}:{}", local.port());
    let browser_base = match &opts.oauth {
        Some(e) => e.login.clone(),
        None => own.clone(),
    };
    let document_base = opts.oauth.as_ref().map(|e| e.issuer.clone());
    Ok(Some(Arc::new(crate::upstream::oauth::linker::Linker::new(
        authority.ledger().clone(),
        home,
        key,
        authority.meta().trust_domain.clone(),
        audit.clone(),
        upstreams,
        crate::upstream::oauth::linker::LinkerUrls {
            browser_base: Some(browser_base),
            document_base,
            mcp_url: Some(format!("{own}/mcp")),
        },
    ))))
}
