#!/usr/bin/env bash
# The README's test command: installs what the tests need, starts it, runs the whole suite.
# Works on a fresh Debian machine as root (CI) or as a developer with the packages present.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
command -v softhsm2-util >/dev/null || need_apt+=(softhsm2)
command -v nginx >/dev/null || need_apt+=(nginx-light)
ls /usr/lib/*/engines-3/pkcs11.so >/dev/null 2>&1 || need_apt+=(libengine-pkcs11-openssl)
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || need_apt+=(postgresql)
command -v chromium >/dev/null || need_apt+=(chromium)  # the browser tests (Playwright)
command -v npm >/dev/null || need_apt+=(npm)  # axe-core for their accessibility check
if [ ${#need_apt[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi

python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e ".[dev]"

# axe-core (npm) runs inside the pages in the browser tests; Playwright uses Debian's chromium
axe_dir="${PARTNER_CA_AXE_DIR:-/tmp/partner-ca-axe}"
[ -f "$axe_dir/node_modules/axe-core/axe.min.js" ] || \
    npm install --silent --no-audit --no-fund --prefix "$axe_dir" axe-core@4 >/dev/null
export PARTNER_CA_TEST_AXE="$axe_dir/node_modules/axe-core/axe.min.js"

PARTNER_CA_TEST_DATABASE_URL="$(bash deploy/postgres/start.sh)"
export PARTNER_CA_TEST_DATABASE_URL
echo "PostgreSQL: $PARTNER_CA_TEST_DATABASE_URL"
PARTNER_CA_TEST_KAFKA="$(bash deploy/kafka/start.sh)"
export PARTNER_CA_TEST_KAFKA
PARTNER_CA_TEST_KAFKA_CREDENTIALS="${PARTNER_CA_KAFKA_DATA:-/tmp/partner-ca-kafka-${PARTNER_CA_KAFKA_PORT:-59092}}/credentials"
export PARTNER_CA_TEST_KAFKA_CREDENTIALS
echo "Kafka: $PARTNER_CA_TEST_KAFKA (secured; credentials in $PARTNER_CA_TEST_KAFKA_CREDENTIALS)"
PARTNER_CA_TEST_KAFKA_CLUSTER="$(bash deploy/kafka/cluster.sh start)"
export PARTNER_CA_TEST_KAFKA_CLUSTER
echo "Kafka cluster (3 nodes, fault tests): $PARTNER_CA_TEST_KAFKA_CLUSTER"

echo "== ruff"; ruff check .
echo "== mypy ca_core"; mypy ca_core
echo "== import contracts"; lint-imports --no-cache
echo "== pytest"; python3 -m pytest "$@"
