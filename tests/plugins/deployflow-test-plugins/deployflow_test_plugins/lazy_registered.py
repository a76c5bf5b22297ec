"""A module registered by dotted path in tests; importing it is visible through ``IMPORT_COUNTS``."""

from __future__ import annotations

from . import note_import
from ._complete import CompleteClient, run_local, target_help  # noqa: F401

note_import(__name__)


class LazyRegisteredClient(CompleteClient):
    """The client of a target registered with ``register_target(name, "dotted.path")``."""
