//! `serve --transport native`: mcp-zt's own first stop for `/mcp`, in front of rmcp's
//! streamable-HTTP service.
//!
//! A POST is read once into an envelope ([`crate::mcp::envelope`]); a stateless 2026-07-28
//! `tools/call` that the direct path takes ([`crate::mcp::direct`]) is answered here with one
//! JSON reply: no session task, no channel, no second parse. Everything else (sessions,
//! streams, lists, every request the envelope declines or the direct path declines) goes to
//! rmcp with the same bytes, so its answers are the rmcp transport's own.
//!
//! It sits inside the guard (`http.rs`): revocation, Origin, session binding and the body
//! limit have run before it, exactly as for rmcp.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{header, Method, Request, StatusCode};
use tower::{Service, ServiceExt};

use crate::identity::ConnInfo;
use crate::mcp::direct::{self, Direct};
use crate::mcp::envelope;
use crate::mcp::hub::Hub;
use crate::server::metrics::Metrics;

/// Which transport serves `/mcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Transport {
    /// rmcp's streamable-HTTP service for every request.
    #[default]
    Rmcp,
    /// mcp-zt's own direct path for stateless tool calls, rmcp for the rest.
    Native,
}

/// The `/mcp` service of the native transport; `inner` is rmcp's.
#[derive(Clone)]
pub struct NativeMcp<S> {
    hub: Arc<Hub>,
    allowed_hosts: Arc<Vec<String>>,
    max_body_bytes: usize,
    metrics: Arc<Metrics>,
    inner: S,
}

impl<S> NativeMcp<S> {
    /// The native transport in front of `inner`.
    pub fn new(
        hub: Arc<Hub>,
        allowed_hosts: Vec<String>,
        max_body_bytes: usize,
        metrics: Arc<Metrics>,
        inner: S,
    ) -> Self {
        NativeMcp {
            hub,
            allowed_hosts: Arc::new(allowed_hosts),
            max_body_bytes,
            metrics,
            inner,
        }
    }
}

/// The direct answer to this POST, if the direct path takes it.
async fn direct(
    hub: &Hub,
    allowed_hosts: &[String],
    parts: &http::request::Parts,
    body: &[u8],
) -> Option<Response> {
    let conn = parts.extensions.get::<Arc<ConnInfo>>()?;
    let call = envelope::tool_call(body)?;
    if !envelope::headers_direct(&parts.headers, &parts.uri, allowed_hosts, &call.name) {
        return None;
    }
    match direct::tool_call(hub, conn, call).await {
        Direct::Answer(status, body) => Some(
            (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                Body::from(body),
            )
                .into_response(),
        ),
        Direct::Declined => None,
    }
}

impl<S, B> Service<Request<Body>> for NativeMcp<S>
where
    S: Service<Request<Body>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
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
        let this = self.clone();
        Box::pin(async move {
            let req = if req.method() == Method::POST {
                let (parts, body) = req.into_parts();
                // The guard already read the body within the limit; this takes its one chunk.
                let Ok(bytes) = axum::body::to_bytes(body, this.max_body_bytes).await else {
                    return Ok((StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large").into_response());
                };
                if let Some(answer) = direct(&this.hub, &this.allowed_hosts, &parts, &bytes).await {
                    this.metrics.direct();
                    return Ok(answer);
                }
                Request::from_parts(parts, Body::from(bytes))
            } else {
                req
            };
            let response = this.inner.oneshot(req).await?;
            Ok(response.map(Body::new))
        })
    }
}
