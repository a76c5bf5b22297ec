"""The one way deployflow makes an event loop of its own: uvloop's when installed, else asyncio's.

A module of its own, importing nothing else of the project, so the local target's server and router
processes get it without the HTTP edges (:mod:`deployflow.aio` imports :mod:`deployflow.transport`,
and with it requests).
"""

from __future__ import annotations

import asyncio

__all__ = ["new_event_loop"]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when it is installed (the ``local`` extra brings it), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # uvloop is not available everywhere (Windows)
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
