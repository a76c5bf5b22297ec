"""``shadowtarget`` as an entry point: the tests also declare a built-in of that name, which must win."""

from __future__ import annotations

from ._complete import CompleteClient, run_local, target_help  # noqa: F401


class ShadowPluginClient(CompleteClient):
    """Must never be used while a built-in named ``shadowtarget`` exists."""
