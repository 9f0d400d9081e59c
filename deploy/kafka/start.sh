#!/usr/bin/env bash
# Start a single-node Kafka 4.x broker (KRaft) on 127.0.0.1, secured: mutual TLS on every
# listener, the standard authorizer, ACLs per principal (docs/kafka.md). Idempotent.
# Writes the service hierarchy's credentials once (<data>/credentials, one folder per role;
# `partner-ca kafka credentials`) and prints the bootstrap address; the credentials
# directory is on stderr and in $PARTNER_CA_KAFKA_DATA/credentials.
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(cd ../.. && pwd)"
PORT="${PARTNER_CA_KAFKA_PORT:-59092}"
CONTROLLER_PORT=$((PORT + 1))
DATA="${PARTNER_CA_KAFKA_DATA:-/tmp/partner-ca-kafka-$PORT}"
CREDENTIALS="$DATA/credentials"
BOOTSTRAP="127.0.0.1:$PORT"

bash fetch.sh >&2
mkdir -p "$DATA"
chmod 700 "$DATA"
if [ ! -f "$CREDENTIALS/admin/tls.crt" ]; then
    rm -rf "$CREDENTIALS"
    PYTHONPATH="$ROOT" python3 -m adapters.transport.kafka.service_pki "$CREDENTIALS" >&2
fi
RENDERED="$(sed -e "s|@PORT@|$PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
    -e "s|@DATA@|$DATA|g" -e "s|@CREDENTIALS@|$CREDENTIALS|g" server.properties.in)"
if [ -f "$DATA/server.properties" ] && [ "$RENDERED" != "$(cat "$DATA/server.properties")" ]; then
    echo "broker configuration changed: restarting it on a fresh log" >&2
    bash stop.sh
    rm -rf "$DATA/log"
fi
if ! python3 ready.py "$BOOTSTRAP" 1 "$CREDENTIALS/admin" 2>/dev/null; then
    bash stop.sh  # a broker from before that does not answer as it should
    printf '%s\n' "$RENDERED" > "$DATA/server.properties"
    CP="$(pwd)/lib/*"
    if [ ! -f "$DATA/log/meta.properties" ]; then
        CLUSTER_ID="$(java -cp "$CP" kafka.tools.StorageTool random-uuid)"
        java -cp "$CP" -Dlog4j2.configurationFile="$(pwd)/log4j2.properties" -Dkafka.logs.dir="$DATA" \
            kafka.tools.StorageTool format --standalone -t "$CLUSTER_ID" -c "$DATA/server.properties" >&2
    fi
    nohup java -Xms256m -Xmx1g -XX:+UseG1GC -cp "$CP" \
        -Dlog4j2.configurationFile="$(pwd)/log4j2.properties" -Dkafka.logs.dir="$DATA" \
        kafka.Kafka "$DATA/server.properties" > "$DATA/stdout.log" 2>&1 &
    echo $! > "$DATA/broker.pid"
    if ! python3 ready.py "$BOOTSTRAP" 180 "$CREDENTIALS/admin"; then
        echo "Kafka did not become ready; see $DATA/server.log" >&2
        tail -n 30 "$DATA/stdout.log" "$DATA/server.log" >&2 || true
        exit 1
    fi
fi
echo "Kafka credentials: $CREDENTIALS" >&2
echo "$BOOTSTRAP"
