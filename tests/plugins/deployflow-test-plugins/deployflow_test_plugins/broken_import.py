"""``brokenimport``: a plugin whose module fails while it is being imported."""

from __future__ import annotations

raise RuntimeError("this plugin cannot start: its configuration file is missing")
