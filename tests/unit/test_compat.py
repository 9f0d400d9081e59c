"""What the code takes from libraries past their public API still holds for the installed
versions: these fail loudly when a pinned library changes underneath (docs/architecture.md)."""

from __future__ import annotations

from adapters.compat import kafka_python, python_pkcs11, singledispatch, uvicorn
from ca_core import compat_eventsourcing


def test_eventsourcing_internals_we_call_are_there_as_we_call_them() -> None:
    assert compat_eventsourcing.problems() == []


def test_kafka_python_consumer_still_has_the_io_wakeup_we_nudge() -> None:
    assert kafka_python.problems() == []


def test_python_pkcs11_still_loads_modules_as_the_os_locking_relies_on() -> None:
    assert python_pkcs11.problems() == []


def test_uvicorn_protocol_callbacks_the_deadlines_hook_are_there() -> None:
    assert uvicorn.problems() == []


def test_singledispatchmethod_dispatcher_is_there() -> None:
    assert singledispatch.problems() == []


def test_a_changed_library_is_reported(monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(compat_eventsourcing, "PINNED", "9.4.0")
    assert any("9.4.0" in p for p in compat_eventsourcing.problems())
    monkeypatch.setattr(compat_eventsourcing, "RELIED_UPON", (
        ("eventsourcing.application:Application", "_no_such_step", ("self",)),))
    assert any("_no_such_step is gone" in p for p in compat_eventsourcing.problems())
