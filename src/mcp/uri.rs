//! Resource URIs: which provider serves a URI (a listed resource or a template), and which
//! URIs are canonical enough to be matched against the policy's globs. Templates themselves
//! are handled in [`super::template`].

use super::hub::View;
use super::template::template_matches;

/// Where a URI is served: a listed resource, else the first template it matches. `None`:
/// not found, or not visible to this role (answered alike).
pub(super) fn resource_owner(view: &View, policy_ok: bool, uri: &str) -> Option<usize> {
    if !policy_ok {
        return None;
    }
    if let Some(e) = view.resources.iter().find(|e| e.item.uri == uri) {
        return Some(e.provider);
    }
    // Through a template only a canonical URI: `.`/`..` segments, empty segments and
    // percent-escapes could make a URI pass the policy's globs yet name something else.
    if !canonical_uri(uri) {
        return None;
    }
    view.templates
        .iter()
        .find(|e| e.visible && template_matches(&e.item.uri_template, uri))
        .map(|e| e.provider)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_uris_resolve_through_templates() {
        assert!(canonical_uri("file:///srv/pub/notes.txt"));
        assert!(canonical_uri("test://template/42/data"));
        assert!(canonical_uri("docs://public/dir/"));
        for bad in [
            "file:///srv/pub/./priv/x",
            "file:///srv/pub//priv/x",
            "file:///srv/pub/%70riv/x",
            "file:///srv/pub/../../etc/passwd",
            "file:///srv/pub/..",
            "docs://public\\..\\x",
            "docs://public/a\nb",
            "docs://./secret/x",
            "docs://../secret/x",
            "docs:///secret/x",
            "docs://a@secret/x",
            "docs://secret:1/x",
            "docs://SECRET/x",
            "DOCS://secret/x",
        ] {
            assert!(!canonical_uri(bad), "{bad}");
        }
    }
}
