"""JSON Schemas of every public message, generated from the pydantic models into docs/events/.

Run ``python -m adapters.transport.kafka.schemas`` after changing a message; a test
fails while the files in docs/events/ differ from what this generates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from adapters.transport.kafka.envelope import _ENVELOPE_FIELDS, SCHEMA_BASE, ce_type
from ca_core.messages import SCHEMA_VERSION, TOPIC_TYPES

OUT = Path(__file__).resolve().parents[3] / "docs" / "events"


def schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema of the record value (the CloudEvents ``data``)."""
    out: dict[str, dict[str, Any]] = {}
    for topic, types in TOPIC_TYPES.items():
        for cls in types:
            name = cls.model_fields["type"].default
            schema = cls.model_json_schema(mode="serialization")
            for field in _ENVELOPE_FIELDS:
                schema["properties"].pop(field, None)
                if field in schema.get("required", []):
                    schema["required"].remove(field)
            schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
            schema["$id"] = f"{SCHEMA_BASE}{name}.v{SCHEMA_VERSION}.json"
            schema["description"] = (
                f"Data of CloudEvents type '{ce_type(name)}' on topic '<prefix>{topic}'. "
                "Envelope attributes travel as ce_* Kafka headers (binary mode).")
            schema["additionalProperties"] = False
            out[f"{name}.v{SCHEMA_VERSION}.json"] = schema
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas().items():
        (OUT / name).write_text(render(schema))
    sys.stdout.write(f"wrote {len(schemas())} schemas to {OUT}\n")


if __name__ == "__main__":
    main()
