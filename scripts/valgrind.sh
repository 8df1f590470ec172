#!/usr/bin/env bash
# Makes valgrind (for `tokenkeeper bench`'s instruction counts, callgrind) available: installs it
# from Debian's packages when it is not on PATH. Idempotent; prints the version on stderr.
#
#     bash scripts/valgrind.sh && cargo run --release -p tokenkeeper-cli -- bench
#
# The CI smoke run (`bench --quick`) does not need it: without valgrind the instruction counts
# are skipped with a note in the report.
set -euo pipefail

say() { printf 'valgrind.sh: %s\n' "$*" >&2; }

if ! command -v valgrind >/dev/null 2>&1; then
  say "installing valgrind from Debian's packages"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq valgrind >&2
fi
say "$(valgrind --version)"
