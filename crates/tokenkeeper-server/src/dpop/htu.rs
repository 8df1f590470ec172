//! Comparing a proof's `htu` with the URI of the request that carried it (RFC 9449 §4.3):
//! query and fragment ignored, scheme and host compared case-insensitively, a default port
//! the same as none, an empty path the same as `/`, percent-escapes compared
//! case-insensitively (RFC 3986 §6.2.2–6.2.3).

/// `uri` in the form two equal URIs share, or `None` when it is not an absolute `http(s)`
/// URI with a host (such an `htu` never matches anything).
pub(crate) fn normalize(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    // Query and fragment are not part of the comparison.
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        // No host, or user information: not a URI a client should sign.
        return None;
    }
    let mut authority = authority.to_ascii_lowercase();
    if let Some(without) = authority.strip_suffix(default_port) {
        authority = without.to_owned();
    }
    Some(format!("{scheme}://{authority}{}", upper_escapes(path)))
}

/// `%2f` and `%2F` are the same octet.
fn upper_escapes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut escape = 0;
    for c in path.chars() {
        if c == '%' {
            escape = 2;
            out.push(c);
        } else if escape > 0 {
            escape -= 1;
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn query_fragment_case_and_default_port_do_not_matter() {
        let base = normalize("http://127.0.0.1:8080/oauth2/token");
        assert!(base.is_some());
        for same in [
            "http://127.0.0.1:8080/oauth2/token?x=1",
            "http://127.0.0.1:8080/oauth2/token#frag",
            "HTTP://127.0.0.1:8080/oauth2/token",
        ] {
            assert_eq!(normalize(same), base, "{same}");
        }
        assert_eq!(
            normalize("http://LocalHost:80/a%2fb"),
            normalize("http://localhost/a%2Fb")
        );
        assert_eq!(normalize("https://h:443"), normalize("https://h/"));
    }

    #[test]
    fn different_uris_differ() {
        let base = normalize("http://127.0.0.1:8080/oauth2/token");
        for other in [
            "http://127.0.0.1:8081/oauth2/token",
            "https://127.0.0.1:8080/oauth2/token",
            "http://localhost:8080/oauth2/token",
            "http://127.0.0.1:8080/oauth2/token/",
            "http://127.0.0.1:8080/OAuth2/token",
        ] {
            assert_ne!(normalize(other), base, "{other}");
        }
        for junk in ["", "/oauth2/token", "ftp://h/x", "http://", "http://u@h/x"] {
            assert_eq!(normalize(junk), None, "{junk}");
        }
    }
}
