//! The `client.allowed_origins` check against Cross-Site WebSocket Hijacking (and its
//! HTTP-streaming / SSE equivalents): a page on another site must not ride a user's cookies
//! into a connection.
//!
//! Rules, as Centrifugo applies them: a request without an `Origin` header is not from a
//! browser page and passes (CSWSH needs a browser, which always sends it); `*` in the list
//! allows every origin; otherwise the origin must match one pattern (`*` matches any run of
//! characters, case-insensitive), and an empty list allows only same-origin requests (the
//! origin's host equals the request's `Host`).

/// Whether a handshake with `origin` (the `Origin` header) to `host` (the `Host` header) may go
/// on under `allowed` (`client.allowed_origins`).
pub(crate) fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    if allowed.is_empty() {
        let origin_host = origin
            .split_once("://")
            .map_or(origin, |(_, rest)| rest)
            .trim_end_matches('/');
        return host.is_some_and(|host| origin_host.eq_ignore_ascii_case(host));
    }
    let origin = origin.to_ascii_lowercase();
    allowed
        .iter()
        .any(|pattern| glob_match(&pattern.to_ascii_lowercase(), &origin))
}

/// `*` matches any run of characters (also none); everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('*').collect();
    let (last, middle) = parts.split_last().unwrap_or((&"", &[]));
    for part in middle {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn requests_without_origin_are_not_from_browsers_and_pass() {
        assert!(origin_allowed(None, Some("a.example"), &[]));
        assert!(origin_allowed(None, None, &list(&["https://a.example"])));
    }

    #[test]
    fn empty_list_allows_only_same_origin() {
        let host = Some("chat.example:8000");
        assert!(origin_allowed(Some("http://chat.example:8000"), host, &[]));
        assert!(origin_allowed(Some("https://CHAT.example:8000"), host, &[]));
        assert!(!origin_allowed(Some("https://evil.example"), host, &[]));
        assert!(!origin_allowed(Some("null"), host, &[]));
        assert!(!origin_allowed(Some("http://chat.example:8000"), None, &[]));
    }

    #[test]
    fn patterns_match_with_wildcards_case_insensitively() {
        let allowed = list(&["https://*.example.com", "http://localhost:*"]);
        assert!(origin_allowed(
            Some("https://app.example.com"),
            None,
            &allowed
        ));
        assert!(origin_allowed(
            Some("https://a.b.EXAMPLE.com"),
            None,
            &allowed
        ));
        assert!(origin_allowed(
            Some("http://localhost:3000"),
            None,
            &allowed
        ));
        assert!(!origin_allowed(
            Some("https://example.com.evil.net"),
            None,
            &allowed
        ));
        assert!(!origin_allowed(
            Some("http://app.example.com"),
            None,
            &allowed
        ));
        assert!(origin_allowed(
            Some("https://anything"),
            None,
            &list(&["*"])
        ));
    }

    #[test]
    fn glob_handles_several_stars_and_anchors() {
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("*", ""));
        assert!(glob_match("ab*", "ab"));
        assert!(!glob_match("*ab", "b"));
    }
}
