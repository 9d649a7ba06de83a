//! The resource template expander (RFC 6570) behind completion filtering: never panics on any
//! template or value, never returns more than `MAX_EXPANSION` bytes, and completing an argument
//! expands exactly like the template with that value among the others.
//!
//! Input: `TEMPLATE \0 ARGUMENT \0 VALUE (\0 NAME=VALUE)*`.
#![no_main]
use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use mcp_zt::mcp::template::{
    completion_permitted, completion_uri, expand, without_prefixes, MAX_EXPANSION,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.split('\0');
    let template = parts.next().unwrap_or_default();
    let arg = parts.next().unwrap_or_default();
    let value = parts.next().unwrap_or_default();
    let others: HashMap<String, String> = parts
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();

    if let Ok(uri) = expand(template, &others) {
        assert!(uri.len() <= MAX_EXPANSION);
    }
    let completed = completion_uri(template, arg, value, &others);
    if let Ok(uri) = &completed {
        assert!(uri.len() <= MAX_EXPANSION);
        let mut all = others.clone();
        all.insert(arg.to_string(), value.to_string());
        assert_eq!(expand(template, &all).as_ref(), Ok(uri));
    }
    // Whatever the check says, it is asked only about the URI the completion stands for, and
    // (when a prefix modifier cuts the value) the URI of the whole value.
    let uncut = completion_uri(&without_prefixes(template), arg, value, &others);
    let asked = std::cell::RefCell::new(Vec::new());
    let _ = completion_permitted(template, arg, value, &others, |uri| {
        asked.borrow_mut().push(uri.to_string());
        true
    });
    for uri in asked.into_inner() {
        assert!(completed.as_ref() == Ok(&uri) || uncut.as_ref() == Ok(&uri), "{uri}");
    }
});
