"""PARTNER_CA_LOG_FORMAT=json: one JSON object per line with level, role and what the line is
about (issue 19, item 3)."""

from __future__ import annotations

import json
import logging

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
