//! The login name's pages: consent, no certificate, errors. Plain HTML, no script; every value
//! that came from a client or a certificate is escaped.

use super::flow::Authorization;

/// HTML-escapes text for element content and quoted attribute values. Control and bidi
/// characters become U+FFFD, so a name cannot reorder the text after it (a "not verified"
/// warning, say).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            c if crate::audit::is_unsafe_char(c) => out.push('\u{FFFD}'),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width\"><title>{} · mcp-zt</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;\
color:#1b1b1b}}h1{{font-size:1.4rem}}dt{{font-weight:600;margin-top:.6rem}}dd{{margin:0}}\
.warn{{color:#8a4b00}}button{{font-size:1rem;padding:.5rem 1.2rem;margin-right:.6rem}}\
code{{background:#f2f2f2;padding:.1rem .3rem}}</style></head><body>\n{}\n</body></html>\n",
        esc(title),
        body
    )
}

/// What the consent page shows about the client.
pub struct ClientView<'a> {
    /// Its `client_name`, if any.
    pub name: Option<&'a str>,
    /// Where it is vouched for: the host of its metadata document (CIMD) or the operator;
    /// `None` for a self-registered one.
    pub verified_host: Option<String>,
}

/// What the consent page shows about the holder.
pub struct HolderView<'a> {
    /// Certificate CN.
    pub name: &'a str,
    /// Certificate role.
    pub role: &'a str,
    /// Roles the holder may narrow to (the certificate's and those it inherits).
    pub roles: &'a [String],
}

/// The consent page: who asks, where the answer goes, as whom; Approve and Deny are POSTs
/// carrying the request and its CSRF token.
pub fn consent(
    a: &Authorization,
    client: &ClientView<'_>,
    holder: &HolderView<'_>,
    csrf: &str,
    expires: i64,
) -> String {
    let who = match (client.name, client.verified_host.as_deref()) {
        (Some(n), Some(h)) => format!("<b>{}</b> (from {})", esc(n), esc(h)),
        (None, Some(h)) => format!("<b>{}</b>", esc(h)),
        (Some(n), None) => format!(
            "<b>{}</b> <span class=\"warn\">(self-registered, not verified)</span>",
            esc(n)
        ),
        (None, None) => {
            "an unnamed client <span class=\"warn\">(self-registered, not verified)</span>".into()
        }
    };
    let preferred = a.role.as_deref().unwrap_or(holder.role);
    let mut options = String::new();
    for r in holder.roles {
        let sel = if r == preferred { " selected" } else { "" };
        options.push_str(&format!("<option value=\"{0}\"{sel}>{0}</option>", esc(r)));
    }
    let hidden = |k: &str, v: &str| {
        format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(k),
            esc(v)
        )
    };
    let mut fields = String::new();
    fields.push_str(&hidden("client_id", &a.client_id));
    fields.push_str(&hidden("redirect_uri", &a.redirect_uri));
    if let Some(s) = &a.state {
        fields.push_str(&hidden("state", s));
    }
    fields.push_str(&hidden("code_challenge", &a.challenge));
    fields.push_str(&hidden("resource", &a.resource));
    if let Some(r) = &a.role {
        fields.push_str(&hidden("scope_role", r));
    }
    fields.push_str(&hidden("expires", &expires.to_string()));
    fields.push_str(&hidden("csrf", csrf));
    let body = format!(
        "<h1>Allow access to mcp-zt?</h1>\n<p>{who} asks to use this MCP server as you.</p>\n\
<dl><dt>Answer goes to</dt><dd id=\"redirect-host\">{redirect}</dd>\
<dt>You are</dt><dd id=\"holder\">{name} (role {role}, from your client certificate)</dd></dl>\n\
<form method=\"post\" action=\"/authorize/decide\">{fields}\
<p><label>Role for this client: <select name=\"role\">{options}</select></label></p>\
<button type=\"submit\" name=\"decision\" value=\"approve\" id=\"approve\">Approve</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\">Deny</button></form>\n\
<p>Tokens given to this client end when your certificate is revoked or expires.</p>",
        redirect = esc(&super::redirect::shown_host(&a.redirect_uri)),
        name = esc(holder.name),
        role = esc(holder.role),
    );
    page("Allow access", &body)
}

