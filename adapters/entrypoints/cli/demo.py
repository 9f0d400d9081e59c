"""The demo command: the manual's whole story on a throw-away embedded system."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer

from adapters.entrypoints.cli.common import (
    app,
    print_timeline,
)
from adapters.output import (
    out,
)
from projections.timeline import timeline


@app.command()
def demo(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per event.")] = False,
) -> None:
    """Run the manual's whole story on a throw-away embedded system and print its timeline."""
    from adapters.entrypoints.demo import demo_system, run_story  # keeps --help fast

    started = time.perf_counter()
    with demo_system() as (s, passphrase):
        run_story(s, passphrase)
        entries = timeline(s.portal, s.ca)
    if as_json:
        for entry in entries:
            sys.stdout.write(json.dumps(entry.as_json()) + "\n")
        return
    print_timeline(entries)
    out.print(f"\n{len(entries)} events in {time.perf_counter() - started:.2f} s")
