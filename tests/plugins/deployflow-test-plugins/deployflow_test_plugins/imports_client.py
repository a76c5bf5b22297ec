"""``importsclient``: defines one client and imports two others (a base and a sibling's client).

Only the class defined here is this target's client; counting imported classes (MLflow's pitfall)
would find three and refuse the plugin.
"""

from __future__ import annotations

from ._complete import CompleteClient, run_local, target_help  # noqa: F401  (re-exported helpers)
from .recording import RecordingClient  # noqa: F401  (imported on purpose: must not count)


class ImportingClient(CompleteClient):
    """The one client this module defines."""
