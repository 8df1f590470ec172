//! The four clients the per-request overhead compares, all on the same `reqwest::Client`
//! settings and the same token, each sending `GET` and reading the whole answer:
//!
//! - [`Contender::Bare`]: bare reqwest, a precomputed `Authorization` header on the builder;
//! - [`Contender::Stack`]: reqwest-middleware with no middleware, the header on the builder (what
//!   the stack itself costs);
//! - [`Contender::Bearer`]: reqwest-middleware with [`BearerMiddleware`], the hand-written
//!   middleware tokenkeeper's target is set against;
//! - [`Contender::Tokenkeeper`]: reqwest-middleware with tokenkeeper's `AuthMiddleware`;
//! - [`Contender::Keyed`]: reqwest-middleware with the `KeyedMiddleware` of a `Sessions`
//!   collection of [`KEYS`] signed-in keys, each request for the next key in turn (its `Key`
//!   extension set on the request, as an application does): what picking the session per
//!   request adds to the single-session middleware. Counted in instructions only.
//! - [`Contender::Dpop`]: tokenkeeper's `AuthMiddleware` with a DPoP-bound token (RFC 9449):
//!   every request carries a fresh ES256 proof. Counted in instructions only, against a
//!   server that offers DPoP ([`Login::with_dpop`]).

use super::bearer::BearerMiddleware;
use super::client;
use anyhow::{Context, bail};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest_middleware::ClientWithMiddleware;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokenkeeper::classify::Classifier;
use tokenkeeper::dpop::DpopKey;
use tokenkeeper::keyed::Key;
use tokenkeeper::secrecy::ExposeSecret;
use tokenkeeper::{RefreshMode, Session, Sessions, TokenSet, refresh};

/// Which client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Contender {
    /// Bare reqwest.
    Bare,
    /// reqwest-middleware, no middleware.
    Stack,
    /// reqwest-middleware with a hand-written bearer middleware.
    Bearer,
    /// reqwest-middleware with tokenkeeper.
    Tokenkeeper,
    /// reqwest-middleware with tokenkeeper's keyed middleware ([`KEYS`] keys).
    Keyed,
    /// reqwest-middleware with tokenkeeper, a DPoP-bound token: a signed proof per request.
    Dpop,
}

/// Keys of the [`Contender::Keyed`] collection.
pub const KEYS: u64 = 100;

impl Contender {
    /// Every contender, in the order the tables list them.
    pub const ALL: [Contender; 4] = [
        Contender::Bare,
        Contender::Stack,
        Contender::Bearer,
        Contender::Tokenkeeper,
    ];

    /// The contenders whose instructions are counted: [`ALL`](Self::ALL) and the keyed
    /// middleware.
    pub const COUNTED: [Contender; 6] = [
        Contender::Bare,
        Contender::Stack,
        Contender::Bearer,
        Contender::Tokenkeeper,
        Contender::Keyed,
        Contender::Dpop,
    ];

    /// What share of the planned requests this contender sends under callgrind: a tenth for
    /// DPoP, whose proof (one P-256 signature, about 2 million instructions) makes each request
    /// some 25 times as long to simulate. The counts per request do not depend on how many.
    pub fn request_divisor(self) -> usize {
        match self {
            Contender::Dpop => 10,
            _ => 1,
        }
    }

    /// The column heading.
    pub fn label(self) -> &'static str {
        match self {
            Contender::Bare => "bare reqwest",
            Contender::Stack => "reqwest-middleware, no middleware",
            Contender::Bearer => "hand-written bearer middleware",
            Contender::Tokenkeeper => "tokenkeeper",
            Contender::Keyed => "tokenkeeper, keyed (100 keys)",
            Contender::Dpop => "tokenkeeper, DPoP",
        }
    }

    /// The value of `--client` that selects it.
    pub fn arg(self) -> &'static str {
        match self {
            Contender::Bare => "bare",
            Contender::Stack => "stack",
            Contender::Bearer => "bearer",
            Contender::Tokenkeeper => "tokenkeeper",
            Contender::Keyed => "keyed",
            Contender::Dpop => "dpop",
        }
    }
}

/// A signed-in session at the reference server and the header its token makes: what every
/// contender is built from, so all of them send the same token.
#[derive(Debug, Clone)]
pub struct Login {
    session: Session,
    header: HeaderValue,
    /// [`KEYS`] keys signed in with the same tokens, for [`Contender::Keyed`].
    keyed: Sessions<u64>,
    /// A DPoP-bound login, for [`Contender::Dpop`] ([`with_dpop`](Self::with_dpop)).
    dpop: Option<Session>,
}