/// The page for a browser that brought no client certificate: how to get one into the
/// browser, or the code to approve from the command line; it reloads itself (no script) and
/// goes on once the code is approved.
pub fn no_certificate(login: &str, code: &str, handle: &str) -> String {
    let body = format!(
        "<h1>A client certificate is needed</h1>\n\
<p>This login page knows you by your mcp-zt client certificate, and your browser did not \
present one for <code>{login}</code>.</p>\n\
<h2>Approve from the command line</h2><p>On a machine with your certificate, run</p>\n\
<p><code id=\"approve-command\">mcp-zt oauth approve {code} --url {login}</code></p>\n\
<p>with the flags you use for <code>mcp-zt connect</code> (<code>--name</code>, \
<code>--cert/--key</code> or <code>--p12</code>). Check what it shows before you confirm: \
approve only a request you started yourself. The code is <b id=\"code\">{code}</b>; it works \
once, for 5 minutes. This page goes on by itself once you approved.</p>\n\
<h2>Or import your certificate</h2><p>Ask your mcp-zt administrator for a PKCS#12 bundle \
(<code>mcp-zt issue --bundle</code> makes one), import it into your browser or operating \
system's certificate store, then start again from the application.</p>",
        login = esc(login),
        code = esc(code),
    );
    page_refreshing("Certificate needed", &body, handle)
}

/// The page that waits for a command-line approval.
pub fn waiting(handle: &str) -> String {
    page_refreshing(
        "Waiting for approval",
        "<h1>Waiting for your approval</h1>\n<p>Run the <code>mcp-zt oauth approve</code> \
command this page showed; it goes on by itself.</p>",
        handle,
    )
}

/// A page that polls `/authorize/wait` every 2 seconds with a meta refresh.
fn page_refreshing(title: &str, body: &str, handle: &str) -> String {
    let refresh = format!(
        "<meta http-equiv=\"refresh\" content=\"2;url=/authorize/wait?h={}\">",
        esc(handle)
    );
    page(title, body).replacen("<title>", &format!("{refresh}<title>"), 1)
}

/// An error page (a request that cannot be sent back to its client).
pub fn error(message: &str) -> String {
    let body = format!(
        "<h1>This request cannot be completed</h1>\n<p id=\"error\">{}</p>\n\
<p>Nothing was sent to the application that asked. Go back to it and try again.</p>",
        esc(message)
    );
    page("Request refused", &body)
}

/// An upstream link that cannot be finished (mcp-zt's callback for upstream accounts).
pub fn link_error(message: &str) -> String {
    let body = format!(
        "<h1>This link cannot be finished</h1>\n<p id=\"error\">{}</p>\n\
<p>Nothing was linked. Start again from your MCP client, or run <code>mcp-zt link</code> with your certificate.</p>",
        esc(message)
    );
    page("Link refused", &body)
}

/// The page after a denial or an approval whose redirect the browser should follow.
pub fn done(message: &str) -> String {
    page("Done", &format!("<h1>{}</h1>", esc(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_client_or_certificate_says_is_escaped() {
        let a = Authorization {
            client_id: "c\"><script>".into(),
            redirect_uri: "https://evil.example/cb".into(),
            state: Some("'\"<>&".into()),
            challenge: "x".repeat(43),
            resource: "https://m/mcp".into(),
            role: None,
        };
        let html = consent(
            &a,
            &ClientView {
                name: Some("<img src=x onerror=alert(1)>"),
                verified_host: None,
            },
            &HolderView {
                name: "<b>mallory</b>",
                role: "viewer",
                roles: &["viewer".to_string()],
            },
            "t",
            1,
        );
        assert!(!html.contains("<img"));
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>mallory"));
        assert!(html.contains("&lt;b&gt;mallory&lt;/b&gt;"));
        assert!(html.contains("self-registered, not verified"));
        assert!(html.contains("evil.example"));
        assert!(error("<x>").contains("&lt;x&gt;"));
        assert_eq!(esc("a\u{202E}b\u{7}"), "a\u{FFFD}b\u{FFFD}");
    }
}
