//! Which origins receive the access token.
//!
//! An origin is scheme + host + port (RFC 6454). The token goes only to origins the user listed;
//! plain http is refused for token-bearing requests unless the host is loopback or the user
//! explicitly allowed it.
//!
//! Loopback means `127.0.0.0/8`, `[::1]` and the name `localhost` exactly. RFC 6761 asks resolvers
//! to answer every `*.localhost` name with loopback, but many do not (a corporate DNS server or a
//! hosts file may send `api.localhost` anywhere), and the token must not depend on the resolver
//! keeping that promise. Plain `localhost` is kept because every system's hosts file maps it.

use std::net::{IpAddr, Ipv6Addr};
use url::{Host, Url};

/// What to do with a request, by its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Attach the token.
    Attach,
    /// Not one of ours: send it untouched, without a token.
    PassThrough,
    /// Would carry the token over plain http to a non-loopback host: refuse.
    Insecure,
}

/// An allowed origin. Only http(s) origins can be allowed, so the scheme is one bit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    secure: bool,
    /// Lower case, as the URL parser leaves every host (WHATWG URL parsing).
    host: String,
    port: Option<u16>,
}

/// The allowed origins of a session.
#[derive(Debug, Clone, Default)]
pub(crate) struct OriginPolicy {
    allowed: Vec<Origin>,
    any: bool,
    insecure_http: bool,
}

impl OriginPolicy {
    pub(crate) fn allow(&mut self, origin: &str) -> Result<(), String> {
        let url = Url::parse(origin).map_err(|e| format!("`{origin}` is not a URL: {e}"))?;
        let secure = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(format!("`{origin}` is not an http(s) origin")),
        };
        let host = url
            .host_str()
            .ok_or_else(|| format!("`{origin}` has no host"))?;
        self.allowed.push(Origin {
            secure,
            host: host.to_ascii_lowercase(),
            port: url.port_or_known_default(),
        });
        Ok(())
    }

    pub(crate) fn allow_any(&mut self) {
        self.any = true;
    }

    pub(crate) fn allow_insecure_http(&mut self) {
        self.insecure_http = true;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.allowed.is_empty() && !self.any
    }

    /// Plain-http origins the user listed that are not loopback, when that was not allowed.
    pub(crate) fn insecure_listed(&self) -> Option<String> {
        if self.insecure_http {
            return None;
        }
        self.allowed
            .iter()
            .find(|o| !o.secure && !is_loopback(&o.host))
            .map(|o| format!("http://{}", o.host))
    }

    /// Runs on every request: compares in place (cheapest field first) instead of building an
    /// [`Origin`], and reads loopback from the host the URL already parsed.
    pub(crate) fn decide(&self, url: &Url) -> Decision {
        let secure = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return Decision::PassThrough,
        };
        let Some(host) = url.host_str() else {
            return Decision::PassThrough;
        };
        let port = url.port_or_known_default();
        let listed = self.allowed.iter().any(|allowed| {
            allowed.port == port && allowed.secure == secure && allowed.host == host
        });
        if !(listed || self.any) {
            return Decision::PassThrough;
        }
        if secure || self.insecure_http || url.host().is_some_and(|h| is_loopback_host(&h)) {
            Decision::Attach
        } else {
            Decision::Insecure
        }
    }
}

/// Whether two URLs have the same origin (scheme, host, port): a response that came back from
/// another origin than its request was sent to followed a redirect there.
#[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.port_or_known_default() == b.port_or_known_default()
        && a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
}

/// Whether `host` (as [`Url::host_str`] gives it: IPv6 in brackets) is loopback: `127.0.0.0/8`,
/// `[::1]` or exactly `localhost`, never `*.localhost` (see the module docs).
pub(crate) fn is_loopback(host: &str) -> bool {
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'));
    match unbracketed {
        Some(ipv6) => ipv6.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback()),
        None => {
            host.eq_ignore_ascii_case("localhost")
                || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
    }
}

