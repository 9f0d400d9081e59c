"""kafka-python (pinned: 3.0.12) past its public API: the consumer's IO loop wake-up.

kafka-python 3.0.12 can lose a cross-thread wake-up, and its IO thread then sits in select()
with no timeout while ``poll()`` waits on it (adapters/transport/kafka/inbox.py nudges it).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version
from typing import Any

PINNED = "3.0.12"


def io_wakeup(consumer: Any) -> Callable[[], None] | None:
    """The consumer's IO loop wake-up (``KafkaConsumer._net.wakeup``), or None."""
    net = getattr(consumer, "_net", None)
    wakeup = getattr(net, "wakeup", None)
    return wakeup if callable(wakeup) else None


def problems() -> list[str]:
    found = []
    if version("kafka-python") != PINNED:
        found.append(f"kafka-python {version('kafka-python')} is installed, not {PINNED}: "
                     "check whether the lost wake-up is fixed and the nudger can go")
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers="127.0.0.1:9", api_version=(2, 0))
    try:
        if io_wakeup(consumer) is None:
            found.append("KafkaConsumer has no _net.wakeup any more")
    finally:
        consumer.close()
    return found
