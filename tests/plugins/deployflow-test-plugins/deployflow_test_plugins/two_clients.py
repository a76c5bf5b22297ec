"""``twoclients``: two unrelated client classes defined in one module, so the choice is ambiguous."""

from __future__ import annotations

from ._complete import CompleteClient, run_local, target_help  # noqa: F401


class FirstClient(CompleteClient):
    """One candidate."""


class SecondClient(CompleteClient):
    """Another candidate, not derived from the first."""
