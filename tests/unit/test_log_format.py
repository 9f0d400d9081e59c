"""PARTNER_CA_LOG_FORMAT=json: one JSON object per line with level, role and what the line is
about (issue 19, item 3)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from adapters.output import configure_logging


def test_json_lines_carry_level_role_and_the_lines_subject(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PARTNER_CA_LOG_FORMAT", "json")
    monkeypatch.setenv("PARTNER_CA_LOG_LEVEL", "INFO")
    configure_logging("ca")
    try:
        logging.getLogger("partner_ca.publishing").info(
            "CRL %d published", 7, extra={"crl_number": 7, "log_position": 42})
        line = capsys.readouterr().err.strip().splitlines()[-1]
        found = json.loads(line)
        assert (found["level"], found["role"], found["logger"], found["message"]) == (
            "INFO", "ca", "partner_ca.publishing", "CRL 7 published")
        assert (found["crl_number"], found["log_position"]) == (7, 42)
    finally:
        monkeypatch.delenv("PARTNER_CA_LOG_FORMAT")
        configure_logging("ca")


def test_every_recorded_event_is_a_line_naming_its_subject_and_log_position(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    from adapters.observability import log_recorded
    from tests.support import PASSWORD, enroll, make_system, register

    monkeypatch.setenv("PARTNER_CA_LOG_FORMAT", "json")
    monkeypatch.setenv("PARTNER_CA_LOG_LEVEL", "INFO")
    configure_logging("all")
    system = make_system(tmp_path)
    try:
        log_recorded(system.ca)
        log_recorded(system.portal)
        register(system)
        me = enroll(system)
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()
                 if line.startswith("{")]
    finally:
        system.close()
        monkeypatch.delenv("PARTNER_CA_LOG_FORMAT")
        configure_logging("all")
    events = [line for line in lines if line["logger"] == "partner_ca.events"]
    assert not [line for line in lines if "failed" in line["message"]]
    issued = [e for e in events if e["event"] == "CertificateIssued"]
    assert len(issued) == 1
    assert issued[0]["serial"] == me.picked.serial
    assert issued[0]["request_id"] == str(me.request_id)
    assert issued[0]["app"] == "ca" and issued[0]["role"] == "all"
    assert isinstance(issued[0]["log_position"], int)
    submitted = [e for e in events if e["event"] == "CsrSubmitted"]
    assert submitted and submitted[0]["request_id"] == str(me.request_id)
    text = "\n".join(json.dumps(line) for line in lines)
    assert PASSWORD not in text  # the revocation password never reaches a log line


def test_a_serving_role_does_not_look_up_callers_for_its_lines(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """configure_logging(role) sets the Logging HOWTO's optimisation flags (``_srcfile``
    None: no frame walk per line); this fails if the installed Python stops honouring it."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    monkeypatch.setattr(logging, "_srcfile", logging._srcfile)  # type: ignore[attr-defined]
    for name in ("logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))
    configure_logging("ca")
    handler = Keep()
    logger = logging.getLogger("partner_ca.events")
    logger.addHandler(handler)
    try:
        logger.warning("a line")
    finally:
        logger.removeHandler(handler)
    assert seen[-1].funcName == "(unknown function)" and seen[-1].lineno == 0
    assert seen[-1].thread is None and seen[-1].process is None
