//! Command-line interface: clap definitions and thin handlers. Data goes to stdout, messages to
//! stderr; every listing command has `--json`.

mod backend;
mod ca_cmd;
mod commands;
mod connect;
mod link;
mod oauth;
mod output;
mod reference;
mod serve;
mod upstream;
mod upstream_check;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::pki::build::{KeyAlgorithm, Reason};

pub use commands::run;
pub use upstream::{ShareArg, UpstreamAddArgs, UpstreamCommand};

/// mcp-zt: an MCP server where identity comes from client certificates.
#[derive(Debug, Parser)]
#[command(name = "mcp-zt", version, about, long_about = None)]
pub struct Cli {
    /// The CA home folder.
    #[arg(long, global = true, env = "MCP_ZT_HOME", default_value = "./pki")]
    pub home: PathBuf,

    /// The shared ledger of a fleet: postgres://user[:password]@host[:port]/database. Without
    /// it the ledger is sled in HOME/ledger. The URL is never printed (it may hold a password).
    #[arg(
        long,
        global = true,
        env = "MCP_ZT_LEDGER",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub ledger: Option<String>,

    /// CA bundle that signed the PostgreSQL server's certificate: turns on TLS to the ledger
    /// database (certificate and host name verified).
    #[arg(long, global = true, env = "MCP_ZT_LEDGER_CA", value_name = "FILE")]
    pub ledger_ca: Option<PathBuf>,

