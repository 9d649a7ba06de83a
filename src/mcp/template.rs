//! Resource templates (RFC 6570): the one place mcp-zt expands them and matches URIs against
//! them.
//!
//! The policy's resource rules are globs over concrete URIs, never over templates. Whenever a
//! template must be judged by the policy (which completion values a role may be shown), it is
//! first expanded by a real RFC 6570 level 4 processor ([`iri_string::template`]), every
//! operator (`+ # . / ; ? &`) and modifier (`*`, `:N`) included, with a value for every
//! variable; the URI that comes out must then be canonical ([`canonical_uri`], as
//! for a read through a template) and allowed. Replacing `{name}` by hand would miss
//! `{+name}`, `{/name}`, `{?name}` and friends, and leave other variables unexpanded, so a
//! glob like `docs://secret/*` would never see the URI the client is going to read.
//!
//! Pure: no I/O, no policy of its own (the caller passes the check), no panics on any input.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use iri_string::spec::UriSpec;
use iri_string::template::context::{Context, Visitor};
use iri_string::template::UriTemplateStr;

use crate::policy::rules::glob_match;

/// Longest expansion produced, in bytes: a URI longer than this is no resource name, and the
/// bound keeps a hostile template (`{x}{x}{x}...`, `{x:9999}`) from costing more than this.
pub const MAX_EXPANSION: usize = 8 * 1024;

/// Why a template could not be expanded into one URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Not an RFC 6570 template (unclosed or empty expression, reserved operator, bad name).
    #[error("not an RFC 6570 URI template: {0}")]
    Invalid(String),
    /// A variable of the template has no value: the URI it stands for is unknown.
    #[error("the template variable {0:?} has no value")]
    Unbound(String),
    /// The argument being completed is not a variable of the template.
    #[error("the template has no variable {0:?}")]
    NotAVariable(String),
    /// A value has characters outside ASCII. RFC 6570 would percent-encode them, so the URI
    /// could never be canonical; and iri-string's prefix truncation (0.7.14) counts their bytes
    /// as characters and overflows, a panic where overflow checks are on (found by fuzzing).
    /// Refused before iri-string sees the value.
    #[error("the value of {0:?} is not ASCII")]
    NotAscii(String),
    /// The expansion is longer than [`MAX_EXPANSION`].
    #[error("the expansion is longer than {MAX_EXPANSION} bytes")]
    TooLong,
}

/// Expands `template` with `values`, each variable a single ASCII string, into a URI
/// (characters the operator does not allow are percent-encoded, as RFC 6570 says).
///
/// Every variable must have a value: RFC 6570 would drop an undefined one silently, and a URI
/// expanded without it is not the one the client will read ([`TemplateError::Unbound`]). A
/// value outside ASCII is refused ([`TemplateError::NotAscii`]).
pub fn expand(template: &str, values: &HashMap<String, String>) -> Result<String, TemplateError> {
    expand_with(template, |name| values.get(name).map(String::as_str))?.complete()
}

/// The URI that completing argument `arg` of `template` with `value` stands for: `arg` takes
/// `value` (even if `others` has one for it), every other variable its value from `others`
/// (the completion request's `context.arguments`).
pub fn completion_uri(
    template: &str,
    arg: &str,
    value: &str,
    others: &HashMap<String, String>,
) -> Result<String, TemplateError> {
    let lookup = |name: &str| {
        if name == arg {
            Some(value)
        } else {
            others.get(name).map(String::as_str)
        }
    };
    let expansion = expand_with(template, lookup)?;
    if !expansion.used.iter().any(|n| n == arg) {
        return Err(TemplateError::NotAVariable(arg.to_string()));
    }
    expansion.complete()
}