/// [`is_loopback`] for a host the URL parser already took apart: no string parsing.
fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn only_listed_origins_get_the_token() {
        let mut policy = OriginPolicy::default();
        policy.allow("https://api.example.com").unwrap();
        assert_eq!(
            policy.decide(&url("https://API.example.com/x")),
            Decision::Attach
        );
        assert_eq!(
            policy.decide(&url("https://api.example.com:443/x")),
            Decision::Attach
        );
        assert_eq!(
            policy.decide(&url("https://api.example.com:8443/x")),
            Decision::PassThrough
        );
        assert_eq!(
            policy.decide(&url("https://evil.example.com/x")),
            Decision::PassThrough
        );
        assert_eq!(
            policy.decide(&url("http://api.example.com/x")),
            Decision::PassThrough
        );
    }

    #[test]
    fn plain_http_only_to_loopback_unless_allowed() {
        let mut policy = OriginPolicy::default();
        policy.allow_any();
        assert_eq!(
            policy.decide(&url("http://127.0.0.1:9/x")),
            Decision::Attach
        );
        assert_eq!(policy.decide(&url("http://[::1]:9/x")), Decision::Attach);
        assert_eq!(policy.decide(&url("http://localhost/x")), Decision::Attach);
        assert_eq!(
            policy.decide(&url("http://example.com/x")),
            Decision::Insecure
        );
        policy.allow_insecure_http();
        assert_eq!(
            policy.decide(&url("http://example.com/x")),
            Decision::Attach
        );
    }

    #[test]
    fn loopback_is_127_slash_8_ipv6_one_and_exactly_localhost() {
        let mut policy = OriginPolicy::default();
        policy.allow_any();
        for loopback in [
            "http://127.0.0.1/x",
            "http://127.255.255.254:8080/x",
            "http://[::1]:9/x",
            "http://localhost:9/x",
            "http://LOCALHOST/x",
        ] {
            assert_eq!(
                policy.decide(&url(loopback)),
                Decision::Attach,
                "{loopback}"
            );
        }
        // `*.localhost` is loopback only if the resolver keeps RFC 6761's promise; the token
        // does not rely on it. Nor on names that merely contain "localhost", nor mapped IPv4.
        for remote in [
            "http://api.localhost/x",
            "http://a.b.localhost:9/x",
            "http://localhost.example.com/x",
            "http://localhostx/x",
            "http://128.0.0.1/x",
            "http://[::2]/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://0.0.0.0/x",
        ] {
            assert_eq!(policy.decide(&url(remote)), Decision::Insecure, "{remote}");
        }
    }

    #[test]
    fn the_string_form_agrees_with_the_parsed_form() {
        // `is_loopback` serves the refresh endpoint check and `insecure_listed`; `decide` reads
        // the parsed host. Both must say the same for every host.
        for (host, expected) in [
            ("127.0.0.1", true),
            ("127.1.2.3", true),
            ("[::1]", true),
            ("localhost", true),
            ("LocalHost", true),
            ("api.localhost", false),
            ("localhost.", false),
            ("::1", true),
            ("[127.0.0.1]", false),
            ("[::2]", false),
            ("example.com", false),
        ] {
            assert_eq!(is_loopback(host), expected, "{host}");
            if let Ok(parsed) = Url::parse(&format!("http://{host}/")) {
                let parsed_host = parsed.host().unwrap();
                assert_eq!(
                    is_loopback_host(&parsed_host),
                    is_loopback(parsed.host_str().unwrap()),
                    "{host}"
                );
            }
        }
    }

    #[test]
    fn listing_a_plain_http_localhost_subdomain_is_flagged() {
        let mut policy = OriginPolicy::default();
        policy.allow("http://localhost:8080").unwrap();
        assert_eq!(policy.insecure_listed(), None);
        policy.allow("http://api.localhost:8080").unwrap();
        assert_eq!(
            policy.insecure_listed().as_deref(),
            Some("http://api.localhost")
        );
    }

    #[test]
    fn same_origin_compares_scheme_host_and_port() {
        let a = url("https://api.example.com/a?x=1");
        assert!(same_origin(&a, &url("https://API.example.com:443/b")));
        assert!(!same_origin(&a, &url("http://api.example.com/a")));
        assert!(!same_origin(&a, &url("https://api.example.com:8443/a")));
        assert!(!same_origin(&a, &url("https://evil.example.com/a")));
    }

    #[test]
    fn listing_a_plain_http_remote_origin_is_flagged() {
        let mut policy = OriginPolicy::default();
        policy.allow("http://127.0.0.1:8080").unwrap();
        assert_eq!(policy.insecure_listed(), None);
        policy.allow("http://api.example.com").unwrap();
        assert!(policy.insecure_listed().is_some());
        assert!(policy.allow("ftp://x").is_err());
        assert!(policy.allow("not a url").is_err());
    }
}
