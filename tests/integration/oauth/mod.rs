//! OAuth (`serve --oauth`) against hostile clients: PKCE, redirect URIs, codes used twice,
//! refresh reuse, tokens that are tampered, expired, for another resource, of a revoked
//! certificate or bound to a certificate (`flow.rs`); client metadata documents that point
//! inward or never end (`documents.rs`); operator commands and a certificate from outside
//! (`operators.rs`). This file: a server with OAuth on and the clients that drive it.

mod documents;
mod flow;
mod operators;

use std::collections::HashMap;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::common::Env;
use crate::server_env::{Server, INIT};

pub(super) const VERIFIER: &str = "a-perfectly-ordinary-pkce-verifier-of-fifty-characters";

pub(super) fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ))
}

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A server with OAuth on: MCP name `localhost`, login name `127.0.0.1`, same port.
pub(super) struct Oa {
    pub(super) env: Env,
    _server: Server,
    pub(super) mcp: String,
    pub(super) login: String,
    pub(super) base: String,
}

impl Oa {
    pub(super) fn start(env: Env, oauth_toml: &str, extra: &[&str]) -> Oa {
        std::fs::write(env.home.join("oauth.toml"), oauth_toml).expect("oauth.toml");
        let port = free_port();
        let mcp = format!("https://localhost:{port}/mcp");
        let login = format!("https://127.0.0.1:{port}");
        let mut args = vec![
            "--oauth",
            "--public-url",
            &mcp,
            "--login-url",
            &login,
            "--lockout-threshold",
            "0",
        ];
        args.extend_from_slice(extra);
        let server = Server::start_on(&env, port, &args);
        Oa {
            base: format!("https://localhost:{port}"),
            env,
            _server: server,
            mcp,
            login,
        }
    }

    /// A client without a certificate that follows no redirects.
    pub(super) fn anon(&self) -> reqwest::Client {
        let ca = std::fs::read(self.env.home.join("ca.crt")).expect("ca");
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca")])
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }

    /// `name`'s browser: presents the certificate, follows no redirects.
    pub(super) fn browser(&self, name: &str) -> reqwest::Client {
        let dir = self.env.home.join("clients");
        let mut pem = std::fs::read(dir.join(format!("{name}.crt"))).expect("cert");
        pem.extend(std::fs::read(dir.join(format!("{name}.key"))).expect("key"));
        let ca = std::fs::read(self.env.home.join("ca.crt")).expect("ca");
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca")])
            .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }

    pub(super) async fn register(&self, body: serde_json::Value) -> reqwest::Response {
        self.anon()
            .post(format!("{}/register", self.base))
            .json(&body)
            .send()
            .await
            .expect("register")
    }

    pub(super) async fn client_id(&self) -> String {
        let r = self
            .register(serde_json::json!({
                "client_name": "test",
                "redirect_uris": ["http://127.0.0.1/cb"],
            }))
            .await;
        assert_eq!(r.status(), 201);
        let v: serde_json::Value = r.json().await.expect("json");
        v["client_id"].as_str().expect("client_id").to_string()
    }

    pub(super) fn authorize_url(&self, client_id: &str, extra: &[(&str, &str)]) -> String {
        let mut u = url::Url::parse(&format!("{}/authorize", self.login)).expect("url");
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", client_id)
                .append_pair("redirect_uri", "http://127.0.0.1:5555/cb")
                .append_pair("state", "st")
                .append_pair("resource", &self.mcp);
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        u.to_string()
    }

    /// The consent page's form fields, as `name`'s browser sees them.
    pub(super) async fn consent(&self, name: &str, client_id: &str) -> HashMap<String, String> {
        let url = self.authorize_url(
            client_id,
            &[
                ("code_challenge", &challenge(VERIFIER)),
                ("code_challenge_method", "S256"),
            ],
        );
        let r = self.browser(name).get(url).send().await.expect("authorize");
        assert_eq!(r.status(), 200);
        hidden_fields(&r.text().await.expect("html"))
    }

    pub(super) async fn decide(
        &self,
        name: &str,
        fields: &HashMap<String, String>,
        origin: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .browser(name)
            .post(format!("{}/authorize/decide", self.login))
            .form(fields);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send().await.expect("decide")
    }

    /// Approves as `name` and returns the code.
    pub(super) async fn code(&self, name: &str, client_id: &str) -> String {
        let mut fields = self.consent(name, client_id).await;
        fields.insert("decision".into(), "approve".into());
        let r = self.decide(name, &fields, Some(&self.login)).await;
        assert_eq!(r.status(), 303);
        let to = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_string();
        query_of(&to)["code"].clone()
    }

