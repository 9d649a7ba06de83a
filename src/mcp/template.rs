//! Resource templates: which completion values a role may be shown.

use std::collections::HashMap;

use super::uri::canonical_uri;

/// Whether completing argument `arg` of the resource template `template` with `value` names a
/// URI that `permits` allows; `others` holds the values already chosen for other arguments.
pub fn completion_permitted(
    template: &str,
    arg: &str,
    value: &str,
    others: &HashMap<String, String>,
    permits: impl Fn(&str) -> bool,
) -> bool {
    let _ = others;
    let var = format!("{{{arg}}}");
    let concrete = template.replace(&var, value);
    canonical_uri(&concrete) && permits(&concrete)
}
