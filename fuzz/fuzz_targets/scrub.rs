#![no_main]
//! Fuzz target: the log/status scrubber must not panic on any text or secret, and what it returns
//! never holds the secret (one without `*`, the mask's own character).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let (secret, text) = rest.split_at(usize::from(n).min(rest.len()));
    let (Ok(secret), Ok(text)) = (std::str::from_utf8(secret), std::str::from_utf8(text)) else { return };
    let out = sts_agent::log::scrub(text, &sts_agent::log::secret_forms(secret));
    if !secret.is_empty() && !secret.contains('*') {
        assert!(!out.contains(secret), "{text:?} -> {out:?}");
    }
    // A rejected URL's echo keeps no userinfo: before its last `@` there is only a scheme
    // (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) "://"`, or nothing) and the mask; and nothing
    // after `?` or `#` but the mask.
    let shown = sts_agent::url::redact(text);
    if let Some(at) = shown.rfind('@') {
        let scheme = shown[..at].strip_suffix("***").unwrap_or_else(|| panic!("{text:?} -> {shown:?}"));
        if let Some(name) = scheme.strip_suffix("://") {
            let mut b = name.bytes();
            let ok = b.next().is_some_and(|c| c.is_ascii_alphabetic())
                && b.all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c));
            assert!(ok, "{text:?} -> {shown:?}");
        } else {
            assert!(scheme.is_empty(), "{text:?} -> {shown:?}");
        }
    }
    if let Some(i) = shown.find(['?', '#']) {
        assert_eq!(&shown[i + 1..], "***", "{text:?} -> {shown:?}");
    }
});
