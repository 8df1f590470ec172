//! What a virtual user asks the API for, and how it ended.

use crate::reference_client::ReferenceClient;
use rand::Rng;
use reqwest::StatusCode;
use serde::Serialize;

/// One API request of the storm: read an item, or create one with a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiCall {
    /// `GET /api/items/{id}`.
    Get {
        /// The item id.
        id: u32,
    },
    /// `POST /api/items` with a JSON body (a request that must not be sent twice for nothing).
    Post {
        /// The item to create.
        body: serde_json::Value,
    },
}

impl ApiCall {
    /// A random call for `user`: `post_ratio` of them are POSTs.
    pub fn random(rng: &mut impl Rng, user: usize, sequence: u64, post_ratio: f64) -> Self {
        if rng.random_bool(post_ratio.clamp(0.0, 1.0)) {
            ApiCall::Post {
                body: serde_json::json!({
                    "name": format!("note {sequence} of user {user}"),
                    "user": user,
                    "sequence": sequence,
                }),
            }
        } else {
            ApiCall::Get {
                id: rng.random_range(1..=10_000),
            }
        }
    }

    /// The request, with `Authorization: Bearer <access>` when `access` is given.
    pub fn request(
        &self,
        wire: &ReferenceClient,
        access: Option<&str>,
    ) -> reqwest::Result<reqwest::Request> {
        let builder = match self {
            ApiCall::Get { id } => wire.http().get(wire.url(&format!("/api/items/{id}"))),
            ApiCall::Post { body } => wire.http().post(wire.url("/api/items")).json(body),
        };
        match access {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
        .build()
    }
}

/// Why a request failed, as the virtual user saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The final answer was a 401 (after the one retry, or when the client gave up).
    Unauthorized,
    /// The session was over: the refresh was refused (or failed, for the baselines, which log
    /// out on any refresh error) or there was no token; the user is sent back to login.
    LoggedOut,
    /// The refresh endpoint could not be reached in time; the tokens were kept.
    RefreshUnavailable,
    /// Any other non-success status.
    OtherStatus,
    /// The request could not be sent or its answer not read.
    Transport,
}

impl Failure {
    /// Every reason, in table order.
    pub const ALL: [Failure; 5] = [
        Failure::Unauthorized,
        Failure::LoggedOut,
        Failure::RefreshUnavailable,
        Failure::OtherStatus,
        Failure::Transport,
    ];

    /// A short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Failure::Unauthorized => "401",
            Failure::LoggedOut => "logged out",
            Failure::RefreshUnavailable => "refresh unavailable",
            Failure::OtherStatus => "other status",
            Failure::Transport => "transport",
        }
    }

    /// The failure for a final status that is not a success.
    pub fn from_status(status: StatusCode) -> Result<(), Failure> {
        if status.is_success() {
            Ok(())
        } else if status == StatusCode::UNAUTHORIZED {
            Err(Failure::Unauthorized)
        } else {
            Err(Failure::OtherStatus)
        }
    }
}

/// How one request ended.
pub type Outcome = Result<(), Failure>;

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn the_mix_follows_the_post_ratio() {
        let mut rng = StdRng::seed_from_u64(7);
        let posts = (0..1000)
            .filter(|i| matches!(ApiCall::random(&mut rng, 1, *i, 0.3), ApiCall::Post { .. }))
            .count();
        assert!((200..400).contains(&posts), "{posts}");
        let none = (0..100)
            .filter(|i| matches!(ApiCall::random(&mut rng, 1, *i, 0.0), ApiCall::Post { .. }))
            .count();
        assert_eq!(none, 0);
    }

    #[test]
    fn statuses_map_to_failures() {
        assert_eq!(Failure::from_status(StatusCode::OK), Ok(()));
        assert_eq!(
            Failure::from_status(StatusCode::UNAUTHORIZED),
            Err(Failure::Unauthorized)
        );
        assert_eq!(
            Failure::from_status(StatusCode::BAD_GATEWAY),
            Err(Failure::OtherStatus)
        );
    }
}
