#!/usr/bin/env bash
# Makes a certified OpenID provider (oidc-provider, from npm) available on loopback for the
# interop suite and the `oidc` example, and prints, on stdout, the line that points them at it:
#
#     eval "$(bash scripts/oidc.sh)"      # exports TOKENKEEPER_OIDC_ISSUER and
#                                         # TOKENKEEPER_OIDC_DPOP_ISSUER
#     bash scripts/oidc.sh stop           # shuts down the providers this script started
#     bash scripts/oidc.sh status         # exit status 0 when both providers answer
#
# Two instances of the same provider.mjs: the Bearer one (TOKENKEEPER_OIDC_ISSUER, or
# http://127.0.0.1:$TOKENKEEPER_OIDC_PORT, default port 6392) for the interop suite, and the DPoP
# one (TOKENKEEPER_OIDC_DPOP_ISSUER, or http://127.0.0.1:$TOKENKEEPER_OIDC_DPOP_PORT, default
# 6394; TOKENKEEPER_OIDC_DPOP=1: public DPoP-bound clients, nonces) for dpop_oidc.rs. A second
# instance rather than more clients on the first, so a Bearer provider started from an older
# configuration stays usable as it is.
#
# Idempotent: an issuer that already serves a discovery document for itself (the DPoP one also
# naming itself `"tokenkeeper_instance": "dpop"`) is reused. Otherwise the
# provider is installed into scripts/oidc/node_modules with `npm ci` from the committed
# package-lock.json (only when the lock file changed since the last install; nothing else is
# downloaded) and started in the background, bound to 127.0.0.1 only, with the configuration in
# scripts/oidc/provider.mjs. Needs Node.js and npm (tested with Node 20.20, on which
# oidc-provider 9 warns "Unsupported runtime": it is supported on Node 22 LTS and later, and works
# here). Everything but the export line goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
dir="$here/oidc"
port="${TOKENKEEPER_OIDC_PORT:-6392}"
issuer="${TOKENKEEPER_OIDC_ISSUER:-http://127.0.0.1:${port}}"
dpop_port="${TOKENKEEPER_OIDC_DPOP_PORT:-6394}"
dpop_issuer="${TOKENKEEPER_OIDC_DPOP_ISSUER:-http://127.0.0.1:${dpop_port}}"

say() { printf 'oidc.sh: %s\n' "$*" >&2; }

state_dir() { echo "${TMPDIR:-/tmp}/tokenkeeper-oidc-$1"; }

# Whether issuer $1 serves a discovery document naming itself (and, when $2 is given, with
# `tokenkeeper_instance` = $2).
ping() {
  command -v node >/dev/null 2>&1 || return 1
  ISSUER="$1" INSTANCE="${2:-}" node --input-type=module -e '
    const issuer = process.env.ISSUER;
    const instance = process.env.INSTANCE;
    try {
      const response = await fetch(`${issuer}/.well-known/openid-configuration`,
        { signal: AbortSignal.timeout(2000) });
      const document = await response.json();
      process.exit(document.issuer === issuer
        && (!instance || document.tokenkeeper_instance === instance) ? 0 : 1);
    } catch { process.exit(1); }' 2>/dev/null
}

# The pid in port $1's pid file, if that process is still a provider this script started.
our_pid() {
  local pid_file pid
  pid_file="$(state_dir "$1")/provider.pid"
  [ -f "$pid_file" ] || return 1
  pid="$(cat "$pid_file")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] &&
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'provider.mjs' && echo "$pid"
}

# Stops the provider this script started on port $1 ($2: its issuer, for the message).
stop() {
  local pid
  if pid="$(our_pid "$1")"; then
    kill "$pid"
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    rm -f "$(state_dir "$1")/provider.pid"
    say "stopped the provider (pid $pid) on $2"
  else
    say "no provider started by this script runs for $2"
  fi
}

if [ "${1:-}" = "status" ]; then
  ping "$issuer" && ping "$dpop_issuer" dpop
  exit
fi

if [ "${1:-}" = "stop" ]; then
  stop "$port" "$issuer"
  stop "$dpop_port" "$dpop_issuer"
  exit 0
fi

installed=
# npm ci only when the lock file changed since the last install (npm ci always starts afresh).
install() {
  [ -n "$installed" ] && return 0
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "Node.js and npm are required to run the OpenID provider"
    exit 1
  fi
  local stamp want
  stamp="$dir/node_modules/.tokenkeeper-lock.sha256"
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    say "installing oidc-provider with npm ci (scripts/oidc/package-lock.json)"
    (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
    echo "$want" >"$stamp"
  fi
  installed=1
}

# Makes issuer $2 answer on port $1, as instance $3 ("" or "dpop"): reuses it or starts it.
ensure() {
  local port="$1" issuer="$2" instance="$3" state log_file
  if ping "$issuer" "$instance"; then
    say "reusing the OpenID provider at ${issuer}"
    return 0
  fi
  case "$issuer" in
    "http://127.0.0.1:${port}" | "http://localhost:${port}") ;;
    *)
      say "${issuer} does not answer and is not this script's loopback address; not starting anything"
      exit 1
      ;;
  esac
  if [ -n "$instance" ] && ping "$issuer"; then
    say "${issuer} answers but is not the ${instance} instance (an older configuration?); stop it first"
    exit 1
  fi
  install
  state="$(state_dir "$port")"
  log_file="$state/provider.log"
  mkdir -p "$state"
  say "starting oidc-provider${instance:+ ($instance)} on ${issuer} (log in ${log_file})"
  # Its own session, stdin and output away from ours: `eval "$(...)"` waits for our stdout to close.
  TOKENKEEPER_OIDC_PORT="$port" TOKENKEEPER_OIDC_DPOP="$([ "$instance" = dpop ] && echo 1 || echo 0)" \
    setsid node "$dir/provider.mjs" </dev/null >"$log_file" 2>&1 &
  echo $! >"$state/provider.pid"
  for _ in $(seq 1 100); do
    if ping "$issuer" "$instance"; then
      say "the OpenID provider is up at ${issuer}"
      return 0
    fi
    if ! our_pid "$port" >/dev/null; then break; fi
    sleep 0.2
  done
  say "oidc-provider did not answer within 20 s; its log:"
  tail -n 20 "$log_file" >&2 || true
  exit 1
}

ensure "$port" "$issuer" ""
ensure "$dpop_port" "$dpop_issuer" dpop
echo "export TOKENKEEPER_OIDC_ISSUER=${issuer} TOKENKEEPER_OIDC_DPOP_ISSUER=${dpop_issuer}"
