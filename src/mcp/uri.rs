//! Resource URIs: which provider serves a URI (a listed resource or a template). Templates and
//! which URIs are canonical enough to be matched against the policy's globs are
//! [`super::template`]'s.

use super::hub::View;
use super::template::{canonical_uri, template_matches};

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
