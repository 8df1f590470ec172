#!/usr/bin/env bash
# Runs every multi-process and timing-dependent test again while busy loops keep every core
# saturated (scripts/hog.sh), the condition under which races between processes, lock leases and
# token deadlines show up. CI runs it after the normal test run; run it yourself the same way:
#
#     bash scripts/test-under-load.sh            # one busy loop per core
#     TOKENKEEPER_HOG=4 bash scripts/test-under-load.sh
#
# The test binaries are the ones `scripts/test.sh` builds (same cargo flags), so nothing is
# rebuilt. Pure tests (parsing, security rules, the server's input validation) are not rerun.
# libtest's default parallelism is kept: the hog adds load on top of an ordinary run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Redis for the RedisStore tests (installed from Debian's packages when missing).
if [ -f scripts/redis.sh ]; then
  eval "$(bash scripts/redis.sh)"
fi
# PostgreSQL for the PostgresStore tests (installed from Debian's packages when missing).
if [ -f scripts/postgres.sh ]; then
  eval "$(bash scripts/postgres.sh)"
fi
# oidc-provider's two instances for the DPoP interop tests (npm ci when missing).
if [ -f scripts/oidc.sh ]; then
  eval "$(bash scripts/oidc.sh)"
fi

# The library's integration tests are one binary (`--test it`), filtered to the modules with
# several processes, short token lifetimes, lock TTLs, latencies or timeouts (a filter matches
# test paths that contain it, so `contracts::` covers `seed_contracts::` too).
modules=(
  contracts::             # bursts and late 401s against a server with latency, both adapters
  failures::              # refresh timeouts, hanging refreshes, cancelled waiters
  safety::                # logins, Retry-After, per-route refusals, bounded waits
  seed_contracts::        # the seeds' contracts, bursts at expiry
  resilience::            # proactive refresh deadlines, backoff, Retry-After
  state_machine::         # interleavings of refreshes, sign-in/out and cancellation
  tower:: tonic::         # replay, streamed bodies and readiness through the tower layer, tonic
  file_store::            # store failures and stalls under live sessions
  file_store_processes::  # real processes sharing one file, kill -9
  redis_store::           # lock TTL, renewal, fencing, hung Redis
  redis_store_processes:: # real processes sharing one Redis
  postgres_store::        # lease expiry and renewal, fencing, dropped connections
  postgres_store_processes:: # real processes sharing one PostgreSQL row
  store_conformance::     # every store: lock, leases, kill -9 of a holder, dropped connections
  metrics::               # refresh outcomes at expiry, lost answers, adoption (feature metrics)
  dpop:: dpop_reference:: # DPoP bursts at expiry and nonce demands (feature dpop)
  dpop_processes::        # real processes sharing one DPoP key through each store (feature dpop)
  dpop_oidc::             # DPoP against oidc-provider: bursts at expiry, nonce demands (feature dpop)
  keyed:: keyed_tower::   # many logins: bursts over expired keys, eviction during a refresh
  keyed_processes::       # real processes sharing 200 keys on Redis and PostgreSQL, kill -9
)
# The CLI's test binaries with several processes or short tokens.
targets=(
  shared_store          # the CLI bench's processes (the test that was flaky under load)
  demo                  # the demo's storm with 1 s tokens
)
args=()
for target in "${targets[@]}"; do args+=(--test "$target"); done

started=$SECONDS
bash scripts/hog.sh run "${TOKENKEEPER_HOG:-}" -- cargo test --workspace --all-features --test it -- "${modules[@]}"
bash scripts/hog.sh run "${TOKENKEEPER_HOG:-}" -- cargo test --workspace --all-features "${args[@]}"
printf 'test-under-load.sh: %d s with %s busy loops\n' "$((SECONDS - started))" \
  "${TOKENKEEPER_HOG:-$(nproc 2>/dev/null || echo 2)}" >&2
