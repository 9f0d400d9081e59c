#!/usr/bin/env bash
# Start nginx with one of two sites (the tests use both; operators copy the one they need):
#   start.sh RUN_DIR LISTEN CHAIN OCSP_URL
#       a relying party: client certificates must chain to CHAIN and be "good" at OCSP_URL
#       (nginx.conf.in);
#   start.sh RUN_DIR LISTEN CHAIN OCSP_URL PORTAL PROXY_ADDRESS
#       the portal's TLS front (portal.conf.in): optional client certificates, proxied to
#       PORTAL (host:port) from PROXY_ADDRESS, the address the portal trusts.
# LISTEN: host:port, or unix:/path/to.sock as the tests use (no port to race for).
# Prints https://LISTEN.
set -euo pipefail
run="$1"; listen="$2"; chain="$3"; ocsp="$4"; portal="${5:-}"; proxy="${6:-}"
here="$(cd "$(dirname "$0")" && pwd)"
site="$here/nginx.conf.in"
[ -n "$portal" ] && site="$here/portal.conf.in"
mkdir -p "$run"
if [ ! -f "$run/server.pem" ]; then  # the server's own certificate: self-signed, for tests
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout "$run/server.key" -out "$run/server.pem" -subj "/CN=127.0.0.1" 2>/dev/null
fi
sed -e "s#@RUN@#$run#g" -e "s#@LISTEN@#$listen#g" -e "s#@CHAIN@#$chain#g" \
    -e "s#@OCSP_URL@#$ocsp#g" -e "s#@PORTAL@#$portal#g" -e "s#@PROXY_ADDRESS@#$proxy#g" \
    "$site" > "$run/nginx.conf"
nginx -t -q -c "$run/nginx.conf" -p "$run"
nginx -c "$run/nginx.conf" -p "$run"
echo "https://$listen"
