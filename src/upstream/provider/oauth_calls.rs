//! Calls to a per-holder OAuth upstream: each on the holder's own connection with the
//! holder's own token; a holder without a usable token is asked to link; an upstream that
//! refuses the token (401) or wants more scope (403 `insufficient_scope`) gets one link
//! request per call, with the union of the scopes, and never a loop.

use std::sync::Arc;

use rmcp::model::{ClientRequest, ServerResult};
use rmcp::ErrorData;

use super::UpstreamProvider;
use crate::audit::Event;
use crate::identity::Identity;
use crate::mcp::provider::{Caller, Items};
use crate::upstream::bearer::AuthFailure;
use crate::upstream::conn;
use crate::upstream::oauth::discover::{parse_challenge, union};
use crate::upstream::oauth::linker::{Access, Linker, NeedLink};
use crate::upstream::oauth::{prompt, REFUSED_MARK};

impl UpstreamProvider {
    /// What a holder is shown: their own connection's lists when linked; else the lists a
    /// linked holder's connection last saw (so a tool can be called, and the call asks to
    /// link).
    pub(super) async fn oauth_items(
        &self,
        linker: &Arc<Linker>,
        who: &Identity,
    ) -> Result<Arc<Items>, String> {
        let name = &self.cfg.name;
        if let Ok(access) = linker.access(who, name).await {
            if let Ok(inst) = self.instance(who, Some(&access)).await {
                let items = inst.items().await?;
                *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = Some(items.clone());
                return Ok(items);
            }
        }
        // Tools only: resources and prompts a holder's connection listed may name what is
        // in their account.
        self.catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| {
                Arc::new(Items {
                    tools: c.tools.clone(),
                    ..Items::default()
                })
            })
            .ok_or_else(|| {
                format!("upstream {name} needs each holder's own login and none is linked yet: run `mcp-zt link {name}`")
            })
    }

    /// One request on the holder's own connection.
    pub(super) async fn oauth_request(
        &self,
        linker: &Arc<Linker>,
        caller: &Caller,
        request: ClientRequest,
    ) -> Result<ServerResult, ErrorData> {
        let who = &caller.identity;
        let name = &self.cfg.name;
        let answered = prompt::answered(&request, name);
        let request = if answered {
            prompt::without_answer(request)
        } else {
            request
        };
        let access = match linker.access(who, name).await {
            Ok(a) => a,
            Err(need) if answered => {
                return prompt::refuse(
                    &request,
                    format!(
                        "{name} is not linked yet ({}): finish the sign-in in your browser, then call again",
                        need.reason
                    ),
                )
            }
            Err(need) => return prompt::ask_to_link(linker, caller, name, &request, need).await,
        };
        let inst = match self.instance(who, Some(&access)).await {
            Ok(i) => i,
            Err(e) => {
                if let Some(rest) = e.strip_prefix(REFUSED_MARK) {
                    let f = if rest.starts_with("403") {
                        AuthFailure::InsufficientScope(rest[4..].to_string())
                    } else {
                        AuthFailure::Unauthorized(rest.get(4..).unwrap_or("").to_string())
                    };
                    return self
                        .refused(linker, caller, &request, &access, f, answered)
                        .await;
                }
                return Err(conn::failure(
                    "unavailable",
                    format!("upstream {name} is unavailable"),
                    Some(e),
                ));
            }
        };
        let result = inst.request(name, caller, request.clone()).await;
        if let Some(f) = inst.bearer.as_ref().and_then(|b| b.take_failure()) {
            // A connection whose token was refused is not used again.
            inst.close();
            return self
                .refused(linker, caller, &request, &access, f, answered)
                .await;
        }
        result
    }

    async fn refused(
        &self,
        linker: &Arc<Linker>,
        caller: &Caller,
        request: &ClientRequest,
        access: &Access,
        f: AuthFailure,
        answered: bool,
    ) -> Result<ServerResult, ErrorData> {
        let name = &self.cfg.name;
        let who = &caller.identity;
        self.audit.log(
            Event::new("upstream_token_refused")
                .who(who)
                .item(format!("upstream:{name}"))
                .reason(crate::upstream::oauth::refusal_text(&f)),
        );
        match f {
            AuthFailure::Unauthorized(_) if answered => prompt::refuse(
                request,
                format!("{name} refuses your newly linked token: ask its owner what your account may use"),
            ),
            AuthFailure::Unauthorized(_) => {
                let need = NeedLink {
                    reason: "the upstream no longer accepts your token".into(),
                    scopes: Vec::new(),
                };
                prompt::ask_to_link(linker, caller, name, request, need).await
            }
            AuthFailure::InsufficientScope(h) => {
                let wanted = parse_challenge(&h).scopes();
                let has_all = wanted.iter().all(|s| access.link.scopes.contains(s));
                if answered || has_all {
                    return prompt::refuse(
                        request,
                        format!(
                            "{name} still answers insufficient_scope (wants {}) after a step-up to {}: your upstream account cannot grant it; ask the upstream's owner",
                            if wanted.is_empty() { "-".into() } else { wanted.join(" ") },
                            if access.link.scopes.is_empty() { "-".into() } else { access.link.scopes.join(" ") },
                        ),
                    );
                }
                let need = NeedLink {
                    reason: format!("the upstream needs more scope: {}", wanted.join(" ")),
                    scopes: union(&access.link.scopes, &wanted),
                };
                prompt::ask_to_link(linker, caller, name, request, need).await
            }
        }
    }
}
