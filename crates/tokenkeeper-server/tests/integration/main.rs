//! Integration tests: real HTTP against the server on 127.0.0.1, no mocks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access;
mod admin;
mod bad_input;
mod client_credentials;
mod common;
mod concurrency;
mod connections;
mod contracts;
mod dpop;
mod faults;
mod grace;
mod sessions;
mod timing;
