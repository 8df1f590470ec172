//! `OAuth2::discover` over real HTTP on 127.0.0.1, against a provider that serves good, odd and
//! hostile discovery documents. (Discovery against a certified provider is in oidc_interop.rs.)

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokenkeeper::refresh::{DiscoveryError, OAuth2, ProviderMetadata};

/// Serves, under each tenant path `/{tenant}`, what that tenant's discovery answers; returns the
/// server's base URL.
async fn provider() -> String {
    let listener = crate::common::loopback_listener();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let document = |issuer: String, token_endpoint: String| {
        serde_json::json!({
            "issuer": issuer,
            "token_endpoint": token_endpoint,
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "revocation_endpoint": format!("{issuer}/revoke"),
        })
        .to_string()
    };
    let openid = |tenant: &str| format!("/{tenant}/.well-known/openid-configuration");
    let good = document(format!("{base}/good"), format!("{base}/good/token"));
    let rfc8414 = document(format!("{base}/rfc8414"), format!("{base}/rfc8414/token"));
    let mismatch = document(
        "https://evil.example.com".into(),
        "https://evil.example.com/token".into(),
    );
    let insecure = document(
        format!("{base}/insecure"),
        "http://evil.example.com/token".into(),
    );
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(1 << 20));
    let huge_chunked = huge.clone();
    let redirect_to = format!("{base}{}", openid("good"));

    let app = axum::Router::new()
        .route(&openid("good"), get(move || async move { good }))
        .route(
            "/.well-known/oauth-authorization-server/rfc8414",
            get(move || async move { rfc8414 }),
        )
        .route(&openid("mismatch"), get(move || async move { mismatch }))
        .route(&openid("insecure"), get(move || async move { insecure }))
        .route(
            &openid("redirect"),
            get(move || async move {
                (StatusCode::FOUND, [(header::LOCATION, redirect_to)]).into_response()
            }),
        )
        .route(&openid("huge"), get(move || async move { huge }))
        .route(
            &openid("huge-chunked"),
            get(move || async move {
                let chunks: Vec<Result<String, std::io::Error>> = huge_chunked
                    .as_bytes()
                    .chunks(8192)
                    .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
                    .collect();
                axum::body::Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .route(
            &openid("html"),
            get(|| async { ([(header::CONTENT_TYPE, "text/html")], "<html>login</html>") }),
        )
        .route(
            &openid("broken"),
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

#[tokio::test]
async fn a_good_document_gives_the_token_endpoint_and_methods() {
    let base = provider().await;
    let issuer = format!("{base}/good");
    let oauth2 = OAuth2::discover(&issuer).await.unwrap();
    assert_eq!(oauth2.token_endpoint().as_str(), format!("{issuer}/token"));
    let metadata = oauth2.metadata().unwrap();
    assert_eq!(metadata.issuer(), issuer);
    assert_eq!(
        metadata.token_endpoint_auth_methods(),
        ["client_secret_post", "private_key_jwt"]
    );
    assert_eq!(
        metadata.revocation_endpoint().unwrap().as_str(),
        format!("{issuer}/revoke")
    );
}

#[tokio::test]
async fn without_an_openid_configuration_the_rfc_8414_document_is_read() {
    let base = provider().await;
    let issuer = format!("{base}/rfc8414");
    let metadata = ProviderMetadata::discover(&issuer).await.unwrap();
    assert_eq!(
        metadata.token_endpoint().as_str(),
        format!("{issuer}/token")
    );
}

#[tokio::test]
async fn hostile_and_broken_documents_are_typed_errors() {
    let base = provider().await;
    let discover = |tenant: &str| {
        let issuer = format!("{base}/{tenant}");
        async move { ProviderMetadata::discover(&issuer).await.unwrap_err() }
    };
    assert!(
        matches!(
            discover("mismatch").await,
            DiscoveryError::IssuerMismatch { ref found, .. } if found == "https://evil.example.com"
        ),
        "a document naming another issuer is not trusted"
    );
    assert!(matches!(
        discover("insecure").await,
        DiscoveryError::InvalidField {
            field: "token_endpoint",
            ..
        }
    ));
    assert!(matches!(
        discover("redirect").await,
        DiscoveryError::Redirected { status: 302, .. }
    ));
    for tenant in ["huge", "huge-chunked"] {
        assert!(
            matches!(discover(tenant).await, DiscoveryError::TooLarge { .. }),
            "{tenant}"
        );
    }
    assert_eq!(discover("html").await, DiscoveryError::NotJson);
    // A server error is not a missing document: no fallback, the status is reported.
    assert!(matches!(
        discover("broken").await,
        DiscoveryError::Status { status: 500, .. }
    ));
    // Neither document exists: the RFC 8414 address's 404 is reported.
    assert!(matches!(
        discover("nobody").await,
        DiscoveryError::Status { status: 404, ref url } if url.contains("oauth-authorization-server")
    ));
}

#[tokio::test]
async fn an_unreachable_provider_is_a_typed_error() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let error = ProviderMetadata::discover(&issuer).await.unwrap_err();
    assert!(
        matches!(error, DiscoveryError::Unreachable { .. }),
        "{error:?}"
    );
}
