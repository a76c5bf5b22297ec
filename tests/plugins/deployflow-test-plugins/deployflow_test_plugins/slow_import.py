"""``slowtarget``: a plugin that takes a while to import, to race many threads against one load."""

from __future__ import annotations

import time

from . import note_import
from ._complete import CompleteClient, run_local, target_help  # noqa: F401

note_import(__name__)
time.sleep(0.5)  # long enough for every racing thread to arrive while the import is in progress


class SlowClient(CompleteClient):
    """The client of the slow plugin."""
