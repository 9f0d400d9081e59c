"""Two processes on the same stores pumping at once (a running ``serve`` beside a CLI
command): the page the other delivered first is skipped, nothing fails, nothing doubles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapters.client import softtoken
from ca_core.certificate import Certificate
from ca_core.eventmodel import all_events
from tests.support import MODULE, PASSWORD, USER, make_system, register


def test_a_page_delivered_by_another_process_first_is_skipped(
        tmp_path: Path, database_url: str) -> None:
    serving = make_system(tmp_path, database_url)
    command = make_system(tmp_path, database_url, initialise=False)
    try:
        register(serving)
        _, otp = serving.portal.issue_otp(USER, MODULE, issued_by="admin")
        session = serving.portal.login_with_otp(USER, otp)
        key = softtoken.new_key()
        serving.portal.submit_request(session, softtoken.make_csr(key, USER),
                                      PASSWORD, PASSWORD)
        source = command.portal.recorder
        select = source.select_notifications

        def raced(*args: Any, **kwargs: Any) -> Any:
            page = select(*args, **kwargs)
            if page:
                source.select_notifications = select  # once: the other process wins this page
                serving.pump()
            return page

        source.select_notifications = raced  # type: ignore[method-assign]
        command.pump()  # would fail with the stores' unique constraint before
        serving.pump()
        issued = [e for _, e in all_events(serving.ca)
                  if isinstance(e, Certificate.CertificateIssued)]
        assert len(issued) == 1, issued
        assert source.select_notifications == select  # the race really happened
    finally:
        command.close()
        serving.close()
