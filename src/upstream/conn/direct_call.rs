//! A call relayed by the native transport on an upstream's direct link (HTTP) or a stdio
//! child's pipes: apart from [`Instance::request`], which goes through rmcp's client, and with
//! the guards that end it cleanly however it ends.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::BoxFuture;
use rmcp::{ErrorData, ServiceError};

use super::{cancelled, failure, Instance, MARK};
use crate::mcp::provider::{RelayAnswer, Relayed};
use crate::upstream::direct::Failed;
use crate::upstream::relay::Routes;

/// Tells the upstream to stop working on a relayed call.
type Canceller = Box<dyn FnOnce(&'static str) + Send>;

/// The canceller of a relayed call until it has ended.
struct Armed(Option<Canceller>);

impl Armed {
    fn fire(&mut self, reason: &'static str) {
        if let Some(cancel) = self.0.take() {
            cancel(reason);
        }
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        self.fire("cancelled by the client");
    }
}

/// Marks a relayed call on a child's pipes ended (answered or not) however it ends.
struct RelayedEnd<'a>(&'a Routes, bool);

impl Drop for RelayedEnd<'_> {
    fn drop(&mut self) {
        self.0.relayed_ended(self.1);
    }
}

/// One call counted in flight until it is dropped.
struct Inflight<'a>(&'a AtomicUsize);

impl<'a> Inflight<'a> {
    fn count(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Inflight(n)
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Instance {
    /// Relays one 2026-07-28 call on the direct link (HTTP) or the pipes (stdio), with the
    /// same timeout, cancellation and failure handling as [`Instance::request`]: a transport
    /// failure ends the connection, a timeout or a revocation tells the upstream to cancel.
    pub async fn relay(&self, upstream: &str, call: Relayed<'_>) -> Result<RelayAnswer, ErrorData> {
        self.touch();
        // Counted while in flight however it ends (the client may go away mid-call).
        let _inflight = Inflight::count(&self.direct_inflight);
        let (sent, cancel): (BoxFuture<'_, Result<RelayAnswer, Failed>>, Canceller) =
            if let Some(link) = &self.direct {
                let id = link.next_id();
                let sent = link.send(
                    id,
                    call.method,
                    call.inner,
                    call.arguments,
                    call.capabilities,
                );
                let link = link.clone();
                let cancel: Canceller = Box::new(move |reason| {
                    tokio::spawn(async move { link.cancel(id, reason).await });
                });
                (Box::pin(sent), cancel)
            } else if let (Some(pipe), Some(first)) = (&self.pipe, self.links.first()) {
                // Relayed calls on a child's pipes count for its routing (see [`Routes`]).
                let routes = first.routes.clone();
                let id = pipe.next_id();
                let sent = {
                    let (pipe, id) = (pipe.clone(), id.clone());
                    let (method, inner, args) = (call.method, call.inner, call.arguments);
                    async move {
                        routes.relayed_began();
                        let mut ended = RelayedEnd(&routes, false);
                        let r = pipe.send(&id, method, inner, args).await;
                        ended.1 = r.is_ok();
                        r
                    }
                };
                // Dropping the call (timeout, revocation, the client gone) cancels it at the
                // child (see `PipeLink::send`).
                let cancel: Canceller = Box::new(|_| {});
                (Box::pin(sent), cancel)
            } else {
                return Err(self.transport_failed(upstream, ServiceError::TransportClosed));
            };
        // Armed until the call ends here: dropped earlier (the client went away), it tells the
        // upstream to cancel.
        let mut armed = Armed(Some(cancel));
        let result = tokio::select! {
            r = sent => match r {
                Ok(RelayAnswer::Error(mut e)) => {
                    // An upstream cannot pose as the gateway's own failure reports.
                    if let Some(serde_json::Value::Object(data)) = e.data.as_mut() {
                        data.remove(MARK);
                    }
                    Ok(RelayAnswer::Error(e))
                }
                Ok(answer) => Ok(answer),
                Err(failed) => {
                    let detail = match failed {
                        Failed::Broken(detail) => {
                            self.close();
                            detail
                        }
                        Failed::Call(detail) => detail,
                    };
                    Err(failure(
                        "unavailable",
                        format!("upstream {upstream} is unavailable"),
                        Some(detail),
                    ))
                }
            },
            () = tokio::time::sleep(self.timeout) => {
                armed.fire("mcp-zt: timeout");
                Err(self.timed_out(upstream))
            }
            () = call.ct.cancelled() => {
                armed.fire("cancelled by the client");
                Err(cancelled())
            }
        };
        armed.0 = None;
        self.touch();
        result
    }
}
