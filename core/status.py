"""The readiness of a deployment or endpoint, as every target reports it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from .redaction import redact

__all__ = ["State", "Status"]


class State(str, enum.Enum):
    """Where a deployment or endpoint stands. A ``str`` enum, so it compares equal to its name."""

    PENDING = "PENDING"
    READY = "READY"
    FAILED = "FAILED"
    NOT_FOUND = "NOT_FOUND"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Status:
    """One observation of a deployment or endpoint.

    ``state`` is one of :class:`State`; ``reason`` is the target's own explanation (why it failed, what
    it is waiting for); ``raw`` is the target's record the state was read from, for callers that need
    more. ``raw`` is left out of equality and repr so statuses stay small in logs.
    """

    state: State
    reason: str | None = None
    raw: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.state, State):
            object.__setattr__(self, "state", State(str(self.state).upper()))
        if self.reason is not None:
            # Reasons quote server logs and error bodies, which may repeat a credential.
            object.__setattr__(self, "reason", redact(str(self.reason)))

    @property
    def is_ready(self) -> bool:
        return self.state is State.READY

    @property
    def is_terminal(self) -> bool:
        """True when waiting longer cannot change the outcome."""
        return self.state is State.READY or self.state is State.FAILED

    def to_dict(self) -> dict[str, Any]:
        """A small JSON-safe form, for XCom, Prefect results and logs."""
        return {"state": self.state.value, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.state.value} ({self.reason})" if self.reason else self.state.value


_READY_WORDS = {"READY", "INSERVICE", "IN_SERVICE", "RUNNING", "SERVING", "HEALTHY", "AVAILABLE", "SUCCEEDED"}
_FAILED_WORDS = {
    "FAILED",
    "FAILURE",
    "ERROR",
    "UPDATE_FAILED",
    "UPDATEROLLBACKFAILED",
    "OUTOFSERVICE",
    "CRASHED",
    "DEAD",
    "UNHEALTHY",
}


def status_from_record(record: Any) -> Status:
    """Guess a :class:`Status` from a plugin's deployment record.

    Used by the base class for plugins that do not override ``deployment_status``: MLflow's contract is
    that ``create_deployment`` returns only once the deployment can serve, so a record without any
    recognisable state field counts as READY; a ``state``/``status`` field with a known word decides.
    """
    if isinstance(record, dict):
        for key in ("state", "status", "State", "Status", "EndpointStatus"):
            value = record.get(key)
            if isinstance(value, dict):
                value = value.get("ready") or value.get("state") or value.get("status")
            if isinstance(value, str) and value:
                word = value.strip().upper().replace("-", "_").replace(" ", "_")
                compact = word.replace("_", "")
                reason = record.get("reason") or record.get("message") or record.get("FailureReason")
                if word in _READY_WORDS or compact in _READY_WORDS:
                    return Status(State.READY, raw=record)
                if word in _FAILED_WORDS or compact in _FAILED_WORDS:
                    return Status(State.FAILED, reason=str(reason) if reason else value, raw=record)
                if word == "NOT_FOUND":
                    return Status(State.NOT_FOUND, raw=record)
                return Status(State.PENDING, reason=value, raw=record)
    return Status(State.READY, raw=record)
