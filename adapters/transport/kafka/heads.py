"""Signed tree heads from Kafka: the copies outside the database that `audit verify` checks.

The relays publish every ``TreeHeadSigned`` on ``ca-events`` / ``portal-events``
(key: the application). ``fetch_heads`` reads both topics from the beginning up to
their current end and writes the heads as JSON lines, in the format of
``<data_dir>/audit/heads.jsonl`` (without the leaf prefixes: their SHA-256 is what
the audit key signed).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from adapters.transport.kafka.consumer import CaredConsumer
from adapters.transport.kafka.envelope import MalformedMessage, ce_type, decode
from adapters.transport.kafka.security import RoleCredentials, UnauthenticatedRecord
from adapters.transport.kafka.topics import topic_names
from ca_core.messages import CA_EVENTS, PORTAL_EVENTS, TreeHeadSigned

HEAD_TYPE = ce_type("TreeHeadSigned").encode()


def fetch_heads(bootstrap: str, prefix: str, credentials: RoleCredentials,
                timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every tree head on the broker, oldest first per application, read with a read-only
    role's credentials; a head whose record signature does not verify is not taken."""
    names = topic_names(prefix)
    logical_of = {names[CA_EVENTS]: CA_EVENTS, names[PORTAL_EVENTS]: PORTAL_EVENTS}
    verifier = credentials.verifier()
    done: dict[TopicPartition, int] = {}  # the next offset not yet looked at, per partition
    reader = CaredConsumer("audit fetch-heads", bootstrap, "partner-ca-audit-heads",
                           credentials.client_options, lambda tp: done[tp],
                           fetch_max_wait_ms=100)
    consumer = reader.consumer
    try:
        partitions = [TopicPartition(names[logical], p)
                      for logical in (CA_EVENTS, PORTAL_EVENTS)
                      for p in sorted(consumer.partitions_for_topic(names[logical]) or ())]
        done.update({tp: int(offset)
                     for tp, offset in consumer.beginning_offsets(partitions).items()})
        reader.assign(partitions)
        ends = consumer.end_offsets(partitions)
        heads: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {prefix}ca-events/portal-events to their "
                                   f"end within {timeout:.0f} s")
            polled = reader.poll(timeout_ms=200)
            if polled.unreadable is not None:  # records kafka-python cannot parse: no heads
                done[polled.unreadable.partition] = polled.unreadable.end
                reader.resume()
            for records in polled.records.values():
                for record in records:
                    done[TopicPartition(record.topic, record.partition)] = record.offset + 1
                    if (dict(record.headers or []).get("ce_type") or b"") != HEAD_TYPE:
                        continue
                    try:
                        verifier.verify(logical_of[record.topic], record.topic, record.key,
                                        record.headers, record.value)
                        message = decode(record.headers, record.value)
                    except (MalformedMessage, UnauthenticatedRecord):
                        continue  # not ours to judge here; the inboxes record it as rejected
                    if isinstance(message, TreeHeadSigned):
                        heads.append(message.model_dump(
                            mode="json", exclude={"message_id", "type", "occurred_at"}))
        return sorted(heads, key=lambda h: (h["application"], h["tree_size"]))
    finally:
        reader.close()


def write_heads(heads: list[dict[str, Any]], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(head) + "\n" for head in heads))
