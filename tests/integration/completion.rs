//! completion/complete through the gateway for an upstream's resource templates: a value is
//! passed on only if the URI it completes, fully expanded (RFC 6570, every operator), is one
//! the caller's role may read. The upstream is an rmcp server in this process over plain HTTP
//! that offers every value it knows, denied or not.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{
    ArgumentInfo, CompleteRequestParams, CompleteResult, CompletionContext, CompletionInfo,
    Implementation, ListResourceTemplatesResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, Reference, ResourceContents, ResourceTemplate,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleClient, RoleServer, ServerHandler};

use crate::common::Env;
use crate::server_env::{mcp, Server};

const POLICY: &str = r#"
[roles.reader]
allow = ["resource:docs://*"]
deny = ["resource:docs://secret/*", "resource:docs://search?area=secret*"]
"#;

/// The templates the upstream lists.
const TEMPLATES: &[&str] = &[
    "docs://{+path}",
    "docs://{+path:8}",
    "docs://{area}/{file}",
    "docs://search{?area}",
];

/// An upstream that lists `TEMPLATES` and completes every argument with all it has.
#[derive(Clone)]
struct Docs;

impl ServerHandler for Docs {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_resources()
                .enable_completions()
                .build(),
        )
        .with_server_info(Implementation::new("docs", "1"))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let templates = TEMPLATES
            .iter()
            .map(|t| ResourceTemplate::new(*t, *t))
            .collect();
        Ok(ListResourceTemplatesResult::with_all_items(templates))
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let values: &[&str] = match request.argument.name.as_str() {
            "path" => &["public/a", "secret/x", "public/../secret/x"],
            "area" => &["public", "secret"],
            _ => &["readme", "x"],
        };
        let info = CompletionInfo::new(values.iter().map(|v| v.to_string()).collect())
            .map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(CompleteResult::new(info))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let contents = ResourceContents::text("a document", request.uri);
        Ok(ReadResourceResponse::Complete(ReadResourceResult::new(
            vec![contents],
        )))
    }
}

/// Serves `Docs` on a free loopback port; the address of its MCP endpoint.
async fn docs_upstream() -> String {
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(["localhost", "127.0.0.1"])
        .with_legacy_session_mode(true)
        .with_json_response(true);
    let service = StreamableHttpService::new(
        || Ok(Docs),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}/mcp")
}

/// (template, argument completed, `context.arguments`, the values the reader must get)
type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);

async fn complete(
    client: &RunningService<RoleClient, ()>,
    template: &str,
    arg: &str,
    context: &[(&str, &str)],
) -> Vec<String> {
    let mut params = CompleteRequestParams::new(
        Reference::for_resource(template),
        ArgumentInfo::new(arg, ""),
    );
    if !context.is_empty() {
        let args: HashMap<String, String> = context
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        params = params.with_context(CompletionContext::with_arguments(args));
    }
    let r = client.complete(params).await.expect("completion/complete");
    r.completion.values
}

#[tokio::test(flavor = "multi_thread")]
async fn completion_through_the_gateway_never_lists_what_the_policy_hides() {
    let url = docs_upstream().await;
    let front = Env::with_ca();
    std::fs::write(front.home.join("policy.toml"), POLICY).expect("policy");
    let path = front.home.join("upstreams.toml");
    std::fs::write(
        &path,
        format!("[upstreams.docs]\nurl = \"{url}\"\ntimeout = \"5s\"\n"),
    )
    .expect("upstreams.toml");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    front.issue("rita", "reader");
    let server = Server::start(&front, &[]);
    let rita = mcp(&front, &server, "rita").await.expect("reader session");

    // The gateway fetches the upstream's lists once it is up.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = rita
            .list_all_resource_templates()
            .await
            .expect("resources/templates/list");
        if listed.len() == TEMPLATES.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "templates never listed: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let cases: &[Case] = &[
        // `+` keeps `/`: secret/x lands under secret/; `..` is not canonical.
        ("docs://{+path}", "path", &[], &["public/a"]),
        // A prefix of 8: docs://secret/x is denied, docs://public/. is not canonical.
        ("docs://{+path:8}", "path", &[], &["public/a"]),
        // The other variable from the context.
        ("docs://{area}/{file}", "file", &[("area", "secret")], &[]),
        (
            "docs://{area}/{file}",
            "file",
            &[("area", "public")],
            &["readme", "x"],
        ),
        (
            "docs://{area}/{file}",
            "area",
            &[("file", "readme")],
            &["public"],
        ),
        // A variable with no value: nothing can be checked, nothing is listed.
        ("docs://{area}/{file}", "file", &[], &[]),
        // A query.
        ("docs://search{?area}", "area", &[], &["public"]),
    ];
    let mut wrong = Vec::new();
    for (template, arg, context, want) in cases {
        let got = complete(&rita, template, arg, context).await;
        if got != *want {
            wrong.push(format!(
                "{template} {arg} {context:?}: got {got:?}, want {want:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Reads through the same templates agree: what completion listed can be read, what it
    // left out cannot (denied, or not canonical), and both answer like a missing resource.
    for (uri, readable) in [
        ("docs://public/a", true),
        ("docs://search?area=public", true),
        ("docs://secret/x", false),
        ("docs://public/../secret/x", false),
        ("docs://search?area=secret", false),
    ] {
        let r = rita
            .read_resource(ReadResourceRequestParams::new(uri))
            .await;
        match (r, readable) {
            (Ok(_), true) => {}
            (Err(e), false) => assert!(e.to_string().contains("resource not found"), "{uri}: {e}"),
            (r, _) => panic!("{uri}: {r:?}, readable {readable}"),
        }
    }
}
