"""A text model for the Airflow tests: answers :data:`REPLY` for every input row, text a
credential-masking pattern would match (served as ``python:<this file>:model``)."""

from __future__ import annotations

from typing import Any

REPLY = "Set password: hunter22 now"


def model(data: Any) -> list[str]:
    return [REPLY] * len(data)
