"""``notargethelp``: a client and ``run_local``, but no ``target_help``."""

from __future__ import annotations

from ._complete import CompleteClient, run_local  # noqa: F401


class NoTargetHelpClient(CompleteClient):
    """A usable client in a module that lacks target_help."""
