//! The TLS accept loop: connection cap, lockout, handshake timeout, identity, and per-connection
//! cancellation so a revocation closes live connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::state::{AppState, ConnInfo};
use crate::audit::Event;
use crate::tls::lockout::Lockout;
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
}

/// Accepts until `shutdown` fires, then drains connections (bounded).
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    lockout: Arc<Lockout>,
    settings: AcceptSettings,
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
        if let Some(left) = lockout.blocked(peer.ip(), Instant::now()) {
            state
                .audit
                .log(Event::new("connection_refused").peer(peer).reason(format!(
                    "address locked out for {}s more",
                    left.as_secs() + 1
                )));
            continue;
        }
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
            lockout: lockout.clone(),
            settings,
            shutdown: shutdown.clone(),
        };
        tracker.spawn(async move {
            conn.serve(tcp, peer).await;
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

struct Connection {
    state: Arc<AppState>,
    acceptor: TlsAcceptor,
    router: Router,
    lockout: Arc<Lockout>,
    settings: AcceptSettings,
    shutdown: CancellationToken,
}

impl Connection {
    fn failed(&self, peer: SocketAddr, event: Event) {
        self.state.audit.log(event);
        if self.lockout.failure(peer.ip(), Instant::now()) {
            self.state.audit.log(
                Event::new("lockout")
                    .peer(peer)
                    .reason("too many failed handshakes"),
            );
        }
    }

    async fn serve(self, tcp: TcpStream, peer: SocketAddr) {
        let (handshake, verdict) = VERDICT
            .scope(std::cell::RefCell::new(None), async {
                let r = tokio::time::timeout(
                    self.settings.handshake_timeout,
                    self.acceptor.accept(tcp).into_fallible(),
                )
                .await;
                (r, VERDICT.with(|slot| slot.borrow_mut().take()))
            })
            .await;
        let tls = match handshake {
            Err(_) => {
                return self.failed(
                    peer,
                    Event::new("handshake_rejected")
                        .peer(peer)
                        .reason("handshake timeout"),
                )
            }
            Ok(Err((e, tcp))) => {
                tokio::spawn(linger_close(tcp));
                let event = Event::new("handshake_rejected").peer(peer);
                let rejection = verdict.and_then(Result::err);
                let event = match rejection.or_else(|| rejection_of(&e)) {
                    Some(r) => event.claimed(r.serial, r.name).reason(r.reason),
                    None => event.reason(handshake_reason(&e)),
                };
                return self.failed(peer, event);
            }
            Ok(Ok(tls)) => tls,
        };
        let identity = if let Some(Ok(id)) = verdict {
            id
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
                        Event::new("handshake_rejected").peer(peer).reason(reason),
                    )
                }
            }
        };
        self.lockout.success(peer.ip());
        self.state
            .audit
            .log(Event::new("handshake_ok").peer(peer).who(&identity));
        self.state.certificate_seen(&identity.serial);
        let id = self.state.conns.next_id();
        let serial = identity.serial.clone();
        let revoked = self.state.conns.register(&serial, id);
        // A revocation may have landed between the verifier and the registration.
        if self.state.revoked.contains(&serial) {
            revoked.cancel();
        }
        let info = Arc::new(ConnInfo { id, peer, identity });
        let router = self.router.clone();
        let conn_info = info.clone();
        let svc = tower::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(conn_info.clone());
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let builder = auto::Builder::new(TokioExecutor::new());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(svc));
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = revoked.cancelled() => {
                self.state.audit.log(
                    Event::new("connection_cut").peer(peer).who(&info.identity).reason("certificate revoked"),
                );
            }
            _ = self.shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(self.settings.drain_timeout, conn.as_mut()).await;
            }
        }
        self.state.conns.unregister(&serial, id);
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

fn handshake_reason(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::NoCertificatesPresented) => "no client certificate".into(),
        Some(other) => format!("TLS: {other}"),
        None => format!("connection: {e}"),
    }
}
