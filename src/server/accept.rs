//! The TLS accept loop: connection caps, admission (handshake rate, concurrent handshakes and
//! certificate lockout per address), handshake timeout, identity, HTTP timeouts, and
//! per-connection cancellation so a revocation closes live connections.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::proxy;
use super::state::{AppState, ConnInfo, Peer};
use crate::audit::Event;
use crate::tls::lockout::{AddrGroup, Admission, Fingerprint, HandshakeGate, GATE};
use crate::tls::verifier::{rejection_of, VERDICT};

/// Accept-loop limits.
#[derive(Debug, Clone, Copy)]
pub struct AcceptSettings {
    /// A TLS handshake that takes longer is dropped.
    pub handshake_timeout: Duration,
    /// Most simultaneous connections; more are closed at once.
    pub max_connections: usize,
    /// How long in-flight work may take at shutdown.
    pub drain_timeout: Duration,
    /// Most simultaneous connections of one certificate; more are closed after the handshake.
    pub max_connections_per_cert: usize,
    /// HTTP/1.1: a request head must arrive within this (also ends idle keep-alive); None: off.
    pub header_read_timeout: Option<Duration>,
    /// A connection with no request in flight for this long is closed; None: never.
    pub idle_timeout: Option<Duration>,
}

/// Accepts until `shutdown` fires, then drains connections (bounded).
#[allow(clippy::too_many_arguments)] // the server's parts, each owned by another module
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    admission: Arc<Admission>,
    settings: AcceptSettings,
    proxy_from: Arc<proxy::ProxyFrom>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let tracker = TaskTracker::new();
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("mcp-zt: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            state.audit.log(
                Event::new("connection_refused")
                    .peer(peer)
                    .reason("connection limit reached"),
            );
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let conn = Connection {
            state: state.clone(),
            acceptor: acceptor.clone(),
            router: router.clone(),
            settings,
            shutdown: shutdown.clone(),
        };
        if proxy_from.trusts(peer.ip()) {
            // The real client address comes first, read off the accept loop.
            let admission = admission.clone();
            tracker.spawn(async move {
                let mut tcp = tcp;
                // A short, fixed bound: the read holds a connection slot before any
                // per-address limit applies.
                let limit = conn.settings.handshake_timeout.min(proxy::HEADER_TIMEOUT);
                let client = match proxy::read_header(&mut tcp, peer, limit).await {
                    Ok(client) => client,
                    Err(why) => {
                        conn.state.audit.log(
                            Event::new("connection_refused")
                                .peer(peer)
                                .reason(format!("from a --proxy-protocol-from address: {why}")),
                        );
                        return;
                    }
                };
                if let Some((delay, ticket)) = admit(&conn.state, &admission, client) {
                    conn.serve(tcp, client, delay, ticket).await;
                }
                drop(permit);
            });
            continue;
        }
        let Some((delay, ticket)) = admit(&state, &admission, peer) else {
            continue;
        };
        tracker.spawn(async move {
            conn.serve(tcp, peer, delay, ticket).await;
            drop(permit);
        });
    }
    tracker.close();
    if tokio::time::timeout(settings.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        eprintln!(
            "mcp-zt: {} connection(s) still open after {:?}; closing them",
            tracker.len(),
            settings.drain_timeout
        );
    }
}

/// Admission of a connection from `peer` (the client's address, behind a balancer too): a
/// replica whose revocations went stale refuses it, then the per-address rate and lockout
/// rules apply. `None`: refused (and audited).
fn admit(
    state: &AppState,
    admission: &Arc<Admission>,
    peer: std::net::SocketAddr,
) -> Option<(Duration, Ticket)> {
    if !state.replica.fresh() {
        state
            .audit
            .log(Event::new("connection_refused").peer(peer).reason(format!(
                "revocations not synced for {} ms (shared ledger unreachable, over \
             --revocation-max-stale): new handshakes are refused",
                state.replica.stale_ms()
            )));
        return None;
    }
    let group = AddrGroup::from(peer.ip());
    let delay = match admission.arrive(group, Instant::now()) {
        Ok(delay) => delay,
        Err(refusal) => {
            state
                .audit
                .log(Event::new("connection_refused").peer(peer).reason(refusal));
            return None;
        }
    };
    Some((
        delay,
        Ticket {
            admission: admission.clone(),
            group,
            presented: false,
            done: false,
        },
    ))
}

struct Connection {
    state: Arc<AppState>,
    acceptor: TlsAcceptor,
    router: Router,
    settings: AcceptSettings,
    shutdown: CancellationToken,
}

/// A handshake in progress, counted by [`Admission`] until it ends (also when the task is
/// dropped at shutdown).
struct Ticket {
    admission: Arc<Admission>,
    group: AddrGroup,
    presented: bool,
    done: bool,
}

