#!/usr/bin/env bash
# Start a throw-away PostgreSQL cluster on 127.0.0.1 for development and tests.
# Installs Debian's package if it is missing. Idempotent: does nothing if it already runs.
# Prints the database URL to use (PARTNER_CA_TEST_DATABASE_URL).
set -euo pipefail

PORT="${PARTNER_CA_PG_PORT:-55432}"
DATA="${PARTNER_CA_PG_DATA:-/tmp/partner-ca-pg-$PORT}"
DB="${PARTNER_CA_PG_DB:-partner_ca_test}"

if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
    echo "installing PostgreSQL (Debian package)…" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi
BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
    :
else
    mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$DATA"
    chmod 700 "$DATA"
    if [ ! -f "$DATA/PG_VERSION" ]; then
        as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null
fi

if ! psql -h 127.0.0.1 -p "$PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$DB'" | grep -q 1; then
    psql -h 127.0.0.1 -p "$PORT" -U postgres -qc "CREATE DATABASE $DB" >/dev/null
fi
echo "postgresql://postgres@127.0.0.1:$PORT/$DB"
