"""Wait until the Kafka broker answers a metadata request as the admin principal:
ready.py BOOTSTRAP SECONDS ADMIN_CREDENTIALS_FOLDER (exit 0/1)."""

import socket
import sys
import time
from pathlib import Path

from kafka import KafkaAdminClient

bootstrap, seconds, folder = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
deadline = time.monotonic() + seconds
while True:
    try:
        host, port = bootstrap.rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=1).close()
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000,
                                 security_protocol="SSL", ssl_check_hostname=True,
                                 ssl_cafile=str(folder / "service-ca.pem"),
                                 ssl_certfile=str(folder / "tls.crt"),
                                 ssl_keyfile=str(folder / "tls.key"))
        admin.list_topics()
        admin.close()
        sys.exit(0)
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.5)