    /// File whose first line is the passphrase of ca.key (with `ca init`: encrypt ca.key with it).
    #[arg(long, global = true, env = "MCP_ZT_CA_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Issue a client certificate carrying a role.
    Issue(IssueArgs),
    /// List every certificate in the ledger.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one certificate in detail.
    Show {
        /// A holder name or a serial (hex).
        target: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a certificate (by serial) or every active certificate of a name.
    Revoke {
        /// A holder name or a serial (hex).
        target: String,
        /// Why (RFC 5280 reason code).
        #[arg(long, value_enum, default_value = "unspecified")]
        reason: Reason,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the current signed CRL (PEM); re-signs it if it is more than half-way to nextUpdate.
    Crl {
        /// Also write it to FILE (atomically).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run the mTLS MCP server (HTTPS, streamable HTTP at /mcp, client certificate required).
    Serve(Box<ServeArgs>),
    /// Read the audit log.
    Audit(AuditArgs),
    /// Bridge a local MCP client (stdio, or HTTP on loopback with --listen) to a remote mcp-zt
    /// server over mTLS, for clients that cannot present a client certificate.
    Connect(ConnectArgs),
    /// Print the MCP configuration snippet that runs `mcp-zt connect` for a client app, from
    /// NAME under HOME or, on a holder's machine without HOME, from the holder's own files.
    ClientConfig(ClientConfigArgs),
    /// Export a client certificate and key as a password-protected PKCS#12 bundle.
    Export(ExportArgs),
    /// Renew a client certificate with the server: same name and role, new key and serial.
    Renew(RenewArgs),
    /// Check the CA home: ledger vs files vs CRL, permissions, expiry, policy. Exit 1 on errors.
    Doctor {
        /// Republish the CRL if it is missing, stale or lacks a revocation.
        #[arg(long)]
        repair: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the policy's roles and what each inherits.
    Roles {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage the MCP servers the gateway fronts (HOME/upstreams.toml).
    #[command(subcommand)]
    Upstream(UpstreamCommand),
    /// OAuth (`serve --oauth`): clients, grants, and approving from the command line.
    #[command(subcommand)]
    Oauth(OAuthCommand),
    /// Link your own account at an upstream that needs each holder's login (auth = "oauth"),
    /// with your certificate: prints the URL to open; the browser comes back to this machine.
    Link(LinkArgs),
    /// Remove a holder's upstream link: its tokens are revoked at the upstream, then deleted,
    /// with the holder's static secrets for that upstream.
    Unlink {
        /// The upstream.
        upstream: String,
        /// The holder.
        #[arg(long)]
        name: String,
    },
    /// List upstream links (holder, upstream, scopes, expiry); never a token.
    Links {
        /// Only this holder's.
        #[arg(long)]
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Static per-holder secrets (API keys) for upstreams: sealed, sent only on the holder's
    /// own connection.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// The key that seals per-holder upstream tokens and secrets (HOME/secrets.key).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Manage the ledger's storage.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) generated from these command definitions.
    Man {
        /// Print the command reference as markdown instead (docs/reference.md).
        #[arg(long)]
        markdown: bool,
    },
}

/// `mcp-zt ledger ...`
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Copy HOME's sled ledger into PostgreSQL, then read it all back and compare. Stop the
    /// server first; afterwards run every command with --ledger URL (or MCP_ZT_LEDGER).
    Migrate {
        /// The target: postgres://user[:password]@host[:port]/database (schema created).
        /// Prefer the environment variable when the URL holds a password (the command line
        /// shows in `ps` and shell history).
        #[arg(
            long,
            value_name = "URL",
            env = "MCP_ZT_MIGRATE_TO",
            hide_env_values = true
        )]
        to: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `mcp-zt ca ...`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a new CA in HOME (refuses if one exists).
    Init {
        /// The CA certificate's common name.
        #[arg(long, default_value = "mcp-zt Root CA")]
        name: String,
        /// SPIFFE trust domain of issued identities.
        #[arg(long, default_value = "mcp-zt.local")]
        trust_domain: String,
        /// OID of the role extension (default: a 2.25 arc, see docs/ca.md).
        #[arg(long)]
        role_oid: Option<String>,
        /// The CA key's algorithm.
        #[arg(long, value_enum, default_value = "ecdsa-p256")]
        key_type: KeyAlgorithm,
        /// Write the root key to DIR/root.key only (with DIR/root.crt), never into HOME: move
        /// DIR to offline storage afterwards; `ca rotate --root-key` brings it back.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["single", "import_cert"])]
        offline_root: Option<PathBuf>,
        /// Run as an intermediate of your organization's PKI: FILE holds its certificate
        /// first, then any intermediates above it, then the organization's root.
        #[arg(
            long,
            value_name = "FILE",
            requires = "import_key",
            conflicts_with = "single"
        )]
        import_cert: Option<PathBuf>,
        /// The private key of --import-cert (PKCS#8 PEM, mode 0600; encrypted only with the
        /// CA passphrase).
        #[arg(long, value_name = "FILE", requires = "import_cert")]
        import_key: Option<PathBuf>,
        /// One self-signed CA that signs certificates itself (no root, no rotation): the
        /// layout of homes made before the hierarchy.
        #[arg(long)]
        single: bool,
        /// Put this CRL distribution point (an http:// URL where relying parties fetch the
        /// CRL, e.g. a replica's --ops-listen /crl behind a proxy) into every certificate.
        #[arg(long, value_name = "URL")]
        crl_url: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a new intermediate the signing CA. Certificates of the earlier one keep working
    /// until they end or are revoked; a running server takes the new one at once.
    Rotate {
        /// The root key (e.g. DIR/root.key from `ca init --offline-root DIR`; default
        /// HOME/root.key when the root key is kept in HOME).
        #[arg(long, value_name = "FILE", conflicts_with = "import_cert")]
        root_key: Option<PathBuf>,
        /// File whose first line is the root key's passphrase (default: the CA passphrase).
        #[arg(long, value_name = "FILE")]
        root_passphrase_file: Option<PathBuf>,
        /// For a home made with --import-cert: the new intermediate's chain file.
        #[arg(long, value_name = "FILE", requires = "import_key")]
        import_cert: Option<PathBuf>,
        /// For a home made with --import-cert: the new intermediate's key.
        #[arg(long, value_name = "FILE", requires = "import_cert")]
        import_key: Option<PathBuf>,
        /// Roll the root over: a new root, cross-signed by the current one (given with
        /// --root-key), and a new intermediate under it. ca.crt holds both roots until
        /// `ca rotate --root --finish`.
        #[arg(long, conflicts_with = "import_cert")]
        root: bool,
        /// With --root: write the new root key to DIR/root.key only, never into HOME.
        #[arg(long, value_name = "DIR", requires = "root", conflicts_with = "finish")]
        offline_root: Option<PathBuf>,
        /// With --root: end the cross-signed period (every client has the new ca.crt): ca.crt
        /// keeps the new root only and the server's chain drops the cross certificate.
        #[arg(long, requires = "root")]
        finish: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `mcp-zt issue ...`
#[derive(Debug, clap::Args)]
pub struct IssueArgs {
    /// The role to put into the certificate (one of `mcp-zt roles`).
    #[arg(long)]
    pub role: String,
    /// Holder name: subject CN, SPIFFE path and file name.
    #[arg(long)]
    pub name: String,
    /// Lifetime, e.g. 24h, 7d, 90m. Short by default: `connect` renews automatically.
    #[arg(long, default_value = "24h")]
    pub ttl: String,
    /// Folder for NAME.crt and NAME.key (default HOME/clients).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Extra subject alternative names (DNS names or IP addresses).
    #[arg(long)]
    pub san: Vec<String>,
    /// Also write NAME.p12: a password-protected PKCS#12 bundle (certificate, key, CA).
    #[arg(long, requires = "p12_password_file")]
    pub p12: bool,
    /// Also write FILE, the one file to hand to the holder (mode 0600): a PKCS#12 (certificate,
    /// key, CA; needs --p12-password-file) when FILE ends in .p12 or .pfx, else one PEM file
    /// with the key, the certificate and the CA certificate.
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
    /// File whose first line is the PKCS#12 password (at least 8 characters).
    #[arg(long, env = "MCP_ZT_P12_PASSWORD_FILE")]
    pub p12_password_file: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `mcp-zt export ...`
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The holder whose HOME/clients/NAME.crt and NAME.key to bundle.
    pub name: String,
    /// Write a PKCS#12 bundle (the only export format).
    #[arg(long)]
    pub p12: bool,
    /// File whose first line is the PKCS#12 password (at least 8 characters).
    #[arg(long, env = "MCP_ZT_P12_PASSWORD_FILE")]
    pub p12_password_file: PathBuf,
    /// Output file (default HOME/clients/NAME.p12), written 0600.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `mcp-zt serve ...`
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Serve the browser console at /console/ (on the login name with --oauth): for roles the
    /// policy gives console = "read" or "admin", signed in by their client certificate.
    #[arg(long)]
    pub console: bool,
    /// Which transport serves /mcp: rmcp's streamable-HTTP service for everything, or native,
    /// mcp-zt's own direct path for tool calls (built-in tools; stateless 2026-07-28 calls of
    /// a shared upstream's tools, relayed over HTTP or a stdio child's pipes) with rmcp for the
    /// rest. Both answer the same (checked by scripts/interop-differential.sh, and by the
    /// integration tests run once with MCP_ZT_TRANSPORT=native).
    #[arg(long, value_enum, env = "MCP_ZT_TRANSPORT", default_value_t = crate::server::native::Transport::Rmcp)]
    pub transport: crate::server::native::Transport,
    /// Address and port to listen on (port 0 picks a free one; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: std::net::SocketAddr,
    /// Extra DNS names or IP addresses for the server certificate and the Host check
    /// (localhost, 127.0.0.1 and ::1 are always included).
    #[arg(long)]
    pub san: Vec<String>,
    /// Allowed Origin header values (exact, e.g. https://app.example.com); requests with any
    /// other Origin get 403. Requests without Origin (non-browser clients) are unaffected.
    #[arg(long)]
    pub allowed_origin: Vec<String>,
    /// Renewal opens when at most this share of a certificate's lifetime (percent) is left.
    #[arg(long, default_value_t = 33, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub renewal_window_percent: u8,
    /// Fewest time between two renewals of one holder, e.g. 5m.
    #[arg(long, default_value = "5m")]
    pub renewal_min_interval: String,
    /// How long a holder may keep renewing after the operator's `issue`, e.g. 30d; past it,
    /// an operator must issue a new certificate.
    #[arg(long, default_value = "30d")]
    pub renewal_max_chain_age: String,
    /// Also serve diagnostic tools (`test_*`) that make the protocol machinery observable to
    /// checkers such as the official MCP conformance suite. Off by default; gated by the
    /// policy like any tool.
    #[arg(long)]
    pub diagnostic_tools: bool,
    /// How long a client may take to continue an `input_required` answer (MCP 2026-07-28)
    /// with its `requestState`, e.g. 10m; an upstream call waiting for that answer is
    /// cancelled after it.
    #[arg(long, default_value = "10m")]
    pub request_state_ttl: String,
    /// With a shared --ledger: how long new handshakes are still admitted after the ledger was
    /// lost (revocations made meanwhile are unknown here); then they are refused until the
    /// replica is back in sync. Live connections keep their checks against known revocations.
    #[arg(long, default_value = "5m")]
    pub revocation_max_stale: String,
    /// Serve /metrics, /healthz, /readyz and /crl over plain HTTP on this address
    /// (e.g. 127.0.0.1:9090). Loopback only unless --ops-public.
    #[arg(long, value_name = "ADDR")]
    pub ops_listen: Option<std::net::SocketAddr>,
    /// Allow --ops-listen on a non-loopback address (metrics tell who is connected).
    #[arg(long, requires = "ops_listen")]
    pub ops_public: bool,
    /// Load balancers (address or CIDR; repeatable) whose connections start with a PROXY
    /// protocol v2 header carrying the real client address. Required from them, never read
    /// from anyone else.
    #[arg(long, value_name = "CIDR")]
    pub proxy_protocol_from: Vec<String>,
    /// Turn on OAuth 2.1 for clients without a client certificate (hosted and OAuth-native MCP
    /// clients): mcp-zt becomes the authorization server of its own endpoint, and holders
    /// approve clients with their certificate at --login-url. Settings: HOME/oauth.toml.
    #[arg(long, requires_all = ["public_url", "login_url"])]
    pub oauth: bool,
    /// With --oauth: the MCP endpoint's public URL, exactly as clients use it
    /// (https://mcp.example.org/mcp); it is the token audience.
    #[arg(long, value_name = "URL", requires = "oauth")]
    pub public_url: Option<String>,
    /// With --oauth: the login name, which asks browsers for their client certificate
    /// (https://login.example.org). It may share the port (chosen by name).
    #[arg(long, value_name = "URL", requires = "oauth")]
    pub login_url: Option<String>,
    /// With --oauth: a certificate chain from outside (PEM, leaf first, e.g. certbot's
    /// fullchain.pem) served for the --public-url and --login-url names, which hosted clients
    /// verify against the web PKI. Read again when it changes and on SIGHUP; a bad file is
    /// refused and the one in force stays. Other names get the CA-issued certificate.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "oauth"])]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// With --oauth: let client metadata documents be fetched from loopback and private
    /// addresses. For tests only: it opens the server to SSRF (audited and warned at start).
    #[arg(long, requires = "oauth")]
    pub oauth_allow_private_cimd: bool,
    /// With --oauth: extra CA certificates (PEM) trusted for fetching client metadata
    /// documents, beyond the system's (a private deployment's or a test server's CA).
    #[arg(long, value_name = "FILE", requires = "oauth")]
    pub oauth_cimd_ca: Option<std::path::PathBuf>,
    /// Let `issue` over the control socket sign without the CA passphrase (by default, when
    /// ca.key is encrypted, the issuing command must give it too).
    #[arg(long)]
    pub allow_socket_issue: bool,
    /// TLS handshake timeout, e.g. 10s.
    #[arg(long, default_value = "10s")]
    pub handshake_timeout: String,
    /// Most simultaneous connections.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Failed handshakes of one certificate from one address, within --lockout-window, that
    /// lock that certificate out from that address (0: off). Other certificates are unaffected.
    #[arg(long, default_value_t = 10)]
    pub lockout_threshold: usize,
    /// Window for counting failed handshakes, from the first one.
    #[arg(long, default_value = "60s")]
    pub lockout_window: String,
    /// How long a locked-out certificate stays locked out.
    #[arg(long, default_value = "5m")]
    pub lockout_duration: String,
    /// Handshakes without a certificate (health checks, scans, dropped connections) one address
    /// may make back to back before it is slowed down.
    #[arg(long, default_value_t = 64)]
    pub handshake_burst: u32,
    /// Handshakes without a certificate per second one address may sustain (0: no limit).
    #[arg(long, default_value_t = 16)]
    pub handshake_rate: u32,
    /// Handshakes in progress at once from one address (IPv6: one /64) (0: no cap).
    #[arg(long, default_value_t = 32)]
    pub max_handshakes_per_address: usize,
    /// Most simultaneous connections of one certificate (0: no cap).
    #[arg(long, default_value_t = 32)]
    pub max_connections_per_cert: usize,
    /// HTTP/1.1: time to send a request head, and most idle time between requests (0: off).
    #[arg(long, default_value = "30s")]
    pub header_read_timeout: String,
    /// A connection with no request in flight for this long is closed (0: never). Open SSE
    /// streams count as requests in flight.
    #[arg(long, default_value = "5m")]
    pub idle_timeout: String,
    /// Largest request body in bytes (larger: 413).
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Also write audit events to stderr: text (none) or json.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Rotate HOME/audit.log before it passes this size, e.g. 64MiB, 500K, 1G (0: never, for
    /// logrotate; SIGHUP reopens the file).
    #[arg(long, default_value = "64MiB")]
    pub audit_max_size: String,
    /// Rotated audit files kept: audit.log.1 (newest) to audit.log.N.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    pub audit_keep: u16,
}

/// Whether audit events are echoed on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human messages only; audit events go to HOME/audit.log.
    Text,
    /// Audit events as JSON lines on stderr too.
    Json,
}

/// `mcp-zt audit ...`
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only events newer than this, e.g. 15m, 1h, 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// Only these events (repeatable), e.g. --event tool_denied.
    #[arg(long)]
    pub event: Vec<String>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `mcp-zt connect ...`
#[derive(Debug, clap::Args)]
#[command(
    after_help = "With --listen, the bridge serves plain HTTP on a loopback address only \
(other addresses are refused), at a secret path made anew at every launch \
(http://127.0.0.1:PORT/SECRET/mcp, printed on stderr and written to --url-file), and checks \
Host and Origin: anything that has the URL acts with your certificate. Exit codes: 0 when the client closes, 3 when the server refuses the \
certificate (revoked, expired, not trusted), 1 on setup errors."
)]
pub struct ConnectArgs {
    /// The remote server, e.g. https://mcp.example.org:8443/mcp.
    pub url: String,
    /// Which certificate to present.
    #[command(flatten)]
    pub creds: CredArgs,
    /// Serve a local streamable HTTP endpoint at this loopback address instead of stdio.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// With --listen: also write the endpoint's URL (new secret every launch) to this file,
    /// mode 0600, before the first request is answered; removed at exit.
    #[arg(long, requires = "listen")]
    pub url_file: Option<PathBuf>,
    /// Do not renew the certificate automatically (by default it is renewed when less than a
    /// third of its lifetime is left).
    #[arg(long)]
    pub no_renew: bool,
}

/// `mcp-zt link ...`
#[derive(Debug, clap::Args)]
pub struct LinkArgs {
    /// The upstream (its name in upstreams.toml).
    pub upstream: String,
    /// The server's MCP URL, e.g. https://mcp.example.org:8443/mcp.
    #[arg(long)]
    pub url: String,
    /// Which certificate to link for.
    #[command(flatten)]
    pub creds: CredArgs,
    /// Open the URL in the default browser.
    #[arg(long)]
    pub open: bool,
    /// The loopback port the browser comes back to (0: any free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Ask for this scope too (repeatable), beyond what upstreams.toml or the upstream asks.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
}

/// `mcp-zt secret ...`
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set a holder's secret for an upstream: an operator with --name HOLDER on the CA's
    /// machine, or a holder for themselves with --url and their certificate.
    Set(Box<SecretSetArgs>),
    /// List secrets: holder, upstream, header or variable, date; never a value.
    List {
        /// Only this holder's.
        #[arg(long)]
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a holder's secrets for an upstream.
    Delete {
        /// The upstream.
        upstream: String,
        /// The holder.
        #[arg(long)]
        name: String,
    },
}

/// `mcp-zt secret set ...`
#[derive(Debug, clap::Args)]
pub struct SecretSetArgs {
    /// The upstream.
    pub upstream: String,
    /// Send it as this HTTP header on the holder's own connection.
    #[arg(long, conflicts_with = "env", value_name = "NAME")]
    pub header: Option<String>,
    /// Set it as this environment variable of the holder's own child (share = "per-identity").
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    /// Read the value from this file (trailing newlines dropped).
    #[arg(long, value_name = "FILE")]
    pub from_file: PathBuf,
    /// Set your own, through the server at this MCP URL, with your certificate.
    #[arg(long)]
    pub url: Option<String>,
    /// The holder (--name) or the holder's certificate files (with --url).
    #[command(flatten)]
    pub creds: CredArgs,
}

/// `mcp-zt secrets ...`
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Re-seal every upstream token and secret under a new HOME/secrets.key (copy it to every
    /// replica afterwards).
    RotateKey,
}

/// `mcp-zt oauth ...`
#[derive(Debug, Subcommand)]
pub enum OAuthCommand {
    /// Pre-registered clients.
    #[command(subcommand)]
    Client(OAuthClientCommand),
    /// List the registered clients (pre-registered and self-registered).
    Clients {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List grants: each approval and the token family it created.
    Grants {
        /// Only this holder's.
        #[arg(long)]
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke grants (their every token, and their open streams at once): one by id, every
    /// grant of a client, or every grant of a holder.
    Revoke {
        /// The grant id (`oauth grants` shows it).
        #[arg(required_unless_present_any = ["client", "name"])]
        grant: Option<String>,
        /// Every grant of this client.
        #[arg(long, conflicts_with_all = ["grant", "name"])]
        client: Option<String>,
        /// Every grant of this holder.
        #[arg(long, conflicts_with = "grant")]
        name: Option<String>,
    },
    /// Approve an authorization waiting in a browser without a client certificate: the page
    /// shows the code. Shows what is asked and asks for confirmation first.
    Approve(ApproveArgs),
}

/// `mcp-zt oauth client ...`
#[derive(Debug, Subcommand)]
pub enum OAuthClientCommand {
    /// Pre-register a client; its `client_id` is NAME.
    Add {
        /// Name and `client_id`.
        name: String,
        /// Exact redirect URI (repeatable).
        #[arg(long = "redirect-uri", required = true, value_name = "URI")]
        redirect_uris: Vec<String>,
        /// Give it a secret (client_secret_basic or client_secret_post), written to a 0600
        /// file.
        #[arg(long)]
        confidential: bool,
        /// Where to write the secret (default HOME/oauth-clients/NAME.secret).
        #[arg(long, requires = "confidential", value_name = "FILE")]
        secret_out: Option<PathBuf>,
    },
}

/// `mcp-zt oauth approve CODE`
#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The 8-character code the browser page shows.
    pub code: String,
    /// The login URL (`serve --login-url`), e.g. https://login.example.org.
    #[arg(long)]
    pub url: String,
    /// Which certificate approves (the holder's).
    #[command(flatten)]
    pub creds: CredArgs,
    /// Approve without asking (for scripts that already showed the request).
    #[arg(long)]
    pub yes: bool,
}

/// The client certificate, key and CA to use.
#[derive(Debug, clap::Args)]
pub struct CredArgs {
    /// Use HOME/clients/NAME.crt and NAME.key (as written by `issue`), on the CA's machine.
    #[arg(long, conflicts_with_all = ["cert", "key", "p12", "bundle"])]
    pub name: Option<String>,
    /// The certificate files, on a machine without a CA home.
    #[command(flatten)]
    pub files: HolderFiles,
}

/// A certificate holder's own files: no CA home is read or written when they are given.
#[derive(Debug, Clone, clap::Args)]
pub struct HolderFiles {
    /// Client certificate (PEM).
    #[arg(long, requires = "key", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM, mode 0600).
    #[arg(long, requires = "cert", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// A PKCS#12 file with the client certificate, its key and the CA (`issue --bundle
    /// FILE.p12`, `issue --p12`, `export --p12`); needs --p12-password-file.
    #[arg(long, conflicts_with_all = ["cert", "key", "bundle"], value_name = "FILE")]
    pub p12: Option<PathBuf>,
    /// File whose first line is the PKCS#12 password (mode 0600).
    #[arg(long, env = "MCP_ZT_P12_PASSWORD_FILE", value_name = "FILE")]
    pub p12_password_file: Option<PathBuf>,
    /// One PEM file (mode 0600) with the private key, the client certificate and the CA
    /// (`issue --bundle FILE`).
    #[arg(long, conflicts_with_all = ["cert", "key"], value_name = "FILE")]
    pub bundle: Option<PathBuf>,
    /// CA certificate to pin for the server. With --cert/--key: default HOME/ca.crt. With
    /// --p12/--bundle: replaces the CA in the bundle (or supplies a missing one).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

/// `mcp-zt renew ...`
#[derive(Debug, clap::Args)]
pub struct RenewArgs {
    /// The server's MCP URL, e.g. https://mcp.example.org:8443/mcp (renewal is at /renew).
    pub url: String,
    /// Which certificate to renew (its files are replaced by the new certificate and key).
    #[command(flatten)]
    pub creds: CredArgs,
}

/// Which client app's configuration format to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientKind {
    /// Claude Desktop (claude_desktop_config.json).
    ClaudeDesktop,
    /// Claude Code (.mcp.json).
    ClaudeCode,
    /// VS Code (.vscode/mcp.json).
    Vscode,
    /// Cursor (~/.cursor/mcp.json).
    Cursor,
    /// Codex CLI (~/.codex/config.toml, TOML).
    Codex,
    /// Gemini CLI (~/.gemini/settings.json).
    GeminiCli,
    /// A generic {command, args} object.
    Json,
}

/// `mcp-zt client-config ...`
#[derive(Debug, clap::Args)]
#[command(
    after_help = "On the CA's machine, NAME is enough (the files `issue` wrote under HOME). \
On the holder's machine, with no CA home, give the files instead: --cert C --key K --ca CA, \
--p12 FILE --p12-password-file F, or --bundle FILE. The files are read and checked now, and the \
printed command names them by absolute path."
)]
pub struct ClientConfigArgs {
    /// The certificate holder (files from `issue` under HOME/clients), on the CA's machine.
    #[arg(conflicts_with_all = ["cert", "key", "p12", "bundle"])]
    pub name: Option<String>,
    /// The certificate files, on a machine without a CA home.
    #[command(flatten)]
    pub files: HolderFiles,
    /// The remote server URL.
    #[arg(long)]
    pub url: String,
    /// The client app.
    #[arg(long = "for", value_enum)]
    pub client: ClientKind,
    /// The key of this server in the client's configuration.
    #[arg(long, default_value = "mcp-zt")]
    pub server_name: String,
}
