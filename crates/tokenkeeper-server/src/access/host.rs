//! The `Host` check against DNS rebinding: only loopback names and addresses, the bound
//! address and configured names are served; anything else gets 421 Misdirected Request.
//!
//! 421 rather than 403: the request reached a server that does not answer for that name,
//! which says nothing about any token; a client library treats it as "not a verdict" and keeps
//! its session, where a 403 from a refresh endpoint would end it.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::HOST;
use axum::http::uri::Authority;
use axum::middleware::Next;
use axum::response::Response;

use crate::errors::{ServerError, json_error};
use crate::state::AppState;

/// A configured host: an address, or a lowercase name.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Host {
    /// Reads a bare host (no port): `localhost`, `127.0.0.1`, `::1` or `[::1]`.
    fn parse(text: &str) -> Option<Self> {
        let bare = text
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
            .unwrap_or(text);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Some(Host::Ip(ip.to_canonical()));
        }
        // A name: what a URL's host may hold, nothing that would need escaping.
        let valid = !text.is_empty()
            && text.len() <= 253
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        valid.then(|| Host::Name(text.to_ascii_lowercase()))
    }
}

/// True when `text` is a host name or IP address without scheme, port or path.
pub(crate) fn valid_host_name(text: &str) -> bool {
    Host::parse(text).is_some()
}

/// The hosts this server answers for.
#[derive(Clone, Debug)]
pub(crate) struct AllowedHosts {
    /// The address the listener is bound to, unless unspecified (0.0.0.0 is no `Host`).
    bound: Option<IpAddr>,
    extra: Vec<Host>,
}

impl AllowedHosts {
    /// Loopback, `bound`, and `extra` (each a bare host name or address).
    pub(crate) fn new(bound: IpAddr, extra: &[String]) -> Result<Self, ServerError> {
        let extra = extra
            .iter()
            .map(|text| {
                Host::parse(text).ok_or_else(|| {
                    ServerError::InvalidConfig(format!(
                        "allowed host {text:?} is not a host name or IP address (no scheme, port or path)"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let bound = bound.to_canonical();
        Ok(Self {
            bound: (!bound.is_unspecified()).then_some(bound),
            extra,
        })
    }

    /// Whether a request naming `authority` (a `Host` value: host and optional port) is
    /// served.
    pub(crate) fn allows(&self, authority: &str) -> bool {
        // `Authority` accepts `user@host`; a Host header never carries user info.
        if authority.contains('@') {
            return false;
        }
        let Ok(authority) = authority.parse::<Authority>() else {
            return false;
        };
        // Whatever follows the host must be a port number.
        let port = authority.as_str().get(authority.host().len()..);
        if !port.is_some_and(|port| {
            port.is_empty()
                || port
                    .strip_prefix(':')
                    .is_some_and(|n| n.parse::<u16>().is_ok())
        }) {
            return false;
        }
        let Some(host) = Host::parse(authority.host()) else {
            return false;
        };
        let built_in = match &host {
            Host::Ip(ip) => ip.is_loopback() || Some(*ip) == self.bound,
            Host::Name(name) => name == "localhost",
        };
        built_in || self.extra.contains(&host)
    }
}

/// The host a request names: the authority of an absolute-form target (which RFC 9112 §3.2.2
/// says wins over `Host`), else the `Host` header.
fn requested_host(request: &Request) -> Option<&str> {
    if let Some(authority) = request.uri().authority() {
        return Some(authority.as_str());
    }
    request.headers().get(HOST)?.to_str().ok()
}

/// Refuses requests for a host this server does not answer for.
pub(crate) async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let allowed =
        requested_host(&request).is_some_and(|host| state.shared.access.hosts.allows(host));
    if allowed {
        return next.run(request).await;
    }
    tracing::debug!(
        path = request.uri().path(),
        "request for a host not served refused"
    );
    json_error(
        StatusCode::MISDIRECTED_REQUEST,
        "misdirected_request",
        "This server answers only for localhost, 127.0.0.0/8, [::1], its bound address and \
         names given with --allow-host (a guard against DNS rebinding)",
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn loopback_only() -> AllowedHosts {
        AllowedHosts::new(IpAddr::V4(Ipv4Addr::LOCALHOST), &[]).unwrap()
    }

    #[test]
    fn loopback_names_and_addresses_are_served() {
        let hosts = loopback_only();
        for host in [
            "localhost",
            "LocalHost:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.1.2.3:1",
            "[::1]",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(hosts.allows(host), "{host}");
        }
    }

    #[test]
    fn other_names_are_refused() {
        let hosts = loopback_only();
        for host in [
            "",
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "sub.localhost",
            "localhost.",
            "127.0.0.1.nip.io",
            "10.0.0.1:8080",
            "0.0.0.0",
            "[::]",
            "user@localhost",
            "localhost:notaport",
            "[::1",
            "local host",
        ] {
            assert!(!hosts.allows(host), "{host}");
        }
    }

    #[test]
    fn the_bound_address_and_configured_names_are_served() {
        let hosts = AllowedHosts::new(
            "192.168.1.5".parse().unwrap(),
            &[
                "Dev.Box".to_owned(),
                "10.0.0.7".to_owned(),
                "[fd00::1]".to_owned(),
            ],
        )
        .unwrap();
        for host in [
            "192.168.1.5:8080",
            "dev.box",
            "DEV.BOX:1",
            "10.0.0.7",
            "[fd00::1]:9",
        ] {
            assert!(hosts.allows(host), "{host}");
        }
        assert!(!hosts.allows("192.168.1.6:8080"));
        // Bound to every interface: 0.0.0.0 is not a name anyone sends.
        let any = AllowedHosts::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), &[]).unwrap();
        assert!(!any.allows("[::]:8080"));
        assert!(any.allows("localhost:8080"));
    }

    #[test]
    fn bad_configured_hosts_are_refused() {
        for bad in ["http://dev.box", "dev.box:8080", "dev.box/x", "", "a b"] {
            assert!(AllowedHosts::new(IpAddr::V4(Ipv4Addr::LOCALHOST), &[bad.to_owned()]).is_err());
        }
    }
}
