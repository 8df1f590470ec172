#!/usr/bin/env bash
# Makes a Redis server available on loopback for the RedisStore tests and prints, on stdout, the
# line that points the tests at it:
#
#     eval "$(bash scripts/redis.sh)"      # exports TOKENKEEPER_REDIS_URL
#     bash scripts/redis.sh stop           # shuts down the server this script started
#
# Idempotent: if TOKENKEEPER_REDIS_URL (or redis://127.0.0.1:$TOKENKEEPER_REDIS_PORT, default
# port 6390) already answers PING, it is reused. Otherwise redis-server is installed from Debian's
# packages when it is not on PATH, and started in the background with no persistence, bound to
# 127.0.0.1 only. Everything but the export line goes to stderr.
set -euo pipefail

port="${TOKENKEEPER_REDIS_PORT:-6390}"
url="${TOKENKEEPER_REDIS_URL:-redis://127.0.0.1:${port}}"
state_dir="${TMPDIR:-/tmp}/tokenkeeper-redis-${port}"

say() { printf 'redis.sh: %s\n' "$*" >&2; }

# host and port of the URL, for redis-cli (redis://[user:pass@]host:port[/db]).
hostport="${url#*://}"
hostport="${hostport##*@}"
hostport="${hostport%%/*}"
host="${hostport%%:*}"
if [ "$hostport" != "$host" ]; then port="${hostport##*:}"; fi

ping() {
  command -v redis-cli >/dev/null 2>&1 &&
    [ "$(redis-cli -h "$host" -p "$port" ping 2>/dev/null || true)" = "PONG" ]
}

if [ "${1:-}" = "stop" ]; then
  if ping; then
    redis-cli -h "$host" -p "$port" shutdown nosave >/dev/null 2>&1 || true
    say "stopped the server on ${host}:${port}"
  else
    say "no server answers on ${host}:${port}"
  fi
  exit 0
fi

if ping; then
  say "reusing the Redis server at ${url}"
  echo "export TOKENKEEPER_REDIS_URL=${url}"
  exit 0
fi

case "$host" in
  127.0.0.1 | localhost) ;;
  *)
    say "${url} does not answer and is not on loopback; not starting anything"
    exit 1
    ;;
esac

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  say "installing redis-server from Debian's packages"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq redis-server >&2
fi

mkdir -p "$state_dir"
say "starting redis-server on 127.0.0.1:${port} (state in ${state_dir})"
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --dir "$state_dir" --logfile "$state_dir/redis.log" --pidfile "$state_dir/redis.pid" >&2

for _ in $(seq 1 100); do
  if ping; then
    say "Redis is up at ${url}"
    echo "export TOKENKEEPER_REDIS_URL=${url}"
    exit 0
  fi
  sleep 0.1
done
say "redis-server did not answer PING within 10 s; its log:"
tail -n 20 "$state_dir/redis.log" >&2 || true
exit 1
