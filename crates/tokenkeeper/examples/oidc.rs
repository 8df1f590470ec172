//! Machine-to-machine tokens from a real OpenID provider: discovery, client credentials, and one
//! token request per token lifetime however many tasks ask for the token.
//!
//! ```text
//! eval "$(bash scripts/oidc.sh)"     # oidc-provider on 127.0.0.1:6392 (npm ci on first use)
//! cargo run -p tokenkeeper --example oidc
//! ```

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokenkeeper::secrecy::ExposeSecret;
use tokenkeeper::{Session, refresh};

/// A client of scripts/oidc/provider.mjs (a development provider: the secret is no secret).
const CLIENT_ID: &str = "tk-example-m2m";
const CLIENT_SECRET: &str = "tk secret: with +/%&= reserved chars";
/// The API the tokens are for (RFC 8707 resource indicator).
const RESOURCE: &str = "urn:tokenkeeper:interop-api";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Ok(issuer) = std::env::var("TOKENKEEPER_OIDC_ISSUER") else {
        eprintln!(
            "TOKENKEEPER_OIDC_ISSUER is not set: run `eval \"$(bash scripts/oidc.sh)\"` first"
        );
        std::process::exit(2);
    };

    // Discovery: the token endpoint and the client authentication methods come from the
    // provider's /.well-known/openid-configuration, checked to be for this very issuer.
    let provider = refresh::OAuth2::discover(&issuer)
        .await?
        .client_id(CLIENT_ID)
        .client_secret(CLIENT_SECRET);
    let metadata = provider.metadata().ok_or("discovered")?;
    println!("issuer      {}", metadata.issuer());
    println!("token URL   {}", metadata.token_endpoint());
    println!("client auth {:?}", metadata.token_endpoint_auth_methods());

    let before = token_requests(&issuer).await?;
    let m2m = refresh::ClientCredentials::new(provider)
        .scope("api:read")
        .resource(RESOURCE);
    let session = Session::builder()
        .refresher(m2m)
        .attach_to([issuer.as_str()])
        .build()?;
    // A client-credentials session needs no login: the first request obtains the token.

    // 100 tasks ask for the token five times a second, across several 2 s token lifetimes.
    let run_for = Duration::from_secs(7);
    let started = Instant::now();
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (session, seen) = (session.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                let mut asked = 0u32;
                while started.elapsed() < run_for {
                    let token = session.access_token().await?;
                    seen.lock()
                        .map_err(|_| "poisoned")?
                        .insert(token.expose_secret().to_owned());
                    asked += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok::<u32, Box<dyn std::error::Error + Send + Sync>>(asked)
            })
        })
        .collect();
    let mut asked = 0;
    for task in tasks {
        asked += task.await?.map_err(|e| e.to_string())?;
    }
    let distinct = seen.lock().map_err(|_| "poisoned")?.len();

    let requests = token_requests(&issuer).await? - before;
    println!(
        "100 tasks for {run_for:?}: {asked} token look-ups, {distinct} distinct tokens, \
         {requests} token requests at the provider"
    );
    Ok(())
}

/// Client-credentials requests the provider of scripts/oidc.sh counted for this client (a
/// test-only route of that provider, not part of OpenID Connect).
async fn token_requests(issuer: &str) -> Result<u64, Box<dyn std::error::Error>> {
    let stats: serde_json::Value = reqwest::get(format!("{issuer}/__stats?client_id={CLIENT_ID}"))
        .await?
        .json()
        .await?;
    let by_status = &stats["token_requests"]["client_credentials"];
    Ok(by_status
        .as_object()
        .map_or(0, |counts| counts.values().filter_map(|n| n.as_u64()).sum()))
}