/// Whether a completion value may be shown: the URI it completes ([`completion_uri`]) exists,
/// is canonical, and `permits` it (the caller's role may read it). Anything that cannot be
/// expanded is hidden: completion must never list what the policy hides.
pub fn completion_permitted(
    template: &str,
    arg: &str,
    value: &str,
    others: &HashMap<String, String>,
    permits: impl Fn(&str) -> bool,
) -> bool {
    let judged = |t: &str| {
        completion_uri(t, arg, value, others).is_ok_and(|uri| canonical_uri(&uri) && permits(&uri))
    };
    // A prefix modifier (`{+path:3}`) cuts the value in the URI but not in the list the client
    // sees: the whole value, uncut, must be one the role may read too.
    let uncut = without_prefixes(template);
    judged(template) && (uncut == template || judged(&uncut))
}

/// `template` with every prefix modifier (`:N`) removed. In an RFC 6570 expression a `:` can
/// only start a prefix modifier (variable names have none), so dropping from a `:` to the next
/// `,` or `}` inside `{...}` is exact for a template iri-string accepts.
pub fn without_prefixes(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let (mut in_expr, mut skipping) = (false, false);
    for c in template.chars() {
        match c {
            '{' | '}' => {
                in_expr = c == '{';
                skipping = false;
                out.push(c);
            }
            ':' if in_expr => skipping = true,
            ',' if in_expr => {
                skipping = false;
                out.push(c);
            }
            _ if skipping => {}
            _ => out.push(c),
        }
    }
    out
}

/// Whether `uri` is an instance of the template `template` (each `{...}` matches any run of
/// characters): enough to find which upstream serves a URI read through a template. The read
/// itself is gated on the concrete URI (canonical, and allowed by the policy), so this never
/// decides access, only routing.
pub(super) fn template_matches(template: &str, uri: &str) -> bool {
    let mut pattern = String::with_capacity(template.len());
    let mut in_var = false;
    for c in template.chars() {
        match (c, in_var) {
            ('{', false) => {
                in_var = true;
                pattern.push('*');
            }
            ('}', true) => in_var = false,
            (_, true) => {}
            ('*', false) => pattern.push('*'),
            (c, false) => pattern.push(c),
        }
    }
    glob_match(&pattern, uri)
}

/// Whether `uri` has a plain lower-case authority (no `.`/`..`, userinfo or port; empty only
/// for `file`), no dot segments, no empty segments after the authority, no percent-escapes, no
/// backslashes and no control characters.
pub(super) fn canonical_uri(uri: &str) -> bool {
    if uri.contains(['%', '\\']) || uri.chars().any(char::is_control) {
        return false;
    }
    let (scheme, rest) = match uri.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, uri),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if let Some(scheme) = scheme {
        // The authority is matched by the globs as text, but read by an upstream as a host:
        // `docs://SECRET/x`, `docs://a@secret/x`, `docs://secret:1/x` or `docs://../secret/x`
        // would pass `docs://secret/*` unseen and still reach it. Only a plain lower-case
        // name; an empty one only for `file`.
        if authority == "."
            || authority == ".."
            || authority.contains(['@', ':'])
            || scheme
                .chars()
                .chain(authority.chars())
                .any(|c| c.is_ascii_uppercase())
            || (authority.is_empty() && scheme != "file")
        {
            return false;
        }
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut segments = path.split('/').skip(1).peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if seg == "." || seg == ".." || (seg.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// The expansion context: each variable's value from `lookup`; remembers the variables the
/// template asked for that have a value, and the first variable refused (no value, or one
/// outside ASCII, which is then never given to iri-string).
struct Lookup<F> {
    lookup: F,
    seen: RefCell<Vec<String>>,
    refused: RefCell<Option<TemplateError>>,
}

impl<'v, F: Fn(&str) -> Option<&'v str>> Context for Lookup<F> {
    fn visit<V: Visitor>(&self, visitor: V) -> V::Result {
        let name = visitor.var_name().as_str();
        match (self.lookup)(name) {
            Some(value) => {
                let mut seen = self.seen.borrow_mut();
                if !seen.iter().any(|n| n == name) {
                    seen.push(name.to_string());
                }
                if value.is_ascii() {
                    return visitor.visit_string(value);
                }
                self.refused
                    .borrow_mut()
                    .get_or_insert_with(|| TemplateError::NotAscii(name.to_string()));
                visitor.visit_undefined()
            }
            None => {
                self.refused
                    .borrow_mut()
                    .get_or_insert_with(|| TemplateError::Unbound(name.to_string()));
                visitor.visit_undefined()
            }
        }
    }
}

/// Output that refuses to grow past [`MAX_EXPANSION`].
struct Bounded {
    out: String,
    over: bool,
}

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.out.len().saturating_add(s.len()) > MAX_EXPANSION {
            self.over = true;
            return Err(fmt::Error);
        }
        self.out.push_str(s);
        Ok(())
    }
}

