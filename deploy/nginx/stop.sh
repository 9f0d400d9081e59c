#!/usr/bin/env bash
# Stop the nginx of deploy/nginx/start.sh. Usage: deploy/nginx/stop.sh RUN_DIR
set -euo pipefail
run="$1"
[ -f "$run/nginx.pid" ] && nginx -s stop -c "$run/nginx.conf" -p "$run" || true
