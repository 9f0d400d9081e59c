"""Wait until the Kafka broker answers a metadata request as the admin principal:
ready.py BOOTSTRAP SECONDS ADMIN_CREDENTIALS_FOLDER [BROKERS] (exit 0/1); with BROKERS, until
the cluster lists at least that many brokers."""

import socket
import sys
import time
from pathlib import Path

from kafka import KafkaAdminClient

bootstrap, seconds, folder = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
brokers = int(sys.argv[4]) if len(sys.argv) > 4 else 1
deadline = time.monotonic() + seconds
while True:
    try:
        host, port = bootstrap.split(",")[0].rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=1).close()
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000,
                                 security_protocol="SSL", ssl_check_hostname=True,
                                 ssl_cafile=str(folder / "service-ca.pem"),
                                 ssl_certfile=str(folder / "tls.crt"),
                                 ssl_keyfile=str(folder / "tls.key"))
        admin.list_topics()
        listed = sum(1 for b in admin.describe_cluster().get("brokers", [])
                     if not b.get("is_fenced"))
        admin.close()
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        listed = 0
    if listed >= brokers:
        sys.exit(0)
    if time.monotonic() > deadline:
        sys.exit(1)
    time.sleep(0.5)
