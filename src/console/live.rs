//! Live views: the open sessions as JSON (the sessions pages refresh from it) and the audit
//! log's live tail over SSE, fed by the audit writer's feed, not the file.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::Request;

use super::{gate, secure};
use crate::server::state::AppState;

/// `GET /console/sessions.json`.
pub async fn sessions_json(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    if let Err(r) = gate(&state, &req) {
        return *r;
    }
    secure(axum::Json(state.conns.views()).into_response())
}

/// `GET /console/audit/stream`: every new audit line as one SSE event (`data:` the JSON
/// line). The stream runs on the admin's own connection, so revoking their certificate ends
/// it with the connection.
pub async fn audit_stream(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    if let Err(r) = gate(&state, &req) {
        return *r;
    }
    let rx = state.audit.subscribe();
    let stream =
        tokio_stream_of(rx).map(|line| Ok::<_, Infallible>(SseEvent::default().data(line)));
    secure(
        Sse::new(stream)
            .keep_alive(KeepAlive::default())
            .into_response(),
    )
}

/// The feed as a stream of lines; a listener that fell behind is told how many it missed.
fn tokio_stream_of(
    rx: tokio::sync::broadcast::Receiver<Arc<str>>,
) -> impl futures_util::Stream<Item = String> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(line) => Some((line.to_string(), rx)),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => Some((
                format!("{{\"event\":\"console_feed_lagged\",\"reason\":\"{n} lines not shown\"}}"),
                rx,
            )),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
        }
    })
}
