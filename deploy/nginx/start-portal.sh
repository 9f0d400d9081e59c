#!/usr/bin/env bash
# Start nginx in front of the portal API: TLS, optional client certificates checked against
# CHAIN and OCSP_URL, proxied to PORTAL (host:port) from PROXY_ADDRESS (e.g. 127.0.0.2, which
# the portal lists in PARTNER_CA_PORTAL_TRUSTED_PROXIES).
# Usage: deploy/nginx/start-portal.sh RUN_DIR LISTEN CHAIN OCSP_URL PORTAL PROXY_ADDRESS
set -euo pipefail
run="$1"; listen="$2"; chain="$3"; ocsp="$4"; portal="$5"; proxy="$6"
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$run"
if [ ! -f "$run/server.pem" ]; then  # the server's own certificate: self-signed, for tests
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout "$run/server.key" -out "$run/server.pem" -subj "/CN=127.0.0.1" 2>/dev/null
fi
sed -e "s#@RUN@#$run#g" -e "s#@LISTEN@#$listen#g" -e "s#@CHAIN@#$chain#g" \
    -e "s#@OCSP_URL@#$ocsp#g" -e "s#@PORTAL@#$portal#g" -e "s#@PROXY_ADDRESS@#$proxy#g" \
    "$here/portal.conf.in" > "$run/nginx.conf"
nginx -t -q -c "$run/nginx.conf" -p "$run"
nginx -c "$run/nginx.conf" -p "$run"
echo "https://$listen"
