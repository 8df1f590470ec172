//! The reference server's four contracts as a hand-written client speaks them: log in, refresh,
//! and nothing else.
//!
//! The baselines use this (they must not use tokenkeeper), and every contender signs in through
//! it so all of them start from the same login call. It is the server's own client
//! ([`tokenkeeper_server::client`]), named for its job here.

pub use tokenkeeper_server::client::{Client as ReferenceClient, Login, Pair, RefreshFailure};
