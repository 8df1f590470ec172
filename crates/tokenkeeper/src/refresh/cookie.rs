use super::cookie_syntax::{default_path, is_cookie_name, is_cookie_value, set_cookie_scope};
use super::endpoint::{Answer, Endpoint, plain_client, string_at};
use super::json::checked;
use super::{RefreshError, Refresher};
use crate::config_error::ConfigError;
use crate::token::TokenError;
use crate::token::TokenSet;
use http::HeaderMap;
use reqwest::cookie::{CookieStore, Jar};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// Cookie refresh: the refresh token lives in an HttpOnly cookie; `POST {url}` (the cookie jar
/// sends it) → `{"accessToken": …}` and a `Set-Cookie` with the rotated refresh token, which the
/// jar keeps.
///
/// Token sets of this contract carry no refresh token of their own: the jar is the refresh
/// token's only home, and it is sent only where the cookie's `Path` allows. There are two ways
/// to put the first refresh cookie in the jar:
///
/// - **Sign in through the jar** with [`Cookie::login`]: the login request goes out on the
///   strategy's own client ([`Cookie::client`]), so the jar sees the login response's
///   `Set-Cookie`. It returns the token set to sign the session in with.
/// - **Seed the jar** from a refresh token you already hold (a login answered elsewhere, a
///   token kept from an earlier run) with [`Cookie::seed_refresh_cookie`]: one call, with the
///   scope chosen for the refresh endpoint.
///
/// ```no_run
/// use tokenkeeper::{refresh, Session};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let refresher = refresh::Cookie::with_empty_jar("https://api.example.com/v3/jwt/reissue")?;
/// let tokens = refresher
///     .login(|http| {
///         http.post("https://api.example.com/login")
///             .json(&serde_json::json!({"username": "demo", "password": "demo"}))
///     })
///     .await?;
/// let session = Session::builder()
///     .refresher(refresher)
///     .attach_to(["https://api.example.com"])
///     .build()?;
/// session.sign_in(tokens).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cookie {
    endpoint: Endpoint,
    jar: Arc<Jar>,
    access_at: String,
    /// The cookie [`seed_refresh_cookie`](Cookie::seed_refresh_cookie) put in the jar, until the
    /// server sets its own. Shared by clones: they share the jar too.
    seeded: Arc<Mutex<Option<Seeded>>>,
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the jar: its `Debug` prints every cookie's value, the refresh token included.
        f.debug_struct("Cookie")
            .field("url", &self.endpoint.url.as_str())
            .field("access_at", &self.access_at)
            .finish_non_exhaustive()
    }
}

/// Why signing in through the strategy's jar, or seeding it, failed. Never carries a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CookieError {
    /// The login request could not be sent or its answer not read.
    #[error("login request failed: {0}")]
    Network(String),
    /// The login endpoint answered with a status other than 2xx.
    #[error("login refused: HTTP {status}")]
    Refused {
        /// The HTTP status code.
        status: u16,
    },
    /// The login answer is not a token response (no usable `accessToken`/`access_token`).
    #[error("the login answer holds no usable tokens: {0}")]
    Tokens(#[from] TokenError),
    /// After the login, the jar holds no cookie that the refresh endpoint would be sent: the
    /// login response set none, or set it for another host or path, or the request was not sent
    /// with [`Cookie::client`].
    #[error("the login response set no cookie that the refresh endpoint would receive")]
    NoRefreshCookie,
    /// The cookie name is not an RFC 6265 token.
    #[error("`{0}` is not a valid cookie name")]
    InvalidCookieName(String),
    /// The refresh token cannot be a cookie value (empty, or characters RFC 6265 forbids there).
    #[error("the refresh token cannot be sent as a cookie value")]
    InvalidCookieValue,
}