/// Whether every `%` in `template` is followed by two hexadecimal digits, as RFC 6570 requires
/// of literals and variable names alike. Checked before iri-string sees the template: its
/// parser (0.7.14) slices the two bytes after a `%` as a string and panics when they end
/// inside a multi-byte character (`%a\u{e9}`); found by the `uri_template` fuzz target.
fn percent_escapes_are_whole(template: &str) -> bool {
    let bytes = template.as_bytes();
    bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// Whether every prefix modifier (`{var:N}`) is RFC 6570's `max-length`: 1 to 4 digits, no
/// leading zero. Checked before iri-string sees the template: its parser (0.7.14) accepts up
/// to 5 digits, then panics when the number does not fit in a `u16` (`{a:99299}`); found by
/// the `uri_template` fuzz target. An unclosed expression is left to iri-string to refuse.
fn prefixes_are_in_range(template: &str) -> bool {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return true;
        };
        let fits = after[..close].split(',').all(|spec| {
            spec.split_once(':').is_none_or(|(_, len)| {
                (1..=4).contains(&len.len())
                    && len.bytes().all(|b| b.is_ascii_digit())
                    && !len.starts_with('0')
            })
        });
        if !fits {
            return false;
        }
        rest = &after[close + 1..];
    }
    true
}

/// One expansion: the URI, the variables that had a value, the first variable refused.
struct Expansion {
    uri: String,
    used: Vec<String>,
    refused: Option<TemplateError>,
}

impl Expansion {
    /// The URI, if every variable had a usable value.
    fn complete(self) -> Result<String, TemplateError> {
        match self.refused {
            Some(e) => Err(e),
            None => Ok(self.uri),
        }
    }
}

