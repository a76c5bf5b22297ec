"""``norunlocal``: a client and ``target_help``, but no ``run_local``."""

from __future__ import annotations

from ._complete import CompleteClient, target_help  # noqa: F401


class NoRunLocalClient(CompleteClient):
    """A usable client in a module that lacks run_local."""