    pub(super) async fn token(
        &self,
        client: &reqwest::Client,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        client
            .post(format!("{}/token", self.base))
            .form(form)
            .send()
            .await
            .expect("token")
    }

    pub(super) async fn exchange(&self, client_id: &str, code: &str) -> reqwest::Response {
        self.token(
            &self.anon(),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", "http://127.0.0.1:5555/cb"),
                ("client_id", client_id),
                ("code_verifier", VERIFIER),
            ],
        )
        .await
    }

    /// Tokens for `name` through a registered client: (client_id, token answer).
    pub(super) async fn tokens(&self, name: &str) -> (String, serde_json::Value) {
        let id = self.client_id().await;
        let code = self.code(name, &id).await;
        let r = self.exchange(&id, &code).await;
        assert_eq!(r.status(), 200);
        (id, r.json().await.expect("json"))
    }

    /// initialize with `token`: the status and the WWW-Authenticate header.
    pub(super) async fn init(&self, token: &str) -> (u16, String) {
        let r = self
            .anon()
            .post(&self.mcp)
            .header("authorization", format!("Bearer {token}"))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(INIT)
            .send()
            .await
            .expect("mcp");
        let www = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default();
        (r.status().as_u16(), www)
    }
}

pub(super) fn query_of(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .expect("url")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `<input type="hidden" name="N" value="V">` fields of a page.
pub(super) fn hidden_fields(html: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for part in html.split("<input type=\"hidden\" name=\"").skip(1) {
        let (name, rest) = part.split_once('"').expect("name");
        let value = rest
            .split_once("value=\"")
            .and_then(|(_, v)| v.split_once('"'))
            .map(|(v, _)| v)
            .expect("value");
        out.insert(unescape(name), unescape(value));
    }
    out
}

pub(super) fn env_with(names: &[(&str, &str)]) -> Env {
    let env = Env::with_ca();
    for (name, role) in names {
        env.issue(name, role);
    }
    env
}

/// A throwaway CA (`PREFIX-ca.crt`) and a leaf it signed for `sans` (`PREFIX.crt`,
/// `PREFIX.key`), made by openssl in the test's folder.
pub(super) fn ca_and_leaf(env: &Env, prefix: &str, sans: &str) -> [std::path::PathBuf; 3] {
    use crate::common::openssl;
    let p = |n: &str| env.path(&format!("{prefix}{n}")).display().to_string();
    let subject = format!("/CN={prefix} test CA");
    for args in [
        vec![
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &subject,
            "-keyout",
            &p("-ca.key"),
            "-out",
            &p("-ca.crt"),
        ],
        vec![
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &p(".key"),
            "-out",
            &p(".csr"),
        ],
    ] {
        let (ok, out) = openssl(&args);
        assert!(ok, "{out}");
    }
    std::fs::write(
        p(".ext"),
        format!("subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"),
    )
    .expect("ext");
    let (ok, out) = openssl(&[
        "x509",
        "-req",
        "-in",
        &p(".csr"),
        "-CA",
        &p("-ca.crt"),
        "-CAkey",
        &p("-ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p(".ext"),
        "-out",
        &p(".crt"),
    ]);
    assert!(ok, "{out}");
    [p("-ca.crt").into(), p(".crt").into(), p(".key").into()]
}

/// A client metadata document server on loopback (`scripts/cimd_server.py`), with a
/// certificate from a throwaway CA: (its CA file, its port, the process).
pub(super) fn document_server(env: &Env) -> (std::path::PathBuf, u16, crate::common::Killed) {
    let [ca, cert, key] = ca_and_leaf(env, "doc", "DNS:localhost,IP:127.0.0.1");
    let p = |n: &str| env.path(n).display().to_string();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cimd_server.py");
    let child = std::process::Command::new("python3")
        .arg(script)
        .arg(&cert)
        .arg(&key)
        .arg(p("doc.port"))
        .spawn()
        .expect("python3");
    let killed = crate::common::Killed(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let port = loop {
        if let Ok(s) = std::fs::read_to_string(env.path("doc.port")) {
            if let Ok(port) = s.trim().parse() {
                break port;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "document server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    (ca, port, killed)
}

/// A client trusting only the CA in `ca` (no client certificate).
pub(super) fn trusting(ca: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("ca");
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("ca")])
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}
