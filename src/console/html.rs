//! HTML that escapes by construction: text becomes markup only through [`text`] (escaped) or
//! elements built here (attribute values escaped); raw markup can only be a `'static` string
//! written in this crate. Names, tool descriptions and audit lines are hostile input: none of
//! them can reach a page unescaped.

use crate::oauth::pages::esc;

/// Trusted markup.
#[derive(Debug, Clone, Default)]
pub struct Html(String);

impl Html {
    /// Markup written in this crate.
    pub fn raw(s: &'static str) -> Html {
        Html(s.to_string())
    }

    /// The markup.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Appends more markup.
    pub fn push(&mut self, h: Html) {
        self.0.push_str(&h.0);
    }
}

/// Escaped text.
pub fn text(s: impl AsRef<str>) -> Html {
    Html(esc(s.as_ref()))
}

/// Escaped text that keeps its line breaks and tabs (a file in a `<textarea>`).
pub fn multiline(s: impl AsRef<str>) -> Html {
    let lines: Vec<String> = s
        .as_ref()
        .split('\n')
        .map(|l| l.split('\t').map(esc).collect::<Vec<_>>().join("\t"))
        .collect();
    Html(lines.join("\n"))
}

impl From<&str> for Html {
    fn from(s: &str) -> Html {
        text(s)
    }
}

impl From<String> for Html {
    fn from(s: String) -> Html {
        text(s)
    }
}

/// Concatenation.
pub fn all(parts: impl IntoIterator<Item = Html>) -> Html {
    let mut out = Html::default();
    for p in parts {
        out.push(p);
    }
    out
}

/// `<tag attrs>children</tag>`; attribute names are `'static`, values escaped.
pub fn el(tag: &'static str, attrs: &[(&'static str, &str)], children: impl Into<Html>) -> Html {
    let mut s = format!("<{tag}");
    for (k, v) in attrs {
        s.push_str(&format!(" {k}=\"{}\"", esc(v)));
    }
    s.push('>');
    s.push_str(&children.into().0);
    s.push_str(&format!("</{tag}>"));
    Html(s)
}

/// A void element (`<input ...>`).
pub fn void(tag: &'static str, attrs: &[(&'static str, &str)]) -> Html {
    let mut s = format!("<{tag}");
    for (k, v) in attrs {
        s.push_str(&format!(" {k}=\"{}\"", esc(v)));
    }
    s.push('>');
    Html(s)
}

/// A table with a header row.
pub fn table(id: &str, head: &[&str], rows: Vec<Vec<Html>>) -> Html {
    let head = el("tr", &[], all(head.iter().map(|h| el("th", &[], text(h)))));
    let body = all(rows
        .into_iter()
        .map(|r| el("tr", &[], all(r.into_iter().map(|c| el("td", &[], c))))));
    el(
        "table",
        &[("id", id)],
        all([el("thead", &[], head), el("tbody", &[], body)]),
    )
}

/// A POST form with its CSRF token.
pub fn form(action: &str, csrf: &str, fields: Html, button: &str, confirm: Option<&str>) -> Html {
    let mut attrs: Vec<(&'static str, &str)> = vec![("method", "post"), ("action", action)];
    if let Some(c) = confirm {
        attrs.push(("data-confirm", c));
    }
    el(
        "form",
        &attrs,
        all([
            void(
                "input",
                &[("type", "hidden"), ("name", "csrf"), ("value", csrf)],
            ),
            fields,
            el("button", &[("type", "submit")], text(button)),
        ]),
    )
}

/// A labelled input.
pub fn input(label: &str, name: &str, value: &str) -> Html {
    el(
        "label",
        &[],
        all([
            text(label),
            text(" "),
            void("input", &[("name", name), ("value", value)]),
        ]),
    )
}

/// The navigation entries: (path under /console/, title).
pub const NAV: [(&str, &str); 7] = [
    ("", "Overview"),
    ("certs", "Certificates"),
    ("sessions", "Sessions"),
    ("audit", "Audit"),
    ("access", "Access"),
    ("upstreams", "Upstreams"),
    ("oauth", "OAuth"),
];

/// A whole page: head with the stylesheet and script (served from the binary), navigation,
/// who is signed in (by certificate) and the body.
pub fn page(title: &str, who: &str, access: &str, body: Html) -> String {
    let nav = all(NAV.iter().map(|(p, t)| {
        let href = format!("/console/{p}");
        el("a", &[("href", &href)], text(t))
    }));
    let doc = all([
        Html::raw("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"),
        Html::raw("<meta name=\"viewport\" content=\"width=device-width\">"),
        el("title", &[], text(format!("{title} · mcp-zt console"))),
        Html::raw("<link rel=\"stylesheet\" href=\"/console/static/console.css\">"),
        Html::raw("<script src=\"/console/static/console.js\" defer></script></head><body>"),
        el(
            "header",
            &[],
            all([
                el("nav", &[], nav),
                el(
                    "span",
                    &[("class", "who")],
                    text(format!("{who} · console {access}")),
                ),
            ]),
        ),
        el("main", &[], all([el("h1", &[], text(title)), body])),
        Html::raw("</body></html>\n"),
    ]);
    doc.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_stays_text() {
        let evil = "<img src=x onerror=alert(1)>\"'&";
        let h = all([
            el("td", &[("title", evil)], text(evil)),
            input("n", "name", evil),
        ])
        .into_string();
        assert!(!h.contains("<img"), "{h}");
        assert!(
            h.contains("&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;"),
            "{h}"
        );
        let p = page(evil, evil, "read", text(evil));
        assert!(!p.contains("<img"));
        let m = multiline("a = 1\n<b>\tc\u{1b}").into_string();
        assert_eq!(m, "a = 1\n&lt;b&gt;\tc\u{FFFD}");
    }
}