impl Cookie {
    /// A refresher for this endpoint, sending the cookies in `jar`.
    ///
    /// Share `jar` with the client that signs in, or sign in with [`Cookie::login`].
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// let jar = Arc::new(reqwest::cookie::Jar::default());
    /// let login_client = reqwest::Client::builder().cookie_provider(Arc::clone(&jar)).build()?;
    /// let refresher = tokenkeeper::refresh::Cookie::new("https://api.example.com/v3/jwt/reissue", jar)?;
    /// # let _ = (login_client, refresher);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(url: &str, jar: Arc<Jar>) -> Result<Self, ConfigError> {
        let mut endpoint = Endpoint::new(url)?;
        endpoint.client = plain_client(Some(Arc::clone(&jar)))?;
        Ok(Self {
            endpoint,
            jar,
            access_at: "/accessToken".into(),
            seeded: Arc::default(),
        })
    }

    /// A refresher for this endpoint with a jar of its own, to fill with [`Cookie::login`] or
    /// [`Cookie::seed_refresh_cookie`].
    pub fn with_empty_jar(url: &str) -> Result<Self, ConfigError> {
        Self::new(url, Arc::default())
    }

    /// JSON pointer to the new access token (default `/accessToken`).
    pub fn access_token_at(mut self, pointer: impl Into<String>) -> Self {
        self.access_at = pointer.into();
        self
    }

    /// The HTTP client to send with. It must carry this strategy's [`jar`](Cookie::jar), and
    /// best follow no redirects.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.endpoint.client = client;
        self
    }

    /// The client the strategy sends with: it carries the [`jar`](Cookie::jar) and follows no
    /// redirects. Send the login request with it (or use [`Cookie::login`]) so the jar sees the
    /// login response's `Set-Cookie`. Not for API calls: those go through the session's
    /// middleware.
    pub fn client(&self) -> &reqwest::Client {
        &self.endpoint.client
    }

    /// The cookie jar the refresh token lives in.
    pub fn jar(&self) -> &Arc<Jar> {
        &self.jar
    }

    /// Signs in through the strategy's jar: sends the request `build` makes on
    /// [`Cookie::client`], checks that the answer is a 2xx token response and that the jar now
    /// holds a cookie for the refresh endpoint, and returns the token set to pass to
    /// [`Session::sign_in`](crate::Session::sign_in). A refresh token in the login body is
    /// dropped: the cookie is its one home.
    ///
    /// The check makes a wrong start loud at login rather than at the first expiry: a login
    /// whose `Set-Cookie` is scoped to another host or path gives
    /// [`CookieError::NoRefreshCookie`].
    ///
    /// ```no_run
    /// # async fn example(refresher: tokenkeeper::refresh::Cookie) -> Result<(), tokenkeeper::refresh::CookieError> {
    /// let tokens = refresher
    ///     .login(|http| http.post("https://api.example.com/login").form(&[("user", "demo"), ("password", "demo")]))
    ///     .await?;
    /// # let _ = tokens; Ok(()) }
    /// ```
    pub async fn login<F>(&self, build: F) -> Result<TokenSet, CookieError>
    where
        F: FnOnce(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        let answer =
            Answer::fetch(build(&self.endpoint.client))
                .await
                .map_err(|error| match error {
                    RefreshError::Transient { reason, .. } => CookieError::Network(reason),
                    other => CookieError::Network(other.to_string()),
                })?;
        if !answer.status.is_success() {
            return Err(CookieError::Refused {
                status: answer.status.as_u16(),
            });
        }
        let tokens = TokenSet::from_response(&answer.body)?.with_refresh_secret(None);
        if self.jar.cookies(&self.endpoint.url).is_none() {
            return Err(CookieError::NoRefreshCookie);
        }
        Ok(tokens)
    }

    /// Puts a refresh token you already hold in the jar, as the cookie `name` that the server
    /// expects, scoped for the refresh endpoint:
    ///
    /// - host-only for the endpoint's host (no `Domain`): no other host receives it,
    /// - `Path` = the endpoint's directory (`/v3/jwt` for `/v3/jwt/reissue`, RFC 6265's default
    ///   path for that URL): the API's other routes do not receive it,
    /// - `Secure` exactly when the endpoint is https (plain http is allowed only to loopback),
    /// - `HttpOnly`.
    ///
    /// If the server's first rotated `Set-Cookie` for `name` has another scope (say `Path=/`),
    /// the seeded cookie is removed then, so the jar never sends the old token beside the new
    /// one. Seed instead of signing in through the jar, not after it.
    ///
    /// ```
    /// let refresher = tokenkeeper::refresh::Cookie::with_empty_jar("https://api.example.com/v3/jwt/reissue")?;
    /// refresher.seed_refresh_cookie("refreshToken", "kept-from-the-last-run")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seed_refresh_cookie(
        &self,
        name: &str,
        refresh_token: impl Into<SecretString>,
    ) -> Result<(), CookieError> {
        let refresh_token = refresh_token.into();
        if !is_cookie_name(name) {
            return Err(CookieError::InvalidCookieName(name.to_owned()));
        }
        if !is_cookie_value(refresh_token.expose_secret()) {
            return Err(CookieError::InvalidCookieValue);
        }
        let url = &self.endpoint.url;
        let path = default_path(url);
        let secure = if url.scheme() == "https" {
            "; Secure"
        } else {
            ""
        };
        let cookie = SecretString::from(format!(
            "{name}={}; Path={path}; HttpOnly{secure}",
            refresh_token.expose_secret()
        ));
        self.jar.add_cookie_str(cookie.expose_secret(), url);
        let seeded = Seeded {
            name: name.to_owned(),
            path,
        };
        *self.seeded.lock().unwrap_or_else(PoisonError::into_inner) = Some(seeded);
        tracing::debug!(cookie = name, "refresh cookie seeded");
        Ok(())
    }

    /// After a refresh answer: once the server has set its own refresh cookie, the seeded one is
    /// either replaced (same scope) or removed here (another scope).
    fn forget_seed_once_replaced(&self, headers: &HeaderMap) {
        let mut guard = self.seeded.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(seeded) = guard.as_ref() else {
            return;
        };
        let url = &self.endpoint.url;
        let scopes: Vec<(String, Option<String>)> = headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(|value| set_cookie_scope(value, &seeded.name, url))
            .collect();
        if scopes.is_empty() {
            // The server did not rotate the cookie: the seeded one is still the live token.
            return;
        }
        let host = url.host_str().map(str::to_ascii_lowercase);
        let replaced = scopes
            .iter()
            .any(|(path, domain)| *path == seeded.path && (domain.is_none() || *domain == host));
        if !replaced {
            self.jar.add_cookie_str(
                &format!(
                    "{}=; Path={}; HttpOnly; Max-Age=0",
                    seeded.name, seeded.path
                ),
                url,
            );
            tracing::debug!(
                cookie = seeded.name,
                "seeded refresh cookie removed: the server set its own with another scope"
            );
        }
        *guard = None;
    }
}