impl Login {
    /// Signs in at `base_url` (json contract, proactive mode).
    pub async fn new(base_url: &str) -> anyhow::Result<Self> {
        let session = client::signed_in(base_url, RefreshMode::default()).await?;
        let token = session.access_token().await?;
        let header = HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
            .context("the access token is not a header value")?;
        let keyed = Sessions::builder()
            .session(
                Session::builder()
                    .refresher(refresh::Json::new(&format!("{base_url}/refresh/token"))?)
                    .attach_to([base_url])
                    .classifier(Classifier::well_known()),
            )
            .build()?;
        let tokens = session.credential().await?.tokens().clone();
        for key in 0..KEYS {
            keyed.sign_in(key, tokens.clone()).await?;
        }
        Ok(Self {
            session,
            header,
            keyed,
            dpop: None,
        })
    }

    /// Adds a DPoP-bound login at `base_url` (oauth2 contract, a fresh ES256 key): the password
    /// grant with a proof, as an application's login sends it. The server must offer DPoP
    /// (`__bench-server --dpop`).
    pub async fn with_dpop(mut self, base_url: &str) -> anyhow::Result<Self> {
        let key = DpopKey::generate();
        let token_url = format!("{base_url}/oauth2/token");
        let proof = key.proof("POST", &token_url.parse()?, None)?;
        let response = client::http(1)?
            .post(&token_url)
            .header("dpop", proof)
            .form(&[
                ("grant_type", "password"),
                ("username", tokenkeeper_server::client::USERNAME),
                ("password", tokenkeeper_server::client::PASSWORD),
            ])
            .send()
            .await
            .context("the DPoP login")?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            bail!("the DPoP login was refused: {status} (does the server offer DPoP?)");
        }
        let tokens = TokenSet::from_response(&body)?.with_dpop_key(key);
        if !tokens.is_dpop_bound() {
            bail!("the DPoP login returned bearer tokens");
        }
        let session = Session::builder()
            .refresher(refresh::OAuth2::new(&token_url)?.client_id("bench"))
            .attach_to([base_url])
            .classifier(Classifier::well_known())
            .build()?;
        session.sign_in(tokens).await?;
        self.dpop = Some(session);
        Ok(self)
    }

    /// The session, for figures read from it.
    pub fn session(&self) -> &Session {
        &self.session
    }
}

/// One contender, ready to send.
#[derive(Debug, Clone)]
pub enum Client {
    /// See [`Contender::Bare`].
    Bare {
        /// The client.
        http: reqwest::Client,
        /// `Bearer …`.
        header: HeaderValue,
    },
    /// See [`Contender::Stack`].
    Stack {
        /// The client.
        client: ClientWithMiddleware,
        /// `Bearer …`.
        header: HeaderValue,
    },
    /// [`Contender::Bearer`], [`Contender::Tokenkeeper`] or [`Contender::Dpop`]: the middleware
    /// attaches the header (and the proof).
    Middleware(ClientWithMiddleware),
    /// [`Contender::Keyed`]: the keyed middleware; requests go to the keys in turn.
    Keyed {
        /// The client.
        client: ClientWithMiddleware,
        /// The key of the next request.
        next: Arc<AtomicU64>,
    },
}

impl Client {
    /// `contender` on a fresh `reqwest::Client` with a pool for `connections`.
    pub fn new(contender: Contender, login: &Login, connections: usize) -> anyhow::Result<Self> {
        let http = client::http(connections)?;
        let header = login.header.clone();
        Ok(match contender {
            Contender::Bare => Client::Bare { http, header },
            Contender::Stack => Client::Stack {
                client: reqwest_middleware::ClientBuilder::new(http).build(),
                header,
            },
            Contender::Bearer => Client::Middleware(
                reqwest_middleware::ClientBuilder::new(http)
                    .with(BearerMiddleware::new(header))
                    .build(),
            ),
            Contender::Tokenkeeper => {
                Client::Middleware(client::through(&login.session, http, None))
            }
            Contender::Keyed => Client::Keyed {
                client: reqwest_middleware::ClientBuilder::new(http)
                    .with(login.keyed.middleware())
                    .build(),
                next: Arc::default(),
            },
            Contender::Dpop => {
                let session = login
                    .dpop
                    .as_ref()
                    .context("no DPoP login (Login::with_dpop)")?;
                Client::Middleware(client::through(session, http, None))
            }
        })
    }

    /// Sends one GET and reads the answer; whether it was a 2xx read to the end.
    pub async fn get(&self, url: &str) -> bool {
        let response = match self {
            Client::Bare { http, header } => http
                .get(url)
                .header(AUTHORIZATION, header.clone())
                .send()
                .await
                .ok(),
            Client::Stack { client, header } => client
                .get(url)
                .header(AUTHORIZATION, header.clone())
                .send()
                .await
                .ok(),
            Client::Middleware(client) => client.get(url).send().await.ok(),
            Client::Keyed { client, next } => {
                let key = next.fetch_add(1, Ordering::Relaxed) % KEYS;
                client.get(url).with_extension(Key(key)).send().await.ok()
            }
        };
        match response {
            Some(response) => {
                let ok = response.status().is_success();
                response.bytes().await.is_ok() && ok
            }
            None => false,
        }
    }
}
