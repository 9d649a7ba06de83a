//! Multi-round-trip requests (MCP 2026-07-28): the sealed `requestState` a client brings back,
//! and the calls mcp-zt holds open for a 2026-07-28 client while an older upstream waits on
//! its answer. The handler's side of `mrtr` and `state`.

use rmcp::model::{ClientRequest, ServerResult};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};

use super::provider::{self, Caller};
use super::state::Binding;
use super::{mrtr, Ask, ZtMcp};

impl ZtMcp {
    /// Opens the `requestState` a client brought back (sealed by [`Self::seal`]): the
    /// provider's own state goes back into `state`; the id of a call held for this client is
    /// returned. A state that fails any check is refused and audited.
    pub(super) fn unseal(
        &self,
        ask: &Ask,
        (method, name, provider): (&str, &str, &str),
        state: &mut Option<String>,
    ) -> Result<Option<String>, ErrorData> {
        let Some(token) = state.take() else {
            return Ok(None);
        };
        let who = &ask.conn.identity;
        let to = binding(who, (method, name, provider));
        let now = crate::pki::now().unix_timestamp();
        match self
            .hub
            .sealer
            .open(&token, &to, now, |s| self.hub.is_revoked(s))
        {
            Ok(inner) => match inner.as_deref().and_then(|i| i.split_once(':')) {
                Some(("p", id)) => Ok(Some(id.to_string())),
                Some(("u", provider_state)) => {
                    *state = Some(provider_state.to_string());
                    Ok(None)
                }
                _ => Ok(None),
            },
            Err(e) => {
                self.hub
                    .gate
                    .request_state_refused(who, &ask.peer, method, name, &e);
                Err(ErrorData::invalid_params(
                    "invalid requestState: start the request over",
                    None,
                ))
            }
        }
    }

    /// Seals the state of an `input_required` answer for this caller, method and item, so
    /// only this certificate, under this role, can continue it, and only for a while.
    pub(super) fn seal(
        &self,
        ask: &Ask,
        (method, name, provider): (&str, &str, &str),
        result: &mut ServerResult,
    ) {
        seal(
            &self.hub,
            &ask.conn.identity,
            (method, name, provider),
            result,
        );
    }

    /// Runs (or, with `resume`, continues) a call of a 2026-07-28 client on an upstream: a
    /// question an older upstream asks the client mid-call holds the call and becomes an
    /// `input_required` answer; the client's retry brings the answers.
    pub(super) async fn translated(
        &self,
        provider: provider::SharedProvider,
        mut caller: Caller,
        request: ClientRequest,
        ctx: &RequestContext<RoleServer>,
        held: Option<mrtr::Pending>,
    ) -> Result<ServerResult, ErrorData> {
        let serial = caller.identity.serial.clone();
        let (pending, answers) = match held {
            Some(p) => (p, mrtr::answers_of(&request)),
            None => {
                let (tx, rx) = tokio::sync::mpsc::channel(8);
                caller.asker = Some(tx);
                let ct = caller.ct.clone();
                let task = tokio::spawn(async move { provider.request(&caller, request).await });
                (mrtr::Pending::new(&serial, task, rx, ct), None)
            }
        };
        match mrtr::drive(pending, answers, &ctx.ct).await {
            mrtr::Step::Done(mut r) => {
                if let Ok(r) = r.as_mut() {
                    mrtr::mark_complete(r);
                    provider_state(r);
                }
                r
            }
            mrtr::Step::Ask(p, mut asking) => {
                let id = self.hub.pending.hold(p, self.hub.sealer.ttl())?;
                asking.request_state = Some(format!("p:{id}"));
                Ok(ServerResult::InputRequiredResult(asking))
            }
        }
    }
}

/// Seals the state of an `input_required` answer to `who` for (method, item, provider): the
/// client gets it back only as a sealed, bound, expiring value.
pub(super) fn seal(
    hub: &super::hub::Hub,
    who: &crate::identity::Identity,
    to: (&str, &str, &str),
    result: &mut ServerResult,
) {
    if let ServerResult::InputRequiredResult(r) = result {
        let to = binding(who, to);
        let now = crate::pki::now().unix_timestamp();
        r.request_state = Some(hub.sealer.seal(&to, r.request_state.as_deref(), now));
    }
}

/// What a state handed to `who` for (method, item, provider) is bound to.
fn binding<'a>(
    who: &'a crate::identity::Identity,
    (method, name, provider): (&'a str, &'a str, &'a str),
) -> Binding<'a> {
    Binding {
        serial: &who.serial,
        role: &who.role,
        method,
        name,
        provider,
    }
}

/// Marks the state of an `input_required` answer as the provider's own (`u:`), apart from
/// the ids of calls mcp-zt holds (`p:`), before it is sealed.
pub(super) fn provider_state(result: &mut ServerResult) {
    if let ServerResult::InputRequiredResult(r) = result {
        r.request_state = r.request_state.take().map(|s| format!("u:{s}"));
    }
}
