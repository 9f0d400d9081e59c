#!/usr/bin/env bash
# Stop the broker started by start.sh (SIGTERM, then SIGKILL after 30 s).
set -euo pipefail
PORT="${PARTNER_CA_KAFKA_PORT:-59092}"
DATA="${PARTNER_CA_KAFKA_DATA:-/tmp/partner-ca-kafka-$PORT}"
[ -f "$DATA/broker.pid" ] || exit 0
PID="$(cat "$DATA/broker.pid")"
kill "$PID" 2>/dev/null || exit 0
for _ in $(seq 60); do kill -0 "$PID" 2>/dev/null || { rm -f "$DATA/broker.pid"; exit 0; }; sleep 0.5; done
kill -9 "$PID" 2>/dev/null || true
rm -f "$DATA/broker.pid"
