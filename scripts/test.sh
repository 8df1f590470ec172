#!/usr/bin/env bash
# Runs every test of the workspace, after installing and starting what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

# Redis for the RedisStore tests (installed from Debian's packages when missing).
if [ -f scripts/redis.sh ]; then
  eval "$(bash scripts/redis.sh)"
fi

cargo test --workspace --all-features
