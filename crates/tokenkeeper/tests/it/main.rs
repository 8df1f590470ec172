//! The library's integration tests, in one test binary (one link instead of one per file): real
//! HTTP against the reference server on 127.0.0.1, real stores, real child processes; no mocks.
//!
//! One module per concern. Run one of them with a filter, e.g.
//! `cargo test -p tokenkeeper --all-features --test it file_store_processes::`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Shared set-up.
mod article_header;
mod child;
mod common;
#[cfg(feature = "dpop")]
mod dpop_env;
mod keyed_env;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod keyed_worker;
mod oidc_env;
#[cfg(feature = "postgres")]
mod postgres_env;
#[cfg(feature = "redis")]
mod redis_env;
mod store_worker;

// The suites.
mod contracts;
mod discovery;
#[cfg(feature = "dpop")]
mod dpop;
#[cfg(feature = "dpop")]
mod dpop_oidc;
#[cfg(feature = "dpop")]
mod dpop_processes;
#[cfg(feature = "dpop")]
mod dpop_reference;
mod failures;
mod file_store;
mod file_store_processes;
mod keyed;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod keyed_processes;
#[cfg(all(feature = "tower", feature = "reqwest"))]
mod keyed_tower;
mod loopback;
#[cfg(feature = "metrics")]
mod metrics;
mod oidc_interop;
#[cfg(feature = "postgres")]
mod postgres_store;
#[cfg(feature = "postgres")]
mod postgres_store_processes;
#[cfg(feature = "redis")]
mod redis_store;
#[cfg(feature = "redis")]
mod redis_store_processes;
mod replay;
mod resilience;
mod safety;
mod security;
mod seed_contracts;
mod state_machine;
mod store_conformance;
#[cfg(all(feature = "tonic", feature = "reqwest"))]
mod tonic;
#[cfg(all(feature = "tower", feature = "reqwest"))]
mod tower;

/// Tests that load both cores with child processes or provider bursts ([`heavy`]) run alone
/// among the load-making ones ([`load`]), so each one's timing is its own. Separate test binaries
/// gave that between files for free; one binary runs every module's tests side by side.
static GATE: ::tokio::sync::RwLock<()> = ::tokio::sync::RwLock::const_new(());

/// Held by a test that loads both cores (several child processes, bursts at the provider) for
/// its whole run: no other heavy test and no [`load`] runs meanwhile.
pub async fn heavy() -> ::tokio::sync::RwLockWriteGuard<'static, ()> {
    GATE.write().await
}

/// Held while a test sends a burst of concurrent requests: bursts may overlap each other (as
/// they did inside one file before), never a [`heavy`] test.
pub async fn load() -> ::tokio::sync::RwLockReadGuard<'static, ()> {
    GATE.read().await
}
