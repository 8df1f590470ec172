//! `Origin` checks and CORS, for listed origins only.
//!
//! - No `Origin` header (curl, reqwest, any non-browser client; a browser's same-origin GET):
//!   passes untouched.
//! - An `Origin` that is listed, on a [`RouteKind::Browser`] route: preflights are answered
//!   here (204), other requests run and get `Access-Control-Allow-Origin: <that origin>` with
//!   credentials, and the contract headers exposed.
//! - Anything else with an `Origin` (an unlisted origin, `null`, or any origin on an operator
//!   or unknown route): 403 `origin_not_allowed`, with no CORS headers, before the route runs.
//!   Refusing rather than merely leaving CORS headers off matters: a cross-site form post is
//!   sent without a preflight, and would otherwise run (a login per page view, say) even
//!   though the page cannot read the answer.
//!
//! The origin is never reflected unless it is listed, and `*` cannot be listed.

use axum::extract::{Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use axum::http::uri::{Scheme, Uri};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::RouteKind;
use crate::errors::{ServerError, json_error};
use crate::state::AppState;

/// Chrome's Private Network Access preflight header: a listed public origin calling this
/// loopback server needs it answered.
const REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
const ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");

/// A web origin, normalised: lowercase `scheme://host[:port]`, default port dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin(String);

impl Origin {
    /// Parses an origin as browsers serialise it (`http://localhost:5173`); explains what is
    /// wrong otherwise.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let refuse = |why: &str| format!("allowed origin {text:?} {why}");
        if text == "*" {
            return Err(refuse(
                "is a wildcard: list each origin (credentials are allowed, so a wildcard would \
                 let any page act as the signed-in user)",
            ));
        }
        let uri: Uri = text
            .parse()
            .map_err(|_| refuse("is not scheme://host[:port]"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(refuse("is not scheme://host[:port]"));
        };
        if *scheme != Scheme::HTTP && *scheme != Scheme::HTTPS {
            return Err(refuse("is not http or https"));
        }
        if authority.as_str().contains('@')
            || uri.query().is_some()
            || !(uri.path().is_empty() || uri.path() == "/")
            || text.ends_with('/')
        {
            return Err(refuse(
                "has more than scheme://host[:port] (no path, query or trailing slash)",
            ));
        }
        let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
        let host = authority.host().to_ascii_lowercase();
        Ok(Self(match authority.port_u16() {
            Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
            _ => format!("{scheme}://{host}"),
        }))
    }
}

/// The origins that get CORS.
#[derive(Clone, Debug, Default)]
pub(crate) struct AllowedOrigins(Vec<Origin>);

impl AllowedOrigins {
    /// The parsed list.
    pub(crate) fn new(origins: &[String]) -> Result<Self, ServerError> {
        origins
            .iter()
            .map(|text| Origin::parse(text).map_err(ServerError::InvalidConfig))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether the `Origin` header value `origin` is listed.
    fn allows(&self, origin: &HeaderValue) -> bool {
        let Ok(text) = origin.to_str() else {
            return false;
        };
        Origin::parse(text).is_ok_and(|origin| self.0.contains(&origin))
    }
}

fn refused() -> Response {
    json_error(
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
        "Requests from this origin are not allowed; start the server with --allow-origin \
         <origin> to let a browser app call the login, refresh and API routes",
    )
}

/// `Access-Control-Allow-Origin: <origin>` with credentials, and `Vary: Origin`.
fn allow(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.append(VARY, HeaderValue::from_static("origin"));
}

/// The preflight answer for a listed origin.
fn preflight(request: &Request, origin: HeaderValue) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    allow(headers, origin);
    headers.append(
        VARY,
        HeaderValue::from_static("access-control-request-method, access-control-request-headers"),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, authorization-refresh, content-type, dpop"),
    );
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    if request
        .headers()
        .get(REQUEST_PRIVATE_NETWORK)
        .is_some_and(|value| value == "true")
    {
        headers.insert(ALLOW_PRIVATE_NETWORK, HeaderValue::from_static("true"));
    }
    response
}

/// Refuses foreign origins, answers preflights, decorates responses to listed origins.
pub(crate) async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(ORIGIN).cloned() else {
        return next.run(request).await;
    };
    let kind = RouteKind::of(request.uri().path());
    if kind != RouteKind::Browser || !state.shared.access.origins.allows(&origin) {
        tracing::debug!(
            path = request.uri().path(),
            ?kind,
            "request from an origin not allowed refused"
        );
        return refused();
    }
    if request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(ACCESS_CONTROL_REQUEST_METHOD)
    {
        return preflight(&request, origin);
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    allow(headers, origin);
    headers.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(
            "authorization, authorization-refresh, www-authenticate, dpop-nonce",
        ),
    );
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised() {
        let parse = |text: &str| Origin::parse(text).map(|origin| origin.0);
        assert_eq!(
            parse("http://localhost:5173").unwrap(),
            "http://localhost:5173"
        );
        assert_eq!(
            parse("HTTP://LocalHost:5173").unwrap(),
            "http://localhost:5173"
        );
        assert_eq!(parse("http://localhost:80").unwrap(), "http://localhost");
        assert_eq!(
            parse("https://app.example:443").unwrap(),
            "https://app.example"
        );
        assert_eq!(parse("http://[::1]:3000").unwrap(), "http://[::1]:3000");
    }

    #[test]
    fn wildcards_paths_and_other_schemes_are_refused() {
        for bad in [
            "*",
            "null",
            "localhost:5173",
            "http://localhost:5173/",
            "http://localhost:5173/app",
            "http://localhost:5173?x=1",
            "http://user@localhost:5173",
            "file:///tmp",
            "ftp://localhost",
            "",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_listed_origins_are_allowed() {
        let origins = AllowedOrigins::new(&["http://localhost:5173".to_owned()]).unwrap();
        let allows = |value: &'static str| origins.allows(&HeaderValue::from_static(value));
        assert!(allows("http://localhost:5173"));
        assert!(!allows("http://localhost:5174"));
        assert!(!allows("https://localhost:5173"));
        assert!(!allows("http://evil.example"));
        assert!(!allows("null"));
        assert!(
            !AllowedOrigins::default().allows(&HeaderValue::from_static("http://localhost:5173"))
        );
    }
}
