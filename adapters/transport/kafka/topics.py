"""Topic names and their creation at start-up (explicit partitions and replication factor).

With ACLs (docs/kafka.md) each role may create only the topics it publishes; a consumer
waits for its input topic to appear.

Every topic is created with ``compression.type=uncompressed``: the broker then stores (and
serves) each batch a producer compressed as plain records. Without it, one batch compressed
with a codec a consumer has no library for (kafka-python reads lz4, snappy and zstd only
with extra packages) stops that consumer's partition for good — ``poll()`` raises on it
every time — and any principal allowed to write the topic could do that on purpose.
``partner-ca kafka grant`` sets the same on topics that exist already."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from ca_core.messages import TOPICS

#: The settings every topic of ours gets (see the module's docstring).
TOPIC_CONFIGS = {"compression.type": "uncompressed"}


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
        wanted = [NewTopic(name, partitions, replication, topic_configs=dict(TOPIC_CONFIGS))
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


def harden_topics(bootstrap: str, prefix: str, security: dict[str, Any]) -> list[str]:
    """Set TOPIC_CONFIGS on those of our topics that exist (as the admin principal; an
    incremental change: the topics' other settings stay); one line per topic and setting."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="partner-ca-admin",
                             **security)
    try:
        existing = set(admin.list_topics())
        names = [name for name in topic_names(prefix).values() if name in existing]
        if names:
            answers = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name,
                                                          configs=dict(TOPIC_CONFIGS))
                                           for name in names])
            # kafka-python answers a refusal per topic rather than raising it
            refused = {name: answer for name, answer in answers.get("topic", {}).items()
                       if str(answer) != "OK"}
            if refused:
                name, answer = next(iter(refused.items()))
                raise RuntimeError(f"the broker refused the settings of {name}: {answer}")
    finally:
        admin.close()
    return [f"{name} {key}={value}" for name in names for key, value in TOPIC_CONFIGS.items()]


def topic_settings(bootstrap: str, name: str, security: dict[str, Any]) -> dict[str, str]:
    """A topic's settings that differ from the broker's defaults, as the broker describes
    them."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="partner-ca-admin",
                             **security)
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    finally:
        admin.close()
    entries = described.get("topic", {}).get(name, {})
    return {key: str(data.get("value") if isinstance(data, dict) else data)
            for key, data in entries.items()}
