"""functools (Python 3.11) past its public API: a ``singledispatchmethod``'s dispatcher.

In Python 3.11 a ``singledispatchmethod`` re-dispatches (and wraps) on every call; replay
(adapters/audit/replay.py) calls a projection's handler hundreds of thousands of times, so
it looks the handler up once per event type here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any


def handler(obj: Any, method: str, argument_type: type) -> Callable[..., Any]:
    """``obj.<method>`` as dispatched for ``argument_type``, bound to ``obj``; the plain
    method when it is not a ``singledispatchmethod``."""
    descriptor = inspect.getattr_static(type(obj), method)
    dispatcher = getattr(descriptor, "dispatcher", None)
    if dispatcher is None:
        return getattr(obj, method)  # type: ignore[no-any-return]
    return functools.partial(dispatcher.dispatch(argument_type), obj)


def problems() -> list[str]:
    class Probe:
        @functools.singledispatchmethod
        def handle(self, value: object) -> str:
            return "object"

        @handle.register
        def _(self, value: int) -> str:
            return "int"

    try:
        return [] if handler(Probe(), "handle", int)(1) == "int" else [
            "a singledispatchmethod's dispatcher dispatches differently"]
    except (AttributeError, TypeError) as exc:
        return [f"singledispatchmethod has no usable dispatcher: {exc}"]
