#!/usr/bin/env bash
# Saturates the CPU with busy loops so timing-dependent tests can be run under load:
#
#     bash scripts/hog.sh start [N]                # N busy loops (default: one per core)
#     bash scripts/hog.sh stop                     # ends the loops `start` recorded
#     bash scripts/hog.sh run [N] -- COMMAND...    # start, run COMMAND, stop (also on failure)
#
# The loops' process ids are kept in a state file (one per checkout) and `stop` ends only those,
# after checking each still is one of our loops (named `tokenkeeper-hog`), so a recycled process
# id is never signalled. Each loop also ends by itself after TOKENKEEPER_HOG_MAX_SECS (default
# 1800) in case `stop` never runs (a killed CI job).
set -euo pipefail

checkout="$(cd "$(dirname "$0")/.." && pwd)"
state="${TMPDIR:-/tmp}/tokenkeeper-hog-$(printf '%s' "$checkout" | cksum | cut -d' ' -f1).pids"
max_secs="${TOKENKEEPER_HOG_MAX_SECS:-1800}"
name="tokenkeeper-hog"

say() { printf 'hog.sh: %s\n' "$*" >&2; }

ours() { # pid -> whether it is alive and one of our loops
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q "$name"
}

start() {
  local n="${1:-}"
  if [ -z "$n" ]; then n="$(nproc 2>/dev/null || echo 2)"; fi
  if [ -s "$state" ]; then
    while read -r pid; do
      if ours "$pid"; then
        say "busy loops from an earlier start are still running; run \`bash scripts/hog.sh stop\`"
        exit 1
      fi
    done <"$state"
  fi
  : >"$state"
  for _ in $(seq 1 "$n"); do
    # Spins on shell arithmetic until its deadline: no I/O, no sleeping.
    bash -c 'end=$((SECONDS + $1)); while [ "$SECONDS" -lt "$end" ]; do :; done' "$name" "$max_secs" &
    echo $! >>"$state"
  done
  say "started $n busy loops: $(tr '\n' ' ' <"$state")"
}

stop() {
  if [ ! -s "$state" ]; then
    rm -f "$state"
    say "no busy loops recorded"
    return 0
  fi
  local stopped=""
  while read -r pid; do
    if ours "$pid"; then
      kill "$pid" 2>/dev/null || true
      stopped="$stopped $pid"
    fi
  done <"$state"
  rm -f "$state"
  say "stopped busy loops:${stopped:- none were running}"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop ;;
  run)
    shift
    n=""
    if [ "${1:-}" != "--" ]; then
      n="${1:-}"
      shift
    fi
    if [ "${1:-}" != "--" ]; then
      say "usage: hog.sh run [N] -- COMMAND..."
      exit 2
    fi
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
