#!/usr/bin/env bash
# Runs every test of the workspace, after installing and starting what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

# Redis for the RedisStore tests (installed from Debian's packages when missing).
if [ -f scripts/redis.sh ]; then
  eval "$(bash scripts/redis.sh)"
fi

# PostgreSQL for the PostgresStore tests (installed from Debian's packages when missing; a
# throw-away cluster on 127.0.0.1:6393, left running like Redis for the next run).
if [ -f scripts/postgres.sh ]; then
  eval "$(bash scripts/postgres.sh)"
fi

# The OpenID provider for the interop suite (oidc-provider from npm, installed with npm ci from
# scripts/oidc/package-lock.json). One this script starts is stopped when it ends; one that was
# already running is left alone.
if [ -f scripts/oidc.sh ]; then
  if ! bash scripts/oidc.sh status; then
    trap 'bash scripts/oidc.sh stop' EXIT
  fi
  eval "$(bash scripts/oidc.sh)"
fi

cargo test --workspace --all-features