impl Ticket {
    fn finish(&mut self, presented: bool) {
        self.presented = presented;
        if !self.done {
            self.done = true;
            self.admission.finished(self.group, presented);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.finish(self.presented);
    }
}

impl Connection {
    /// A failed handshake. Only one that presented a certificate is an authentication failure,
    /// counted against that certificate from that address; one that never presented a
    /// certificate (closed, timed out, not TLS, declined to send one) already paid from the
    /// address's handshake bucket and is audited as `handshake_incomplete` (or, when the client
    /// declined to send a certificate, `handshake_rejected: no client certificate`).
    fn failed(&self, peer: SocketAddr, ticket: &Ticket, seen: Option<Fingerprint>, event: Event) {
        let Some(fp) = seen else {
            let mut event = event;
            if event.reason.as_deref() != Some(NO_CERT) {
                event.event = "handshake_incomplete".into();
            }
            return self.state.audit.log(event);
        };
        let lockout = Event::new("lockout")
            .peer(peer)
            .claimed(event.claimed_serial.clone(), event.claimed_name.clone());
        self.state.audit.log(event);
        if let Some(locked) = ticket.admission.failure(ticket.group, fp, Instant::now()) {
            self.state.audit.log(lockout.reason(format!(
                "certificate locked out from {} for {}s after {} failed handshakes",
                ticket.group,
                locked.left.as_secs(),
                locked.failures
            )));
        }
    }

    async fn serve(self, tcp: TcpStream, peer: SocketAddr, delay: Duration, mut ticket: Ticket) {
        if !delay.is_zero() {
            // The address's handshake bucket is empty: this connection waits for its token.
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        let gate = HandshakeGate::new(ticket.admission.clone(), ticket.group);
        let (handshake, verdict, seen) = GATE
            .scope(
                gate,
                VERDICT.scope(std::cell::RefCell::new(None), async {
                    let r = tokio::time::timeout(
                        self.settings.handshake_timeout,
                        self.acceptor.accept(tcp).into_fallible(),
                    )
                    .await;
                    (
                        r,
                        VERDICT.with(|slot| slot.borrow_mut().take()),
                        GATE.with(HandshakeGate::seen),
                    )
                }),
            )
            .await;
        // Only a completed handshake gets its token back: garbage certificates must not refill
        // the bucket. Only a certificate the verifier refused counts towards its lockout: a
        // valid certificate whose holder failed to prove the key (anyone can replay the public
        // certificate) or whose connection dropped must not lock the real holder out.
        ticket.finish(matches!(&handshake, Ok(Ok(_))));
        let refused = seen.filter(|_| matches!(verdict, Some(Err(_))));
        let tls = match handshake {
            Err(_) => {
                let event = Event::new("handshake_rejected").peer(peer);
                return self.failed(peer, &ticket, refused, event.reason("handshake timeout"));
            }
            Ok(Err((e, tcp))) => {
                // Awaited, not spawned: the lingering socket stays under the connection permit.
                linger_close(tcp).await;
                let event = Event::new("handshake_rejected").peer(peer);
                let rejection = verdict.and_then(Result::err);
                let event = match rejection.or_else(|| rejection_of(&e)) {
                    Some(r) => event.claimed(r.serial, r.name).reason(r.reason),
                    None => event.reason(handshake_reason(&e)),
                };
                return self.failed(peer, &ticket, refused, event);
            }
            Ok(Ok(tls)) => tls,
        };
        let presented = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
        // The certificate's hash binds OAuth tokens to it (`cnf`); without OAuth nothing
        // reads it, so the handshake does not pay for it.
        let x5t = presented
            .filter(|_| self.state.oauth.is_some())
            .map(|der| crate::oauth::crypto::sha256_b64(der));
        let identity = if let Some(Ok(id)) = verdict {
            id
        } else if presented.is_none() && self.state.oauth.is_some() {
            // OAuth is on: a connection without a certificate may go on; each request on it
            // must bring an access token (the HTTP layer checks and audits), or be one of the
            // OAuth endpoints. Not audited here: no identity was decided, and anyone can open
            // such connections in bulk.
            let peer_info = Arc::new(Peer {
                id: self.state.conns.next_id(),
                addr: peer,
                x5t: None,
                token: Default::default(),
            });
            return self
                .http(tls, peer_info, None, CancellationToken::new())
                .await;
        } else {
            // Not reached with ZtVerifier, which always leaves its verdict; kept so the identity
            // never depends on that.
            let (_, session) = tls.get_ref();
            let checked = session
                .peer_certificates()
                .and_then(|c| c.first())
                .ok_or_else(|| "no client certificate".to_string())
                .and_then(|der| self.state.verifier.check_identity(der));
            match checked {
                Ok(id) => id,
                Err(reason) => {
                    return self.failed(
                        peer,
                        &ticket,
                        seen,
                        Event::new("handshake_rejected").peer(peer).reason(reason),
                    )
                }
            }
        };
        if let Some(fp) = seen {
            ticket.admission.success(ticket.group, fp);
        }
        self.state
            .audit
            .log(Event::new("handshake_ok").peer(peer).who(&identity));
        self.state.certificate_seen(&identity.serial);
        let id = self.state.conns.next_id();
        let serial = identity.serial.clone();
        let cap = self.settings.max_connections_per_cert;
        let revoked = match self.state.conns.register(&serial, id, cap) {
            Ok(token) => token,
            Err(open) => {
                self.state.audit.log(
                    Event::new("connection_refused")
                        .peer(peer)
                        .who(&identity)
                        .reason(format!(
                            "certificate already has {open} connections open \
                             (--max-connections-per-cert {cap})"
                        )),
                );
                let mut tls = tls;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                return;
            }
        };
        // A revocation may have landed between the verifier and the registration.
        if self.state.revoked.contains(&serial) {
            revoked.cancel();
        }
        self.state.conns.describe(crate::server::state::ConnView {
            id,
            serial: serial.clone(),
            name: identity.name.clone(),
            role: identity.role.clone(),
            addr: peer.to_string(),
            since: crate::pki::now().unix_timestamp(),
        });
        let info = Arc::new(ConnInfo { id, peer, identity });
        let peer_info = Arc::new(Peer {
            id,
            addr: peer,
            x5t,
            token: Default::default(),
        });
        self.http(tls, peer_info, Some(info), revoked).await;
        self.state.conns.unregister(&serial, id);
    }

    /// Serves HTTP on a verified connection until it closes, idles out, is revoked (`revoked`
    /// fires) or the server stops. `info`: the certificate's identity, if the client sent one.
    async fn http(
        &self,
        tls: tokio_rustls::server::TlsStream<TcpStream>,
        peer_info: Arc<Peer>,
        info: Option<Arc<ConnInfo>>,
        revoked: CancellationToken,
    ) {
        let peer = peer_info.addr;
        let router = self.router.clone();
        let conn_info = info.clone();
        let activity = Arc::new(Activity::new());
        let active = activity.clone();
        let svc = tower::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            // The request counts as in flight until its response body is gone.
            let guard = active.begin();
            req.extensions_mut().insert(peer_info.clone());
            if let Some(c) = &conn_info {
                req.extensions_mut().insert(c.clone());
            }
            let response = router.clone().oneshot(req.map(axum::body::Body::new));
            async move {
                let response = response.await?;
                Ok::<_, std::convert::Infallible>(response.map(|inner| {
                    axum::body::Body::new(Tracked {
                        inner,
                        _guard: guard,
                    })
                }))
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.settings.header_read_timeout);
        builder.http2().timer(TokioTimer::new());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(svc));
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = idle(activity, self.settings.idle_timeout) => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(self.settings.drain_timeout, conn.as_mut()).await;
            }
            _ = revoked.cancelled() => {
                if let Some(info) = &info {
                    self.state.audit.log(
                        Event::new("connection_cut").peer(peer).who(&info.identity).reason("certificate revoked"),
                    );
                }
            }
            _ = self.shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(self.settings.drain_timeout, conn.as_mut()).await;
            }
        }
    }
}

