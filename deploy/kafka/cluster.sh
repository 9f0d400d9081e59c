#!/usr/bin/env bash
# A three-node Kafka 4.x cluster (KRaft, every node broker + controller) on 127.0.0.1 for the
# fault tests: replication factor 3, min.insync.replicas=2, the security of the single broker
# (mutual TLS, ACLs; the same service hierarchy's credentials as deploy/kafka/start.sh).
#
#   cluster.sh start            start the nodes that are not running; print the bootstrap list
#   cluster.sh stop             stop all nodes
#   cluster.sh stop-node N      SIGTERM node N (1-3);  kill-node N: SIGKILL it
#   cluster.sh start-node N     start node N again (it rejoins with its log)
#
# Client ports PARTNER_CA_KAFKA_CLUSTER_PORT (59192) + 0..2, controllers + 100. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(cd ../.. && pwd)"
BASE="${PARTNER_CA_KAFKA_CLUSTER_PORT:-59192}"
DATA="${PARTNER_CA_KAFKA_CLUSTER_DATA:-/tmp/partner-ca-kafka-cluster-$BASE}"
CREDENTIALS="${PARTNER_CA_KAFKA_CREDENTIALS_DIR:-/tmp/partner-ca-kafka-${PARTNER_CA_KAFKA_PORT:-59092}/credentials}"
NODES=(1 2 3)
port() { echo $((BASE + $1 - 1)); }
controller_port() { echo $((BASE + 100 + $1 - 1)); }
BOOTSTRAP="$(for n in "${NODES[@]}"; do printf '127.0.0.1:%s,' "$(port "$n")"; done)"
BOOTSTRAP="${BOOTSTRAP%,}"
VOTERS="$(for n in "${NODES[@]}"; do printf '%s@127.0.0.1:%s,' "$n" "$(controller_port "$n")"; done)"
VOTERS="${VOTERS%,}"
CP="$(pwd)/lib/*"

running() { [ -f "$DATA/$1/broker.pid" ] && kill -0 "$(cat "$DATA/$1/broker.pid")" 2>/dev/null; }

prepare() {
    bash fetch.sh >&2
    mkdir -p "$DATA"
    chmod 700 "$DATA"
    if [ ! -f "$CREDENTIALS/admin/tls.crt" ]; then
        rm -rf "$CREDENTIALS"
        mkdir -p "$(dirname "$CREDENTIALS")"
        PYTHONPATH="$ROOT" python3 -m adapters.transport.kafka.service_pki "$CREDENTIALS" >&2
    fi
    if [ ! -f "$DATA/cluster.id" ]; then
        java -cp "$CP" kafka.tools.StorageTool random-uuid > "$DATA/cluster.id"
    fi
}

start_node() {
    local n="$1" dir="$DATA/$1"
    running "$n" && return 0
    mkdir -p "$dir"
    sed -e "s|@NODE@|$n|g" -e "s|@PORT@|$(port "$n")|g" \
        -e "s|@CONTROLLER_PORT@|$(controller_port "$n")|g" -e "s|@VOTERS@|$VOTERS|g" \
        -e "s|@DATA@|$dir|g" -e "s|@CREDENTIALS@|$CREDENTIALS|g" \
        cluster.properties.in > "$dir/server.properties"
    if [ ! -f "$dir/log/meta.properties" ]; then
        java -cp "$CP" -Dlog4j2.configurationFile="$(pwd)/log4j2.properties" \
            -Dkafka.logs.dir="$dir" kafka.tools.StorageTool format \
            -t "$(cat "$DATA/cluster.id")" -c "$dir/server.properties" >&2
    fi
    nohup java -Xms128m -Xmx512m -XX:+UseG1GC -cp "$CP" \
        -Dlog4j2.configurationFile="$(pwd)/log4j2.properties" -Dkafka.logs.dir="$dir" \
        kafka.Kafka "$dir/server.properties" > "$dir/stdout.log" 2>&1 &
    echo $! > "$dir/broker.pid"
}

stop_node() {
    local n="$1" signal="${2:-TERM}" pid
    running "$n" || return 0
    pid="$(cat "$DATA/$n/broker.pid")"
    kill "-$signal" "$pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$DATA/$n/broker.pid"
}

wait_ready() {  # every running node registered and answering
    local want=0 n
    for n in "${NODES[@]}"; do running "$n" && want=$((want + 1)); done
    if ! python3 ready.py "$BOOTSTRAP" 180 "$CREDENTIALS/admin" "$want"; then
        echo "the Kafka cluster did not become ready; see $DATA/*/server.log" >&2
        for n in "${NODES[@]}"; do tail -n 20 "$DATA/$n/server.log" >&2 || true; done
        exit 1
    fi
}

case "${1:-start}" in
    start)
        prepare
        for n in "${NODES[@]}"; do start_node "$n"; done
        wait_ready
        echo "Kafka credentials: $CREDENTIALS" >&2
        echo "$BOOTSTRAP" ;;
    stop) for n in "${NODES[@]}"; do stop_node "$n"; done ;;
    stop-node) stop_node "$2" ;;
    kill-node) stop_node "$2" KILL ;;
    start-node) prepare; start_node "$2"; wait_ready ;;
    *) echo "usage: cluster.sh start|stop|start-node N|stop-node N|kill-node N" >&2; exit 2 ;;
esac