/// The refresh cookie [`Cookie::seed_refresh_cookie`] put in the jar.
#[derive(Debug, Clone)]
struct Seeded {
    name: String,
    path: String,
}

#[async_trait::async_trait]
impl Refresher for Cookie {
    async fn refresh(&self, _current: &TokenSet) -> Result<TokenSet, RefreshError> {
        let request = self.endpoint.client.post(self.endpoint.url.clone());
        let answer = Answer::fetch(request).await?;
        // Whatever the answer, a `Set-Cookie` in it is already in the jar.
        self.forget_seed_once_replaced(&answer.headers);
        let json = answer.success()?.json()?;
        let access = string_at(&json, &self.access_at).ok_or_else(|| {
            RefreshError::InvalidResponse(format!("no access token at `{}`", self.access_at))
        })?;
        Ok(TokenSet::new(checked(access, "access token")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url;

    const REISSUE: &str = "http://127.0.0.1:8080/v3/jwt/reissue";

    fn cookie_header(jar: &Jar, url: &str) -> Option<String> {
        jar.cookies(&Url::parse(url).unwrap())
            .map(|value| value.to_str().unwrap().to_owned())
    }

    #[test]
    fn a_seeded_cookie_reaches_only_the_refresh_endpoint() {
        let refresher = Cookie::with_empty_jar(REISSUE).unwrap();
        refresher.seed_refresh_cookie("tk_refresh", "r-1").unwrap();
        let jar = refresher.jar();
        assert_eq!(
            cookie_header(jar, REISSUE).as_deref(),
            Some("tk_refresh=r-1")
        );
        assert_eq!(
            cookie_header(jar, "http://127.0.0.1:8080/v3/jwt/other").as_deref(),
            Some("tk_refresh=r-1")
        );
        assert_eq!(
            cookie_header(jar, "http://127.0.0.1:8080/api/items/1"),
            None
        );
        assert_eq!(
            cookie_header(jar, "http://127.0.0.2:8080/v3/jwt/reissue"),
            None
        );
    }

    #[test]
    fn a_seeded_cookie_is_secure_only_over_https() {
        let secure = Cookie::with_empty_jar("https://api.example.com/v3/jwt/reissue").unwrap();
        secure.seed_refresh_cookie("rt", "r-1").unwrap();
        assert_eq!(
            cookie_header(secure.jar(), "https://api.example.com/v3/jwt/reissue").as_deref(),
            Some("rt=r-1")
        );
        // A Secure cookie never goes over plain http to a non-loopback host.
        assert_eq!(
            cookie_header(secure.jar(), "http://api.example.com/v3/jwt/reissue"),
            None
        );
        // Over http to loopback the cookie is not Secure, and is sent.
        let plain = Cookie::with_empty_jar("http://localhost:8080/v3/jwt/reissue").unwrap();
        plain.seed_refresh_cookie("rt", "r-1").unwrap();
        assert_eq!(
            cookie_header(plain.jar(), "http://localhost:8080/v3/jwt/reissue").as_deref(),
            Some("rt=r-1")
        );
    }

    #[test]
    fn debug_output_never_shows_the_jar_contents() {
        let refresher = Cookie::with_empty_jar(REISSUE).unwrap();
        refresher
            .seed_refresh_cookie("rt", "refresh-secret-value")
            .unwrap();
        let printed = format!("{refresher:?}");
        assert!(!printed.contains("refresh-secret-value"), "{printed}");
        assert!(printed.contains("127.0.0.1"), "{printed}");
    }

    #[test]
    fn bad_names_and_values_are_refused() {
        let refresher = Cookie::with_empty_jar(REISSUE).unwrap();
        for name in ["", "a b", "a;b", "a=b", "ä"] {
            assert_eq!(
                refresher.seed_refresh_cookie(name, "r"),
                Err(CookieError::InvalidCookieName(name.to_owned()))
            );
        }
        for value in ["", "a b", "a;b", "a,b", "\"a\"", "a\\b", "ä"] {
            assert_eq!(
                refresher.seed_refresh_cookie("rt", value),
                Err(CookieError::InvalidCookieValue)
            );
        }
        assert_eq!(cookie_header(refresher.jar(), REISSUE), None);
        // The error never echoes the value.
        let error = refresher
            .seed_refresh_cookie("rt", "secret value")
            .unwrap_err();
        assert!(!error.to_string().contains("secret"));
    }

    #[test]
    fn a_seed_with_another_scope_is_removed_when_the_server_sets_its_own() {
        let refresher = Cookie::with_empty_jar(REISSUE).unwrap();
        refresher.seed_refresh_cookie("rt", "seeded").unwrap();
        // The server's rotation arrives scoped to `/`: the jar would hold both cookies.
        let mut headers = HeaderMap::new();
        let rotated = "rt=rotated; Path=/; HttpOnly".parse().unwrap();
        headers.append(http::header::SET_COOKIE, rotated);
        let url = Url::parse(REISSUE).unwrap();
        refresher
            .jar()
            .set_cookies(&mut headers.get_all(http::header::SET_COOKIE).iter(), &url);
        assert!(
            cookie_header(refresher.jar(), REISSUE)
                .unwrap()
                .contains("rt=seeded")
        );
        refresher.forget_seed_once_replaced(&headers);
        assert_eq!(
            cookie_header(refresher.jar(), REISSUE).as_deref(),
            Some("rt=rotated")
        );
        // Done once: later rotations are the server's business.
        assert!(refresher.seeded.lock().unwrap().is_none());
    }

    #[test]
    fn a_seed_in_the_servers_scope_is_simply_replaced() {
        let refresher = Cookie::with_empty_jar(REISSUE).unwrap();
        refresher.seed_refresh_cookie("rt", "seeded").unwrap();
        let mut headers = HeaderMap::new();
        headers.append(http::header::SET_COOKIE, "other=x; Path=/".parse().unwrap());
        // Not our cookie: the seed stays the live token.
        refresher.forget_seed_once_replaced(&headers);
        assert!(refresher.seeded.lock().unwrap().is_some());
        headers.append(
            http::header::SET_COOKIE,
            "rt=rotated; HttpOnly; SameSite=Strict; Path=/v3/jwt"
                .parse()
                .unwrap(),
        );
        let url = Url::parse(REISSUE).unwrap();
        refresher
            .jar()
            .set_cookies(&mut headers.get_all(http::header::SET_COOKIE).iter(), &url);
        refresher.forget_seed_once_replaced(&headers);
        let sent = cookie_header(refresher.jar(), REISSUE).unwrap();
        assert!(
            sent.contains("rt=rotated") && !sent.contains("seeded"),
            "{sent}"
        );
        assert!(refresher.seeded.lock().unwrap().is_none());
    }
}