/// Closes a refused connection so the client can read the TLS alert: in TLS 1.3 the client
/// sends its first request right after its Finished; closing with that unread would make the
/// kernel send a reset, which destroys the alert in flight. So: FIN first, then read and
/// discard what the client still sends, for a bounded time.
async fn linger_close(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut total = 0usize;
        while let Ok(n) = tcp.read(&mut sink).await {
            total += n;
            if n == 0 || total > 1 << 20 {
                break;
            }
        }
    })
    .await;
}

const NO_CERT: &str = "no client certificate";

fn handshake_reason(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::NoCertificatesPresented) => NO_CERT.into(),
        Some(other) => format!("TLS: {other}"),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "connection closed before the handshake finished".into()
        }
        None => format!("connection: {e}"),
    }
}

/// Requests in flight on one connection and when the last one ended.
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<tokio::time::Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            last: Mutex::new(tokio::time::Instant::now()),
        }
    }
    fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        ActiveGuard(self.clone())
    }
    fn last(&self) -> tokio::time::Instant {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One request in flight; dropped with its response body (or with the request if it never got
/// one), so an open SSE stream keeps its connection active.
struct ActiveGuard(Arc<Activity>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that holds its request's [`ActiveGuard`].
struct Tracked {
    inner: axum::body::Body,
    _guard: ActiveGuard,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Resolves once the connection has had no request in flight for `timeout`; never with None.
async fn idle(activity: Arc<Activity>, timeout: Option<Duration>) {
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    loop {
        let busy = activity.in_flight.load(Ordering::SeqCst) > 0;
        let deadline = activity.last() + timeout;
        let now = tokio::time::Instant::now();
        if !busy && now >= deadline {
            return;
        }
        let wake = if busy { now + timeout } else { deadline };
        tokio::time::sleep_until(wake).await;
    }
}
