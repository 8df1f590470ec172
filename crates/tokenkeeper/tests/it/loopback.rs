//! Plain http carries the token only to loopback: `127.0.0.0/8`, `[::1]` and exactly
//! `localhost`. A `*.localhost` name is not trusted to be loopback (issue 10 §5): the resolver
//! decides where it goes, and a resolver that does not follow RFC 6761 can send it anywhere.

use crate::common;

use common::*;
use std::net::SocketAddr;
use tokenkeeper::{Error, Session, TokenSet};

const TOKEN: &str = "loopback-test-token";

async fn signed_in_to_any_origin() -> Session {
    let refresher = tokenkeeper::refresh::from_fn(|_| async { Ok(TokenSet::new("unused")) });
    let session = Session::builder()
        .refresher(refresher)
        .attach_to_any()
        .build()
        .unwrap();
    session.sign_in(TokenSet::new(TOKEN)).await.unwrap();
    session
}

/// A client through `session` whose resolver maps `name` to `to`, the way a resolver that
/// honours RFC 6761 (or a hosts file) would.
fn client_resolving(
    session: &Session,
    name: &str,
    to: SocketAddr,
) -> reqwest_middleware::ClientWithMiddleware {
    let http = reqwest::Client::builder()
        .resolve(name, to)
        .build()
        .unwrap();
    reqwest_middleware::ClientBuilder::new(http)
        .with(session.middleware())
        .build()
}

/// Even when the name does resolve to the loopback echo server, a `*.localhost` origin over
/// plain http gets no token: the request is refused before anything is sent.
#[tokio::test]
async fn a_localhost_subdomain_over_plain_http_never_gets_the_token() {
    let echo = echo_server().await;
    let addr: SocketAddr = echo.trim_start_matches("http://").parse().unwrap();
    let session = signed_in_to_any_origin().await;

    // The control: the same server under its IP and under `localhost` gets the token.
    let client = client_resolving(&session, "localhost", addr);
    for base in [echo.clone(), format!("http://localhost:{}", addr.port())] {
        let text = client
            .get(format!("{base}/echo"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains(TOKEN), "{base}: {text}");
    }

    for name in ["api.localhost", "a.b.localhost"] {
        let client = client_resolving(&session, name, addr);
        let error = client
            .get(format!("http://{name}:{}/echo", addr.port()))
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(tk_error(&error), Some(Error::InsecureTransport { .. })),
            "{name}: {error}"
        );
    }
}

/// Configuration refuses what requests would refuse: listing a plain-http `*.localhost` origin,
/// or a refresh endpoint there.
#[tokio::test]
async fn a_localhost_subdomain_is_not_accepted_as_a_plain_http_origin_or_endpoint() {
    let refresher = tokenkeeper::refresh::from_fn(|_| async { Ok(TokenSet::new("unused")) });
    let listed = Session::builder()
        .refresher(refresher.clone())
        .attach_to(["http://api.localhost:8080"])
        .build();
    assert!(matches!(listed, Err(Error::Config(_))), "{listed:?}");
    let exact = Session::builder()
        .refresher(refresher)
        .attach_to([
            "http://localhost:8080",
            "http://127.0.0.2",
            "http://[::1]:8080",
        ])
        .build();
    assert!(exact.is_ok(), "{exact:?}");

    assert!(tokenkeeper::refresh::OAuth2::new("http://auth.localhost/token").is_err());
    assert!(tokenkeeper::refresh::OAuth2::new("http://localhost/token").is_ok());
}
