#!/usr/bin/env bash
# Start nginx as a relying party: client certificates must chain to CHAIN and be "good" at
# OCSP_URL. Usage: deploy/nginx/start.sh RUN_DIR LISTEN CHAIN OCSP_URL  → prints https://LISTEN
# (LISTEN: host:port, or unix:/path/to.sock as the tests use: no port to race for)
set -euo pipefail
run="$1"; listen="$2"; chain="$3"; ocsp="$4"
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$run"
if [ ! -f "$run/server.pem" ]; then  # the server's own certificate: self-signed, for tests
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout "$run/server.key" -out "$run/server.pem" -subj "/CN=127.0.0.1" 2>/dev/null
fi
sed -e "s#@RUN@#$run#g" -e "s#@LISTEN@#$listen#g" -e "s#@CHAIN@#$chain#g" \
    -e "s#@OCSP_URL@#$ocsp#g" "$here/nginx.conf.in" > "$run/nginx.conf"
nginx -t -q -c "$run/nginx.conf" -p "$run"
nginx -c "$run/nginx.conf" -p "$run"
echo "https://$listen"
