#!/usr/bin/env bash
# Stop the cluster started by start.sh.
set -euo pipefail
PORT="${PARTNER_CA_PG_PORT:-55432}"
DATA="${PARTNER_CA_PG_DATA:-/tmp/partner-ca-pg-$PORT}"
BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$BIN/pg_ctl" -D "$DATA" -m fast stop; else "$BIN/pg_ctl" -D "$DATA" -m fast stop; fi
