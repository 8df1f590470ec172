//! Who may talk to the server: the checks every request passes before its route runs.
//!
//! The server is meant for loopback, but a web page open in the developer's browser can reach
//! loopback too. Three layers keep a page from driving it, outermost first:
//!
//! 1. [`host`]: the `Host` must be loopback (`localhost`, `127.0.0.0/8`, `[::1]`), the bound
//!    address, or a name given in [`ServerConfig::allowed_hosts`](crate::ServerConfig);
//!    otherwise **421** on *every* route. DNS rebinding points an attacker's name at
//!    127.0.0.1 so that its page becomes same-origin with the server; the browser still sends
//!    the attacker's name as `Host`, so refusing unknown names defeats it. Every route, not
//!    only the operator ones: through rebinding a page could also sign in, spend the session
//!    table and read the API, and nothing legitimate reaches a loopback server by a name it
//!    was not told about.
//! 2. [`origin`]: a request with an `Origin` header that is not listed in
//!    [`ServerConfig::allowed_origins`](crate::ServerConfig) is refused with **403** on every
//!    route (a cross-site form post needs no preflight, so CORS alone would not stop it; tools
//!    other than browsers send no `Origin`). Listed origins get CORS, with credentials, on the
//!    login, refresh and API routes only ([`RouteKind::Browser`]); operator routes never
//!    answer CORS at all.
//! 3. [`admin`]: operator routes (every path starting with `/__`) need the header
//!    [`ADMIN_HEADER`]` : 1`; without it, **403**. A page cannot send a custom header to another
//!    origin without a preflight, and no preflight to an operator route succeeds.

pub(crate) mod admin;
pub(crate) mod host;
pub(crate) mod origin;

pub use admin::{ADMIN_HEADER, ADMIN_HEADER_VALUE};
pub(crate) use host::valid_host_name;
pub(crate) use origin::Origin;

use crate::errors::ServerError;
use crate::{ServerConfig, routes};

/// What kind of route a path is, for the access checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteKind {
    /// `/__…`: counters, reset, faults. Never CORS; needs [`ADMIN_HEADER`].
    Operator,
    /// Login, logout, the four refresh endpoints and the protected API: what a browser app
    /// under development calls. CORS for listed origins.
    Browser,
    /// Anything else (unknown paths): no CORS.
    Other,
}

impl RouteKind {
    /// The kind of `path`.
    pub(crate) fn of(path: &str) -> Self {
        if path.starts_with(routes::OPERATOR_PREFIX) {
            RouteKind::Operator
        } else if routes::BROWSER_ROUTES.contains(&path)
            || path
                .strip_prefix(routes::ITEMS)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        {
            RouteKind::Browser
        } else {
            RouteKind::Other
        }
    }
}

/// The access policy, compiled from the configuration once.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub(crate) hosts: host::AllowedHosts,
    pub(crate) origins: origin::AllowedOrigins,
}

impl Policy {
    /// The policy of `config` (validated by the caller).
    pub(crate) fn new(config: &ServerConfig) -> Result<Self, ServerError> {
        Ok(Self {
            hosts: host::AllowedHosts::new(config.bind.ip(), &config.allowed_hosts)?,
            origins: origin::AllowedOrigins::new(&config.allowed_origins)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_classified_by_path() {
        for operator in ["/__stats", "/__reset", "/__faults", "/__anything"] {
            assert_eq!(RouteKind::of(operator), RouteKind::Operator, "{operator}");
        }
        for browser in [
            "/login",
            "/logout",
            "/oauth2/token",
            "/refresh/token",
            "/api/refresh-token",
            "/v3/jwt/reissue",
            "/api/items",
            "/api/items/42",
        ] {
            assert_eq!(RouteKind::of(browser), RouteKind::Browser, "{browser}");
        }
        for other in ["/", "/nope", "/api/itemsx", "/login/x", "/_stats"] {
            assert_eq!(RouteKind::of(other), RouteKind::Other, "{other}");
        }
    }
}
