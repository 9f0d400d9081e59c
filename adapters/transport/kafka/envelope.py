"""CloudEvents 1.0, Kafka protocol binding, binary content mode.

Attributes travel as ``ce_*`` headers, the data as the JSON record value; the
record key is the message's ordering key (request id or serial).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from ca_core.messages import MESSAGE_TYPES, SCHEMA_VERSION, Message

TYPE_PREFIX = "cz.partner-ca."
SCHEMA_BASE = "https://partner-ca.example/schemas/"
_ENVELOPE_FIELDS = {"message_id", "type", "occurred_at"}
MAX_VALUE_BYTES = 256 * 1024

Headers = list[tuple[str, bytes]]


class MalformedMessage(ValueError):
    """A record that is not a Partner CA message we understand; the text says why."""


def ce_type(message_type: str, version: int = SCHEMA_VERSION) -> str:
    return f"{TYPE_PREFIX}{message_type}.v{version}"


def encode(message: Message, source: str) -> tuple[bytes, bytes, Headers]:
    """(key, value, headers) of the Kafka record for ``message``."""
    data = message.model_dump(mode="json", exclude=_ENVELOPE_FIELDS)
    headers: Headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", message.message_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", ce_type(message.type).encode()),
        ("ce_time", message.occurred_at.isoformat().encode()),
        ("ce_subject", message.key.encode()),
        ("ce_dataschema", f"{SCHEMA_BASE}{message.type}.v{SCHEMA_VERSION}.json".encode()),
        ("content-type", b"application/json"),
    ]
    return message.key.encode(), orjson.dumps(data), headers


def decode(headers: Any, value: bytes | None) -> Message:
    """The message carried by a record, or MalformedMessage naming what is wrong."""
    try:
        h = {k: (v or b"").decode() for k, v in (headers or [])}
    except (UnicodeDecodeError, ValueError, TypeError):
        raise MalformedMessage("headers are not UTF-8 key/value pairs") from None
    if h.get("ce_specversion") != "1.0":
        raise MalformedMessage(f"not a CloudEvents 1.0 record (ce_specversion={h.get('ce_specversion')!r})")
    full_type = h.get("ce_type", "")
    if not full_type.startswith(TYPE_PREFIX) or ".v" not in full_type:
        raise MalformedMessage(f"unknown event type {full_type!r}")
    name, _, version = full_type[len(TYPE_PREFIX):].rpartition(".v")
    if name not in MESSAGE_TYPES:
        raise MalformedMessage(f"unknown event type {full_type!r}")
    if version != str(SCHEMA_VERSION):
        raise MalformedMessage(f"unsupported schema version {version!r} of {name}")
    if value is None or len(value) > MAX_VALUE_BYTES:
        raise MalformedMessage("record value is missing or too large")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"data is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MalformedMessage("data is not a JSON object")
    try:
        occurred_at = datetime.fromisoformat(h.get("ce_time", ""))
        return MESSAGE_TYPES[name].model_validate(
            {**data, "message_id": h.get("ce_id", ""), "type": name, "occurred_at": occurred_at})
    except (ValidationError, ValueError) as exc:
        first = str(exc).splitlines()
        raise MalformedMessage(f"{name} does not match its schema: {' '.join(first[:3])}") from None
