//! The RFC 6265 rules the cookie strategy needs to seed a refresh cookie and to recognise the
//! server's own: cookie syntax, default paths, and the scope a cookie store keys a cookie by.

use url::Url;

/// RFC 6265 §5.1.4 default-path: the request path up to, not including, its last `/`; `/` when
/// that leaves nothing.
pub(super) fn default_path(url: &Url) -> String {
    match url.path().rsplit_once('/') {
        Some((directory, _)) if directory.starts_with('/') => directory.to_owned(),
        _ => "/".to_owned(),
    }
}

/// `(path, domain)` of a `Set-Cookie` for cookie `name` received from `url`, as a cookie store
/// keys it: `Path` or the default path, `Domain` lowercased without its leading dot (`None` for
/// a host-only cookie). `None` when the header sets another cookie.
pub(super) fn set_cookie_scope(
    value: &str,
    name: &str,
    url: &Url,
) -> Option<(String, Option<String>)> {
    let mut parts = value.split(';');
    let (cookie_name, _) = parts.next()?.split_once('=')?;
    if cookie_name.trim() != name {
        return None;
    }
    let mut path = None;
    let mut domain = None;
    for attribute in parts {
        let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
        let (key, val) = (key.trim(), val.trim());
        if key.eq_ignore_ascii_case("path") && val.starts_with('/') {
            path = Some(val.to_owned());
        } else if key.eq_ignore_ascii_case("domain") && !val.is_empty() {
            domain = Some(val.trim_start_matches('.').to_ascii_lowercase());
        }
    }
    Some((path.unwrap_or_else(|| default_path(url)), domain))
}

/// RFC 6265 §4.1.1 cookie-name: an RFC 2616 token.
pub(super) fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// RFC 6265 §4.1.1 cookie-octets, not empty.
pub(super) fn is_cookie_value(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REISSUE: &str = "http://127.0.0.1:8080/v3/jwt/reissue";

    #[test]
    fn default_paths_follow_rfc_6265() {
        let path = |url: &str| default_path(&Url::parse(url).unwrap());
        assert_eq!(path("https://a.example/v3/jwt/reissue"), "/v3/jwt");
        assert_eq!(path("https://a.example/refresh"), "/");
        assert_eq!(path("https://a.example/"), "/");
        assert_eq!(path("https://a.example/api/auth/"), "/api/auth");
    }

    #[test]
    fn set_cookie_scopes_are_read_as_a_store_keys_them() {
        let url = Url::parse(REISSUE).unwrap();
        assert_eq!(
            set_cookie_scope("rt=x; Path=/; HttpOnly", "rt", &url),
            Some(("/".to_owned(), None))
        );
        assert_eq!(
            set_cookie_scope("rt=x; HttpOnly", "rt", &url),
            Some(("/v3/jwt".to_owned(), None))
        );
        assert_eq!(
            set_cookie_scope("rt=x; domain=.Example.COM; path=/a", "rt", &url),
            Some(("/a".to_owned(), Some("example.com".to_owned())))
        );
        assert_eq!(set_cookie_scope("other=x; Path=/", "rt", &url), None);
        assert_eq!(set_cookie_scope("garbage", "rt", &url), None);
    }

    #[test]
    fn names_and_values_follow_rfc_6265() {
        assert!(is_cookie_name("tk_refresh") && is_cookie_name("refreshToken"));
        assert!(!is_cookie_name("") && !is_cookie_name("a=b") && !is_cookie_name("a b"));
        assert!(is_cookie_value("abc-_.~+/=") && !is_cookie_value(""));
        assert!(!is_cookie_value("a;b") && !is_cookie_value("a\"b") && !is_cookie_value("a b"));
    }
}
