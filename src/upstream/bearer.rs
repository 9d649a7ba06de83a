//! The HTTP client of a holder's own connection to a per-holder OAuth upstream: every request
//! carries the holder's current upstream token, read from a slot the linker refreshes, so a
//! refreshed token is used at once without reconnecting. Refusals (401, 403 with
//! `insufficient_scope`) are kept for the provider, which turns them into a link request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use futures_util::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::Sse;
use zeroize::Zeroizing;

/// What the upstream said when it refused the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// 401: the token is not (or no longer) good.
    Unauthorized(String),
    /// 403 `insufficient_scope`: the `WWW-Authenticate` value (it names the scopes).
    InsufficientScope(String),
}

/// One holder's token for one connection, and the last refusal.
#[derive(Default)]
pub struct BearerSlot {
    token: RwLock<Zeroizing<String>>,
    failure: Mutex<Option<AuthFailure>>,
}

impl std::fmt::Debug for BearerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerSlot(..)")
    }
}

impl BearerSlot {
    /// A slot holding `token`.
    pub fn new(token: Zeroizing<String>) -> Arc<BearerSlot> {
        Arc::new(BearerSlot {
            token: RwLock::new(token),
            failure: Mutex::new(None),
        })
    }

    /// Puts the current token in (after a refresh).
    pub fn set(&self, token: &Zeroizing<String>) {
        let mut t = self.token.write().unwrap_or_else(|e| e.into_inner());
        if *t != *token {
            *t = token.clone();
        }
    }

    fn current(&self) -> String {
        self.token
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .to_string()
    }

    /// The refusal seen since the last call, if any (taken).
    pub fn take_failure(&self) -> Option<AuthFailure> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn note<T, E: std::error::Error + Send + Sync + 'static>(
        &self,
        r: &Result<T, StreamableHttpError<E>>,
    ) {
        let failure = match r {
            Err(StreamableHttpError::AuthRequired(e)) => {
                AuthFailure::Unauthorized(e.www_authenticate_header.clone())
            }
            Err(StreamableHttpError::InsufficientScope(e)) => {
                AuthFailure::InsufficientScope(e.www_authenticate_header.clone())
            }
            _ => return,
        };
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(failure);
    }
}

/// reqwest, with the holder's token from the slot on every request (whatever rmcp passes);
/// without a slot (upstreams with static headers) it is reqwest itself.
#[derive(Clone)]
pub struct BearerClient {
    /// The upstream's HTTP client.
    pub inner: reqwest::Client,
    /// The holder's token.
    pub slot: Option<Arc<BearerSlot>>,
}

impl BearerClient {
    fn token(&self, auth: Option<String>) -> Option<String> {
        match &self.slot {
            Some(s) => Some(s.current()),
            None => auth,
        }
    }

    fn note<T>(&self, r: &Result<T, StreamableHttpError<reqwest::Error>>) {
        if let Some(s) = &self.slot {
            s.note(r);
        }
    }
}

type Sent = Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>>;
type Stream =
    Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<reqwest::Error>>;

impl StreamableHttpClient for BearerClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Sent {
        let token = self.token(auth);
        let r = self
            .inner
            .post_message(uri, message, session_id, token, custom_headers)
            .await;
        self.note(&r);
        r
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Sent {
        let token = self.token(auth);
        let r = self
            .inner
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                token,
                custom_headers,
                max_sse_event_size,
            )
            .await;
        self.note(&r);
        r
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Sent {
        let token = self.token(auth);
        let r = self
            .inner
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                token,
                custom_headers,
                limits,
            )
            .await;
        self.note(&r);
        r
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        let token = self.token(auth);
        self.inner
            .delete_session(uri, session_id, token, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Stream {
        let token = self.token(auth);
        let r = self
            .inner
            .get_stream(uri, session_id, last_event_id, token, custom_headers)
            .await;
        self.note(&r);
        r
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Stream {
        let token = self.token(auth);
        let r = self
            .inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                token,
                custom_headers,
                max_sse_event_size,
            )
            .await;
        self.note(&r);
        r
    }
}
