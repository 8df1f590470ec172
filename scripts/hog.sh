#!/usr/bin/env bash
# Saturates the CPU with busy loops so timing-dependent tests can be run under load:
#
#     bash scripts/hog.sh start [N]    # N busy-loop processes (default: one per core)
#     bash scripts/hog.sh stop         # ends exactly the processes `start` recorded
#     bash scripts/hog.sh run [N] -- COMMAND...   # start, run COMMAND, stop (also on failure)
#
# The busy loops' process ids are kept in a state file ($TMPDIR, one per checkout), so `stop`
# ends only what `start` started. Each loop also ends by itself after TOKENKEEPER_HOG_MAX_SECS
# (default 1800) in case `stop` never runs (a killed CI job).
set -euo pipefail

state="${TMPDIR:-/tmp}/tokenkeeper-hog-$(cd "$(dirname "$0")/.." && pwd | cksum | cut -d' ' -f1).pids"
max_secs="${TOKENKEEPER_HOG_MAX_SECS:-1800}"

say() { printf 'hog.sh: %s\n' "$*" >&2; }

start() {
  local n="${1:-$(nproc 2>/dev/null || echo 2)}"
  if [ -s "$state" ]; then
    say "already running ($(wc -l <"$state") loops); stop them first"
    exit 1
  fi
  : >"$state"
  for _ in $(seq 1 "$n"); do
    # A shell loop that spins until its deadline; no I/O, no sleeping.
    bash -c 'end=$((SECONDS + $1)); while [ "$SECONDS" -lt "$end" ]; do :; done' hog "$max_secs" &
    echo $! >>"$state"
  done
  disown -a
  say "started $n busy loops: $(tr '\n' ' ' <"$state")"
}

stop() {
  if [ ! -s "$state" ]; then
    say "no busy loops recorded"
    rm -f "$state"
    return 0
  fi
  while read -r pid; do
    kill "$pid" 2>/dev/null || true
  done <"$state"
  say "stopped busy loops: $(tr '\n' ' ' <"$state")"
  rm -f "$state"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop ;;
  run)
    shift
    n=""
    if [ "${1:-}" != "--" ]; then n="$1"; shift; fi
    [ "${1:-}" = "--" ] || { say "usage: hog.sh run [N] -- COMMAND..."; exit 2; }
    shift
    start "$n"
    trap stop EXIT
    "$@"
    ;;
  *)
    say "usage: hog.sh start [N] | stop | run [N] -- COMMAND..."
    exit 2
    ;;
esac
