"""What every command line of Partner CA shares: exit codes, one-line errors, results as text
or JSON, and settings that fail as a one-line error instead of a traceback.

Exit codes: 0 success; 1 a rule refused the command; 2 usage error; 3 set-up problem (not
initialised, no or wrong passphrase, bad configuration, store unreachable).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime
from typing import Annotated, Any, NoReturn
from uuid import UUID

import typer
from pydantic import ValidationError
from rich.console import Console

from adapters.settings import LOG_LEVELS, Settings, describe_settings_error

EXIT_REFUSED, EXIT_USAGE, EXIT_SETUP = 1, 2, 3

#: soft_wrap: a line is never broken at the terminal's (or a pipe's default 80) width, so
#: scripts can read what is printed; highlight off: no colour codes inside values.
out = Console(soft_wrap=True, highlight=False)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON (one object "
                                                      "per line).")]


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    sys.stderr.write(f"error: {message}\n")
    raise typer.Exit(code)


def load_settings() -> Settings:
    """Settings from the environment, or exit 3 naming each variable that is wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        fail(describe_settings_error(exc), EXIT_SETUP)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def result(as_json: bool, text: str, **data: Any) -> None:
    """A command's result: ``text`` for people, or ``data`` as one JSON object per line."""
    if as_json:
        sys.stdout.write(json.dumps(_plain(data)) + "\n")
        sys.stdout.flush()
    else:
        out.print(text, markup=False)


def configure_logging(role: str | None = None) -> None:
    """Log lines on stderr at PARTNER_CA_LOG_LEVEL (default INFO for ``serve``, WARNING for
    one-shot commands); Kafka's client library stays at WARNING unless DEBUG is asked for."""
    level_name = os.environ.get("PARTNER_CA_LOG_LEVEL", "").upper() or (
        "INFO" if role else "WARNING")
    if level_name not in LOG_LEVELS:
        fail(f"bad configuration: PARTNER_CA_LOG_LEVEL: {level_name!r} is not one of "
             f"{', '.join(LOG_LEVELS)}", EXIT_SETUP)
    prefix = f"{role} " if role else ""
    if role:
        # the Logging HOWTO's "Optimization": no line names its caller, thread or process, so
        # a long-running role need not look them up for every line (≈ 3 of ≈ 20 µs a line;
        # serve logs a line per recorded event)
        logging._srcfile = None  # type: ignore[attr-defined]
        logging.logThreads = False
        logging.logProcesses = False
        logging.logMultiprocessing = False
    if os.environ.get("PARTNER_CA_LOG_FORMAT", "text").lower() == "json":
        # one JSON object per line: time, level, role, logger, message, and what the line is
        # about where the code says it (serial, request_id, log_position, topic, offset, …)
        from pythonjsonlogger.json import JsonFormatter  # only when JSON logs are asked for

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"role": role or "cli"}))
        logging.basicConfig(level=level_name, force=True, handlers=[handler])
    else:
        logging.basicConfig(level=level_name, force=True, stream=sys.stderr,
                            format=f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.DEBUG if level_name == "DEBUG"
                                        else logging.WARNING)
    # joins, assignments and lost members of the inboxes' consumer groups are worth a line
    logging.getLogger("kafka.coordinator").setLevel(
        min(logging.INFO, logging.getLevelName(level_name)) if level_name != "DEBUG"
        else logging.DEBUG)
