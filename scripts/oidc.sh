#!/usr/bin/env bash
# Makes a certified OpenID provider (oidc-provider, from npm) available on loopback for the
# interop suite and the `oidc` example, and prints, on stdout, the line that points them at it:
#
#     eval "$(bash scripts/oidc.sh)"      # exports TOKENKEEPER_OIDC_ISSUER
#     bash scripts/oidc.sh stop           # shuts down the provider this script started
#     bash scripts/oidc.sh status         # exit status 0 when a provider answers
#
# Idempotent: if TOKENKEEPER_OIDC_ISSUER (or http://127.0.0.1:$TOKENKEEPER_OIDC_PORT, default
# port 6392) already serves a discovery document for that issuer, it is reused. Otherwise the
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
state_dir="${TMPDIR:-/tmp}/tokenkeeper-oidc-${port}"
pid_file="$state_dir/provider.pid"
log_file="$state_dir/provider.log"

say() { printf 'oidc.sh: %s\n' "$*" >&2; }

# Whether $issuer serves a discovery document naming itself.
ping() {
  command -v node >/dev/null 2>&1 || return 1
  ISSUER="$issuer" node --input-type=module -e '
    const issuer = process.env.ISSUER;
    try {
      const response = await fetch(`${issuer}/.well-known/openid-configuration`,
        { signal: AbortSignal.timeout(2000) });
      const document = await response.json();
      process.exit(document.issuer === issuer ? 0 : 1);
    } catch { process.exit(1); }' 2>/dev/null
}

# The pid in the pid file, if that process is still the provider this script started.
our_pid() {
  [ -f "$pid_file" ] || return 1
  local pid
  pid="$(cat "$pid_file")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] &&
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'provider.mjs' && echo "$pid"
}

if [ "${1:-}" = "status" ]; then
  ping
  exit
fi

if [ "${1:-}" = "stop" ]; then
  if pid="$(our_pid)"; then
    kill "$pid"
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    rm -f "$pid_file"
    say "stopped the provider (pid $pid) on ${issuer}"
  else
    say "no provider started by this script runs for ${issuer}"
  fi
  exit 0
fi

if ping; then
  say "reusing the OpenID provider at ${issuer}"
  echo "export TOKENKEEPER_OIDC_ISSUER=${issuer}"
  exit 0
fi

case "$issuer" in
  "http://127.0.0.1:${port}" | "http://localhost:${port}") ;;
  *)
    say "${issuer} does not answer and is not this script's loopback address; not starting anything"
    exit 1
    ;;
esac

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "Node.js and npm are required to run the OpenID provider"
  exit 1
fi

# npm ci only when the lock file changed since the last install (npm ci always starts afresh).
stamp="$dir/node_modules/.tokenkeeper-lock.sha256"
want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  say "installing oidc-provider with npm ci (scripts/oidc/package-lock.json)"
  (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
  echo "$want" >"$stamp"
fi

mkdir -p "$state_dir"
say "starting oidc-provider on ${issuer} (log in ${log_file})"
# Its own session, stdin and output away from ours: `eval "$(...)"` waits for our stdout to close.
TOKENKEEPER_OIDC_PORT="$port" setsid node "$dir/provider.mjs" </dev/null >"$log_file" 2>&1 &
echo $! >"$pid_file"

for _ in $(seq 1 100); do
  if ping; then
    say "the OpenID provider is up at ${issuer}"
    echo "export TOKENKEEPER_OIDC_ISSUER=${issuer}"
    exit 0
  fi
  if ! our_pid >/dev/null; then break; fi
  sleep 0.2
done
say "oidc-provider did not answer within 20 s; its log:"
tail -n 20 "$log_file" >&2 || true
exit 1
