"""Stands in for a built-in target module in tests that add an entry to ``registry.BUILTIN_TARGETS``."""

from __future__ import annotations

from ._complete import CompleteClient, run_local, target_help  # noqa: F401


class BuiltinStandInClient(CompleteClient):
    """The "built-in" client."""
