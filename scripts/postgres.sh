#!/usr/bin/env bash
# Makes a PostgreSQL server available on loopback for the PostgresStore tests and prints, on
# stdout, the line that points the tests at it:
#
#     eval "$(bash scripts/postgres.sh)"    # exports TOKENKEEPER_POSTGRES_URL
#     bash scripts/postgres.sh stop         # shuts down the server this script started
#
# Idempotent: if TOKENKEEPER_POSTGRES_URL (or the database this script creates on
# 127.0.0.1:$TOKENKEEPER_POSTGRES_PORT, default port 6393) already answers, it is reused.
# Otherwise the server is installed from Debian's packages when initdb/pg_ctl are missing, and a
# throw-away cluster is initialised in $TMPDIR (no fsync: the data is worthless), listening on
# 127.0.0.1 only with trust authentication for 127.0.0.1 only. initdb refuses to run as root, so
# as root the cluster belongs to the `postgres` user (or `nobody`) and is driven with runuser.
# Everything but the export line goes to stderr.
set -euo pipefail

port="${TOKENKEEPER_POSTGRES_PORT:-6393}"
user="tokenkeeper"
database="tokenkeeper"
default_url="postgres://${user}@127.0.0.1:${port}/${database}"
url="${TOKENKEEPER_POSTGRES_URL:-$default_url}"
state_dir="${TMPDIR:-/tmp}/tokenkeeper-postgres-${port}"

say() { printf 'postgres.sh: %s\n' "$*" >&2; }

# The server's programs: on PATH, or where Debian puts them (newest version first).
bindir=""
find_bindir() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    bindir="$(dirname "$(readlink -f "$(command -v pg_ctl)")")"
    return 0
  fi
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      bindir="$dir"
      return 0
    fi
  done
  return 1
}

psql_bin() {
  if [ -n "$bindir" ] && [ -x "$bindir/psql" ]; then echo "$bindir/psql"; else command -v psql; fi
}

answers() { # $1: URL
  local psql
  psql="$(psql_bin 2>/dev/null)" || return 1
  [ -n "$psql" ] && "$psql" "$1" -XAtqc 'select 1' >/dev/null 2>&1
}

# Who owns and runs the cluster: ourselves, or (as root) an unprivileged user.
if [ "$(id -u)" -eq 0 ]; then
  if id postgres >/dev/null 2>&1; then owner="postgres"; else owner="nobody"; fi
  as_owner() { runuser -u "$owner" -- "$@"; }
else
  owner="$(id -un)"
  as_owner() { "$@"; }
fi

if [ "${1:-}" = "stop" ]; then
  find_bindir || true
  if [ -n "$bindir" ] && [ -f "$state_dir/data/postmaster.pid" ]; then
    as_owner "$bindir/pg_ctl" -D "$state_dir/data" -m fast -w stop >&2 || true
    say "stopped the server in ${state_dir}"
  else
    say "no server of this script runs in ${state_dir}"
  fi
  exit 0
fi

find_bindir || true
if answers "$url"; then
  say "reusing the PostgreSQL server at ${url%%\?*}"
  echo "export TOKENKEEPER_POSTGRES_URL=${url}"
  exit 0
fi
if [ "$url" != "$default_url" ]; then
  say "TOKENKEEPER_POSTGRES_URL does not answer; not starting anything for a URL this script did not make"
  exit 1
fi

if [ -z "$bindir" ]; then
  say "installing the PostgreSQL server from Debian's packages"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  # Debian's package would create and start a cluster of its own on port 5432: not wanted.
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    $sudo mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq -o Dpkg::Options::=--force-confold postgresql >&2
  find_bindir || {
    say "no initdb/pg_ctl after installing postgresql"
    exit 1
  }
  if [ "$(id -u)" -eq 0 ] && id postgres >/dev/null 2>&1; then owner="postgres"; fi
fi

mkdir -p "$state_dir"
if [ "$(id -u)" -eq 0 ]; then
  chown -R "$owner" "$state_dir"
fi
chmod 700 "$state_dir"
if ! as_owner test -w "$state_dir"; then
  say "${owner} cannot write to ${state_dir} (set TMPDIR to a directory it can reach)"
  exit 1
fi

data="$state_dir/data"
if [ ! -f "$data/PG_VERSION" ]; then
  say "initialising a throw-away cluster in ${data} (owner ${owner})"
  rm -rf "$data"
  as_owner "$bindir/initdb" -D "$data" -U "$user" --auth=trust --encoding=UTF8 \
    --locale=C --no-sync >&2
  # Trust, but only over loopback IPv4 and the owner-only socket in the state directory.
  as_owner tee "$data/pg_hba.conf" >/dev/null <<'EOF'
local all all trust
host  all all 127.0.0.1/32 trust
EOF
  as_owner tee -a "$data/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = ${port}
unix_socket_directories = '${state_dir}'
unix_socket_permissions = 0700
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
fi

if [ ! -f "$data/postmaster.pid" ] || ! as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  say "starting PostgreSQL on 127.0.0.1:${port} (state in ${state_dir})"
  if ! as_owner "$bindir/pg_ctl" -D "$data" -l "$state_dir/postgres.log" -w -t 30 start >&2; then
    say "PostgreSQL did not start; its log:"
    tail -n 20 "$state_dir/postgres.log" >&2 || true
    exit 1
  fi
fi

psql="$(psql_bin)"
admin="postgres://${user}@127.0.0.1:${port}/postgres"
for _ in $(seq 1 100); do
  if answers "$admin"; then break; fi
  sleep 0.1
done
if ! answers "$url"; then
  "$psql" "$admin" -XAtqc "CREATE DATABASE ${database}" >&2
fi
if answers "$url"; then
  say "PostgreSQL is up at ${url}"
  echo "export TOKENKEEPER_POSTGRES_URL=${url}"
  exit 0
fi
say "the database ${database} does not answer; the server's log:"
tail -n 20 "$state_dir/postgres.log" >&2 || true
exit 1
