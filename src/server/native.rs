//! `serve --transport native`: mcp-zt's own first stop for `/mcp`, in front of rmcp's
//! streamable-HTTP service.
//!
//! A POST is read once into an envelope ([`crate::mcp::envelope`]). A `tools/call` the direct
//! path takes ([`crate::mcp::direct`]) is answered here with one JSON reply: no session task, no
//! channel, no SSE framing, no second parse. These qualify:
//! - a stateless 2026-07-28 call of a built-in tool;
//! - a call of a built-in tool in a session of an earlier revision, once that session finished
//!   its handshake (its `notifications/initialized` was accepted) and while rmcp still holds
//!   it. The answer is `application/json` where rmcp answers a one-message SSE stream; the
//!   spec allows either, and the message is the same;
//! - a stateless 2026-07-28 call of a shared upstream's tool, from a client that declared no
//!   capabilities and asked for no progress or log messages: relayed with the arguments as
//!   sent, to an HTTP upstream of that revision ([`crate::upstream::direct`]) or on a stdio
//!   child's pipes ([`crate::upstream::pipe`]).
//!
//! Everything else (initialize, lists, streams, notifications, every request the envelope or the
//! direct path declines) goes to rmcp with the same bytes, so its answers are rmcp's own.
//!
//! It sits inside the guard (`http.rs`): revocation, Origin, session binding and the body
//! limit have run before it, exactly as for rmcp. Because rmcp does not see the calls answered
//! here, its session idle timer is off with this transport and mcp-zt's sweep ends idle
//! sessions instead (`http::sweep_sessions`).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{header, Method, Request, StatusCode};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use tower::{Service, ServiceExt};

use super::state::AppState;
use crate::identity::ConnInfo;
use crate::mcp::direct::{self, Direct};
use crate::mcp::envelope;
use crate::mcp::hub::Hub;

/// Which transport serves `/mcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Transport {
    /// rmcp's streamable-HTTP service for every request.
    #[default]
    Rmcp,
    /// mcp-zt's own direct path for tool calls of built-in tools and relayed calls of shared
    /// upstreams' tools, rmcp for the rest.
    Native,
}

/// The `/mcp` service of the native transport; `inner` is rmcp's. Cloned for every request
/// (axum does), so everything sits behind one reference count.
pub struct NativeMcp<S>(Arc<Shared<S>>);

impl<S> Clone for NativeMcp<S> {
    fn clone(&self) -> Self {
        NativeMcp(self.0.clone())
    }
}

struct Shared<S> {
    hub: Arc<Hub>,
    state: Arc<AppState>,
    sessions: Arc<LocalSessionManager>,
    allowed_hosts: Vec<String>,
    max_body_bytes: usize,
    inner: S,
}

impl<S> NativeMcp<S> {
    /// The native transport in front of `inner`, which serves with `sessions`.
    pub fn new(
        hub: Arc<Hub>,
        state: Arc<AppState>,
        sessions: Arc<LocalSessionManager>,
        allowed_hosts: Vec<String>,
        inner: S,
    ) -> Self {
        NativeMcp(Arc::new(Shared {
            hub,
            max_body_bytes: state.max_body_bytes,
            state,
            sessions,
            allowed_hosts,
            inner,
        }))
    }
}

/// What the native transport makes of one POST before rmcp could see it.
enum Taken {
    /// Answered here.
    Answer(Response),
    /// rmcp's; when it accepts this `notifications/initialized`, the session is ready.
    Initialized(String),
    /// rmcp's.
    Rmcp,
}

/// The direct answer to this POST, if the direct path takes it.
async fn take<S>(this: &Shared<S>, parts: &http::request::Parts, body: &[u8]) -> Taken {
    let Some(conn) = parts.extensions.get::<Arc<ConnInfo>>() else {
        return Taken::Rmcp;
    };
    // A token-borne request has its answer watched by the bearer layer (the grant can be
    // revoked while it runs): rmcp's.
    if conn.identity.oauth.is_some() {
        return Taken::Rmcp;
    }
    let (call, modern) = if parts.headers.contains_key("mcp-session-id") {
        let Some(session) =
            envelope::session_headers_direct(&parts.headers, &parts.uri, &this.allowed_hosts)
        else {
            return Taken::Rmcp;
        };
        let Some(call) = envelope::session_tool_call(body) else {
            if envelope::is_initialized_notification(body) {
                return Taken::Initialized(session);
            }
            return Taken::Rmcp;
        };
        let live = this
            .sessions
            .sessions
            .read()
            .await
            .contains_key(session.as_str());
        if !live
            || !this
                .state
                .sessions
                .ready_for(&session, &conn.identity.serial)
        {
            return Taken::Rmcp;
        }
        (call, false)
    } else {
        let Some(call) = envelope::tool_call(body) else {
            return Taken::Rmcp;
        };
        if !envelope::headers_direct(&parts.headers, &parts.uri, &this.allowed_hosts, &call.name) {
            return Taken::Rmcp;
        }
        (call, true)
    };
    match direct::tool_call(&this.hub, conn, call, modern).await {
        Direct::Answer(status, body) => {
            this.state.metrics.direct();
            Taken::Answer(
                (
                    status,
                    [(header::CONTENT_TYPE, "application/json")],
                    Body::from(body),
                )
                    .into_response(),
            )
        }
        Direct::Declined => Taken::Rmcp,
    }
}

impl<S, B> Service<Request<Body>> for NativeMcp<S>
where
    S: Service<Request<Body>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let this = self.0.clone();
        Box::pin(async move {
            let mut initialized = None;
            let req = if req.method() == Method::POST {
                let (parts, body) = req.into_parts();
                // The guard already read the body within the limit; this takes its one chunk.
                let Ok(bytes) = axum::body::to_bytes(body, this.max_body_bytes).await else {
                    return Ok((StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large").into_response());
                };
                match take(&this, &parts, &bytes).await {
                    Taken::Answer(answer) => return Ok(answer),
                    Taken::Initialized(session) => initialized = Some(session),
                    Taken::Rmcp => {}
                }
                Request::from_parts(parts, Body::from(bytes))
            } else {
                req
            };
            let response = this.inner.clone().oneshot(req).await?;
            if let Some(session) = initialized {
                if response.status() == StatusCode::ACCEPTED {
                    this.state.sessions.mark_ready(&session);
                }
            }
            Ok(response.map(Body::new))
        })
    }
}
