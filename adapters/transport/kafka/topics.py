"""Topic names and their creation at start-up (explicit partitions and replication factor).

With ACLs (docs/kafka.md) each role may create only the topics it publishes; a consumer
waits for its input topic to appear."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from ca_core.messages import TOPICS


def topic_names(prefix: str) -> dict[str, str]:
    """Logical topic (requests, ca-events, portal-events) → Kafka topic name."""
    return {logical: f"{prefix}{logical}" for logical in TOPICS}


def ensure_topics(bootstrap: str, prefix: str, partitions: int, replication: int,
                  security: dict[str, Any] | None = None,
                  logical: Iterable[str] = TOPICS) -> None:
    """Create the ``logical`` topics that are missing and wait until the broker lists them."""
    wanted_names = {topic_names(prefix)[name] for name in logical}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="partner-ca-admin",
                             **(security or {}))
    try:
        existing = set(admin.list_topics())
        wanted = [NewTopic(name, partitions, replication)
                  for name in sorted(wanted_names) if name not in existing]
        if wanted:
            try:
                admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # created concurrently by another process
        # wait until the broker lists them, so consumers see partitions at once
        deadline = time.monotonic() + 30
        while not wanted_names <= set(admin.list_topics()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics with prefix {prefix!r} did not appear")
            time.sleep(0.1)
    finally:
        admin.close()
