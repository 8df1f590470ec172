//! What attaching a credential costs, bearer and DPoP-bound, for callgrind: the per-request
//! work the adapters do before sending (the `Authorization` header, and for DPoP a fresh ES256
//! proof with `ath`) on a `reqwest::Request`, `N` times inside the one function callgrind
//! counts in.
//!
//! ```sh
//! cargo build --release -p tokenkeeper --features dpop --example dpop_attach_cost
//! for kind in bearer dpop; do
//!   valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*callgrind_measured_attach*' \
//!     --callgrind-out-file=/tmp/attach-$kind.out target/release/examples/dpop_attach_cost $kind 2000
//! done
//! callgrind_annotate /tmp/attach-bearer.out | grep 'PROGRAM TOTALS'   # over 2000 requests
//! ```

use std::hint::black_box;
use tokenkeeper::dpop::DpopKey;
use tokenkeeper::{Credential, Session, TokenSet, refresh};

#[inline(never)]
fn callgrind_measured_attach(credential: &Credential, url: &reqwest::Url, count: usize) -> usize {
    let mut bytes = 0;
    for _ in 0..count {
        let mut request = reqwest::Request::new(reqwest::Method::GET, url.clone());
        request
            .headers_mut()
            .insert("authorization", credential.header_value());
        if let Some(proof) = credential.dpop_proof(request.method(), request.url()) {
            match proof {
                Ok(proof) => {
                    request.headers_mut().insert("dpop", proof);
                }
                Err(error) => eprintln!("{error}"),
            }
        }
        bytes += black_box(&request).headers().len();
    }
    bytes
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "bearer".to_owned());
    let count: usize = args.next().map_or(Ok(2000), |n| n.parse())?;
    let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZW1vIiwiaWF0IjoxNzY0NjQwMDAwLCJqdGkiOiJhIn0.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU";
    let mut tokens = TokenSet::new(token).with_expires_in(std::time::Duration::from_secs(3600));
    if kind == "dpop" {
        tokens = tokens
            .with_dpop_bound(true)
            .with_dpop_key(DpopKey::generate());
    }
    let session = Session::builder()
        .refresher(refresh::from_fn(|_| async { Ok(TokenSet::new("unused")) }))
        .attach_to(["https://api.example.com"])
        .build()?;
    session.sign_in(tokens).await?;
    let credential = session.credential().await?;
    let url = reqwest::Url::parse("https://api.example.com/api/items/1")?;
    // Warm-up outside the count (first-use costs, the nonce map, caches).
    warm_up(&credential, &url);
    let bytes = callgrind_measured_attach(&credential, &url, count);
    println!("{kind}: {count} attaches ({bytes})");
    Ok(())
}

fn warm_up(credential: &Credential, url: &reqwest::Url) {
    for _ in 0..50 {
        let _ = credential.dpop_proof(&reqwest::Method::GET, url);
    }
}
