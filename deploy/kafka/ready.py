"""Wait until a Kafka broker answers a metadata request: ready.py BOOTSTRAP SECONDS (exit 0/1)."""

import socket
import sys
import time

from kafka import KafkaAdminClient

bootstrap, seconds = sys.argv[1], float(sys.argv[2])
deadline = time.monotonic() + seconds
while True:
    try:
        host, port = bootstrap.rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=1).close()
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        admin.list_topics()
        admin.close()
        sys.exit(0)
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.5)
