"""Deployment targets used only by deployflow's tests.

Every target here is reached through an entry point, never imported by the tests first, so the tests
see what a user with an installed plugin sees. Clients append what they were asked to do to
:data:`CALLS`, which the tests read and clear.
"""

from __future__ import annotations

from typing import Any

#: One entry per client call: ``(target name, method name, arguments as a dict)``.
CALLS: list[tuple[str, str, dict[str, Any]]] = []

#: How many times each plugin module's body has run in this process.
IMPORT_COUNTS: dict[str, int] = {}


def record(target: str, method: str, **arguments: Any) -> None:
    """Remember one call so a test can check what reached the plugin."""
    CALLS.append((target, method, arguments))


def note_import(module_name: str) -> None:
    """Count an execution of a plugin module's body (a cached registry imports each module once)."""
    IMPORT_COUNTS[module_name] = IMPORT_COUNTS.get(module_name, 0) + 1