/// Expands `template`, every variable from `lookup`.
fn expand_with<'v>(
    template: &str,
    lookup: impl Fn(&str) -> Option<&'v str>,
) -> Result<Expansion, TemplateError> {
    if !percent_escapes_are_whole(template) {
        return Err(TemplateError::Invalid(
            "a % not followed by two hexadecimal digits".into(),
        ));
    }
    if !prefixes_are_in_range(template) {
        return Err(TemplateError::Invalid(
            "a prefix modifier (:N) must be 1 to 9999".into(),
        ));
    }
    let parsed =
        UriTemplateStr::new(template).map_err(|e| TemplateError::Invalid(e.to_string()))?;
    let context = Lookup {
        lookup,
        seen: RefCell::new(Vec::new()),
        refused: RefCell::new(None),
    };
    let expanded = parsed
        .expand::<UriSpec, _>(&context)
        .map_err(|e| TemplateError::Invalid(e.to_string()))?;
    let mut out = Bounded {
        out: String::new(),
        over: false,
    };
    let written = fmt::write(&mut out, format_args!("{expanded}"));
    if out.over {
        return Err(TemplateError::TooLong);
    }
    if written.is_err() {
        return Err(TemplateError::Invalid("the expansion failed".into()));
    }
    Ok(Expansion {
        uri: out.out,
        used: context.seen.into_inner(),
        refused: context.refused.into_inner(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::rules::Kind;
    use crate::policy::Policy;

    /// Allowed all of `docs://`, denied `secret` wherever each operator can put a value.
    const POLICY: &str = r#"
[roles.reader]
allow = ["resource:docs://*"]
deny = [
    "resource:docs://secret/*",
    "resource:docs://page#secret*",
    "resource:docs://host.secret*",
    "resource:docs://files/secret/*",
    "resource:docs://m;area=secret*",
    "resource:docs://q?area=secret*",
    "resource:docs://q?x=1&area=secret*",
]
"#;

    /// (template, argument completed, other arguments, value, kept)
    type Row<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str, bool);

    /// Every row whose outcome differs from the table's, described.
    fn check(rows: &[Row]) -> Vec<String> {
        let policy = Policy::parse(POLICY).expect("policy");
        let permits = |uri: &str| policy.permits("reader", Kind::Resource, uri);
        rows.iter()
            .filter_map(|(template, arg, others, value, keep)| {
                let others: HashMap<String, String> = others
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let got = completion_permitted(template, arg, value, &others, permits);
                (got != *keep).then(|| {
                    format!("{template} {arg}={value:?} {others:?}: kept {got}, want {keep}")
                })
            })
            .collect()
    }

    #[test]
    fn every_operator_is_expanded_before_the_policy_decides() {
        let rows: &[Row] = &[
            // Simple: `/` in a value is escaped, and an escape is never canonical.
            ("docs://{area}/readme", "area", &[], "secret", false),
            ("docs://{area}/readme", "area", &[], "public", true),
            ("docs://{path}", "path", &[], "secret/x", false),
            // Reserved (`+`): `/` stays, so the value can land under secret/.
            ("docs://{+path}", "path", &[], "secret/x", false),
            ("docs://{+path}", "path", &[], "public/x", true),
            // Fragment (`#`).
            ("docs://page{#section}", "section", &[], "secret", false),
            ("docs://page{#section}", "section", &[], "intro", true),
            // Label (`.`).
            ("docs://host{.area}", "area", &[], "secret", false),
            ("docs://host{.area}", "area", &[], "public", true),
            // Path segment (`/`).
            ("docs://files{/area}/readme", "area", &[], "secret", false),
            ("docs://files{/area}/readme", "area", &[], "public", true),
            // Path parameter (`;`).
            ("docs://m{;area}", "area", &[], "secret", false),
            ("docs://m{;area}", "area", &[], "public", true),
            // Query (`?`) and its continuation (`&`).
            ("docs://q{?area}", "area", &[], "secret", false),
            ("docs://q{?area}", "area", &[], "public", true),
            ("docs://q?x=1{&area}", "area", &[], "secret", false),
            ("docs://q?x=1{&area}", "area", &[], "public", true),
        ];
        let wrong = check(rows);
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn explode_and_prefix_modifiers_cannot_hide_a_denied_uri() {
        let rows: &[Row] = &[
            // Explode (`*`) on a single value is the value itself.
            ("docs://{area*}/readme", "area", &[], "secret", false),
            ("docs://{+path*}", "path", &[], "secret/x", false),
            ("docs://files{/area*}/readme", "area", &[], "secret", false),
            ("docs://q{?area*}", "area", &[], "secret", false),
            ("docs://{+path*}", "path", &[], "public/x", true),
            // A prefix that keeps the denied part.
            ("docs://{+path:7}", "path", &[], "secret/x", false),
            ("docs://{area:6}/readme", "area", &[], "secretive", false),
            // A prefix that cuts the denied part off: the URI is docs://sec, which may be read,
            // but the client would be shown `secret/x`: the uncut value decides too.
            ("docs://{+path:3}", "path", &[], "secret/x", false),
            ("docs://{+path:3}", "path", &[], "public/x", true),
            ("docs://{+path:8}", "path", &[], "public/../secret/x", false),
            // The same variable twice, once cut: the whole URI decides.
            ("docs://{area:1}/{area}/x", "area", &[], "public", true),
            ("docs://{+path:1}/{+path}", "path", &[], "secret/x", false),
            ("docs://{+path:1}/{+path}", "path", &[], "public/x", true),
            ("docs://{+path}/{+path:1}", "path", &[], "secret/x", false),
        ];
        let wrong = check(rows);
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn values_that_would_land_in_the_authority_are_dropped() {
        let rows: &[Row] = &[
            ("docs://{+path}", "path", &[], "./secret/x", false),
            ("docs://{+path}", "path", &[], "../secret/x", false),
            ("docs://{+path}", "path", &[], "/secret/x", false),
            ("docs://{+path}", "path", &[], "a@secret/x", false),
            ("docs://{+path}", "path", &[], "secret:1/x", false),
            ("docs://{+path}", "path", &[], "SECRET/x", false),
            ("docs://{+path}", "path", &[], "public/x", true),
        ];
        let wrong = check(rows);
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn other_variables_come_from_the_context_or_nothing_is_kept() {
        let rows: &[Row] = &[
            (
                "docs://{area}/{file}",
                "file",
                &[("area", "secret")],
                "x",
                false,
            ),
            (
                "docs://{area}/{file}",
                "file",
                &[("area", "public")],
                "x",
                true,
            ),
            (
                "docs://{area}/{file}",
                "area",
                &[("file", "x")],
                "secret",
                false,
            ),
            (
                "docs://{area}/{file}",
                "area",
                &[("file", "x")],
                "public",
                true,
            ),
            // Several variables in one expression.
            (
                "docs://files{/area,file}",
                "file",
                &[("area", "secret")],
                "x",
                false,
            ),
            (
                "docs://files{/area,file}",
                "file",
                &[("area", "public")],
                "x",
                true,
            ),
            (
                "docs://{+area,file}",
                "file",
                &[("area", "secret/")],
                "x",
                false,
            ),
            (
                "docs://q{?area,file}",
                "file",
                &[("area", "secret")],
                "x",
                false,
            ),
            (
                "docs://q{?file,area}",
                "file",
                &[("area", "secret")],
                "x",
                true,
            ),
            // A variable with no value: the URI cannot be known, nothing is listed.
            ("docs://{area}/{file}", "file", &[], "x", false),
            ("docs://{area}/{file}", "area", &[], "public", false),
            // The completed value wins over a stale one in the context.
            (
                "docs://{area}/x",
                "area",
                &[("area", "public")],
                "secret",
                false,
            ),
        ];
        let wrong = check(rows);
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn malformed_templates_and_non_canonical_expansions_keep_nothing() {
        let rows: &[Row] = &[
            // Not a template: an unclosed or empty expression, a bad operator.
            ("docs://{+path", "path", &[], "public", false),
            ("docs://{}/{path}", "path", &[], "public", false),
            ("docs://{!path}", "path", &[], "public", false),
            // The argument is not one of the template's variables.
            (
                "docs://public/{file}",
                "area",
                &[("file", "x")],
                "secret",
                false,
            ),
            // Dot segments, empty segments, escapes: not canonical.
            ("docs://{+path}", "path", &[], "public/../secret/x", false),
            ("docs://{+path}", "path", &[], "public//x", false),
            ("docs://{+path}", "path", &[], "public/%2e%2e/secret", false),
            ("docs://{+path}", "path", &[], "public/a b", false),
            ("docs://{+path}", "path", &[], "public/caf\u{e9}", false),
        ];
        let wrong = check(rows);
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// The examples of RFC 6570 section 3.2 (level 4), one per operator and modifier.
    #[test]
    fn expands_like_rfc_6570() {
        let vars: HashMap<String, String> = [
            ("var", "value"),
            ("hello", "Hello World!"),
            ("path", "/foo/bar"),
            ("x", "1024"),
            ("y", "768"),
            ("empty", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (template, want) in [
            ("{var}", "value"),
            ("{hello}", "Hello%20World%21"),
            ("{var:3}", "val"),
            ("{x,y}", "1024,768"),
            ("{+path}/here", "/foo/bar/here"),
            ("{+hello}", "Hello%20World!"),
            ("{+path:6}/here", "/foo/b/here"),
            ("{#var}", "#value"),
            ("{#hello}", "#Hello%20World!"),
            ("X{.var}", "X.value"),
            ("X{.x,y}", "X.1024.768"),
            ("{/var}", "/value"),
            ("{/var,x}/here", "/value/1024/here"),
            ("{/var:1,var}", "/v/value"),
            ("{;x,y}", ";x=1024;y=768"),
            ("{;x,y,empty}", ";x=1024;y=768;empty"),
            ("{?x,y}", "?x=1024&y=768"),
            ("{?x,y,empty}", "?x=1024&y=768&empty="),
            ("?fixed=yes{&x}", "?fixed=yes&x=1024"),
            ("{var*}", "value"),
            ("{?var*}", "?var=value"),
        ] {
            assert_eq!(expand(template, &vars).as_deref(), Ok(want), "{template}");
        }
    }

    #[test]
    fn expansion_errors_are_typed() {
        let none = HashMap::new();
        assert_eq!(
            expand("docs://{a}/{b}", &none),
            Err(TemplateError::Unbound("a".into()))
        );
        assert!(matches!(
            expand("docs://{a", &none),
            Err(TemplateError::Invalid(_))
        ));
        assert_eq!(
            completion_uri("docs://{a}", "b", "x", &none),
            Err(TemplateError::NotAVariable("b".into()))
        );
        assert_eq!(
            completion_uri("docs://{a}", "a", "x", &none).as_deref(),
            Ok("docs://x")
        );
        // A `%` without two hex digits, even one followed by a multi-byte character (a panic
        // in iri-string's parser, found by fuzzing), is an error; a whole escape is a literal.
        for bad in [
            "docs://%",
            "docs://%a",
            "%\n\u{167}",
            "docs://%a\u{e9}",
            "{a%zz}",
        ] {
            assert!(
                matches!(expand(bad, &none), Err(TemplateError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert_eq!(expand("docs://a%2Fb", &none).as_deref(), Ok("docs://a%2Fb"));
        // A value outside ASCII never reaches iri-string (whose prefix truncation counts its
        // bytes as characters and overflows, found by fuzzing), with or without a prefix.
        for template in [
            "docs://{a:3}",
            "docs://{+a:3}",
            "docs://{#a:3}",
            "docs://{a}",
        ] {
            assert_eq!(
                completion_uri(template, "a", "\u{e9}\u{e9}\u{e9}\u{e9}", &none),
                Err(TemplateError::NotAscii("a".into())),
                "{template}"
            );
        }
        // A prefix beyond RFC 6570's 9999 (a panic in iri-string's parser past 65535, found by
        // fuzzing), zero or with a leading zero, is an error.
        for bad in ["{a:99299}", "{a:65536}", "{a:10000}", "{a:0}", "{b,a:012}"] {
            assert!(
                matches!(
                    completion_uri(bad, "a", "x", &none),
                    Err(TemplateError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        // A hostile template or value cannot grow the answer past the bound.
        let long = "x".repeat(MAX_EXPANSION);
        assert_eq!(
            completion_uri("docs://{a}{a}", "a", &long, &none),
            Err(TemplateError::TooLong)
        );
        let many = "{a}".repeat(MAX_EXPANSION);
        assert_eq!(
            completion_uri(&many, "a", "xy", &none),
            Err(TemplateError::TooLong)
        );
        assert_eq!(
            completion_uri("{a:9999}", "a", &long[..100], &none).map(|u| u.len()),
            Ok(100)
        );
    }

    #[test]
    fn templates_match_their_instances_only() {
        assert!(template_matches(
            "test://template/{id}/data",
            "test://template/42/data"
        ));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://other/42/data"
        ));
        assert!(template_matches("file:///{path}", "file:///etc/hosts"));
        assert!(!template_matches("a://{x}", "b://y"));
    }
}
