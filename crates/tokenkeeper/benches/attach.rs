//! The attach fast path with a valid token: `session.credential()` and inserting its header into
//! a request, against inserting a precomputed header into the same request.
//!
//! `cargo bench -p tokenkeeper --bench attach`; `tokenkeeper bench` copies the medians into
//! BENCHMARKS.md. The credential future completes on its first poll when the token is valid,
//! so it is polled once (`now_or_never`) instead of going through an executor, which would
//! cost more than the thing measured.

// A benchmark whose set-up fails has nothing to measure: stopping loudly is right here.
#![allow(clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use std::hint::black_box;
use std::time::Duration;
use tokenkeeper::{Session, TokenSet, refresh};

fn attach(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _context = runtime.enter();
    let session = Session::builder()
        .refresher(refresh::from_fn(|_current: TokenSet| async {
            Ok(TokenSet::new("never-used"))
        }))
        .attach_to(["https://api.example.com"])
        .build()
        .expect("session");
    let tokens = TokenSet::new("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZW1vIn0.c2lnbmF0dXJl")
        .with_refresh_token("refresh")
        .with_expires_in(Duration::from_secs(3600));
    runtime.block_on(session.sign_in(tokens)).expect("sign in");
    let url = reqwest::Url::parse("https://api.example.com/items/1").expect("url");
    let mut request = reqwest::Request::new(reqwest::Method::GET, url);
    let precomputed =
        HeaderValue::from_static("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZW1vIn0.c2lnbmF0dXJl");

    let mut group = c.benchmark_group("attach");
    group.bench_function("credential_and_insert", |b| {
        b.iter(|| {
            let credential = session
                .credential()
                .now_or_never()
                .expect("a valid token is ready at once")
                .expect("signed in");
            request
                .headers_mut()
                .insert(AUTHORIZATION, credential.header_value());
            black_box(&request);
        })
    });
    group.bench_function("precomputed_insert", |b| {
        b.iter(|| {
            request
                .headers_mut()
                .insert(AUTHORIZATION, black_box(&precomputed).clone());
            black_box(&request);
        })
    });
    group.finish();
}

criterion_group!(benches, attach);
criterion_main!(benches);
