#!/usr/bin/env bash
# Start a single-node Kafka 4.x broker (KRaft) on 127.0.0.1 and wait until it answers.
# Idempotent. Prints the bootstrap address.
set -euo pipefail
cd "$(dirname "$0")"
PORT="${PARTNER_CA_KAFKA_PORT:-59092}"
CONTROLLER_PORT=$((PORT + 1))
DATA="${PARTNER_CA_KAFKA_DATA:-/tmp/partner-ca-kafka-$PORT}"
BOOTSTRAP="127.0.0.1:$PORT"

bash fetch.sh >&2
mkdir -p "$DATA"
if ! python3 ready.py "$BOOTSTRAP" 1 2>/dev/null; then
    sed -e "s|@PORT@|$PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" -e "s|@DATA@|$DATA|g" \
        server.properties.in > "$DATA/server.properties"
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
    if ! python3 ready.py "$BOOTSTRAP" 180; then
        echo "Kafka did not become ready; see $DATA/server.log" >&2
        tail -n 30 "$DATA/stdout.log" "$DATA/server.log" >&2 || true
        exit 1
    fi
fi
echo "$BOOTSTRAP"
