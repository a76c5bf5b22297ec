"""What a promotion reports, where it keeps its progress, and the errors it raises."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from .. import jsoncodec
from ..errors import DeploymentError, InvalidInputError

__all__ = [
    "OUTCOMES",
    "PromotionReport",
    "PromotionError",
    "PromotionRejectedError",
    "PromotionRolledBackError",
    "PromotionInconclusiveError",
    "PromotionInterruptedError",
    "default_record_path",
    "load_record",
    "safe_name",
    "save_record",
]

RECORD_VERSION = 1
#: ``running`` while it works (and in the record of a run that was killed); the others are final,
#: except ``paused`` and ``inconclusive``, from which a new run continues.
OUTCOMES = ("running", "promoted", "rejected", "rolled_back", "paused", "inconclusive")


class PromotionReport(dict):
    """The report of a promotion: a plain JSON-safe dict (``json.dumps`` takes it as it is) with keys
    ``endpoint``, ``challenger``, ``champion``, ``outcome`` (one of :data:`OUTCOMES`), ``reason``,
    ``original_split``, ``split`` (the endpoint's split at the end), ``offline`` (the gate: metrics of
    both models and each check's verdict), ``steps`` (each traffic step: ``weight``, ``split``,
    ``samples``, ``metrics``, ``checks``, ``verdict``) and ``resumed`` (how many times a run took it
    over from an earlier, interrupted one)."""

    @property
    def outcome(self) -> str:
        return str(self.get("outcome"))

    @property
    def steps(self) -> list[dict[str, Any]]:
        return list(self.get("steps") or [])

    def to_json(self) -> str:
        return jsoncodec.dumps(dict(self)).decode()


class PromotionError(DeploymentError):
    """A promotion ended without promoting; ``report`` is its :class:`PromotionReport`."""

    default_error_code = "INVALID_STATE"

    def __init__(self, message: str, *, report: PromotionReport | dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.report = PromotionReport(report or {})


class PromotionRejectedError(PromotionError):
    """The offline gate failed: the challenger never got traffic."""


class PromotionRolledBackError(PromotionError):
    """A traffic step failed (or was inconclusive with ``on_inconclusive="rollback"``): the endpoint's
    traffic is back on the split it had before the promotion."""


class PromotionInconclusiveError(PromotionError):
    """A step had too few answers to judge, with ``on_inconclusive="fail"``: traffic stays on the last
    step that passed, and running the promotion again continues from there."""


class PromotionInterruptedError(PromotionError):
    """The run was asked to stop (``cancel``) before it finished: the split and the record stay as they
    were, and running it again resumes. Retryable."""

    default_retryable = True


def safe_name(name: str) -> str:
    """``name`` with every character but letters, digits and ``_.-`` replaced by ``_`` (for a file name)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def default_record_path(client: Any, endpoint: str, challenger: str) -> Path:
    """Where a promotion keeps its progress: beside the ``local`` target's state
    (``<state dir>/promotions/``), else in ``$DEPLOYFLOW_HOME/promotions/`` (default
    ``~/.deployflow``), one JSON file per endpoint and challenger."""
    home = getattr(client, "home", None)
    if isinstance(home, (str, os.PathLike)) and os.path.isdir(home):
        directory = Path(home) / "promotions"
    else:
        base = os.environ.get("DEPLOYFLOW_HOME") or os.path.join(os.path.expanduser("~"), ".deployflow")
        directory = Path(base) / "promotions"
    return directory / f"{safe_name(endpoint)}--{safe_name(challenger)}.json"


def load_record(path: str | os.PathLike[str]) -> PromotionReport | None:
    """The report kept at ``path``, or ``None`` when there is none."""
    try:
        text = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidInputError(f"Cannot read the promotion record {os.fspath(path)!r}: {exc}") from exc
    try:
        data = jsoncodec.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"The promotion record {os.fspath(path)!r} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
        raise InvalidInputError(f"The promotion record {os.fspath(path)!r} is not a version {RECORD_VERSION} record")
    return PromotionReport(data)


def save_record(path: str | os.PathLike[str], report: dict[str, Any]) -> None:
    """Write ``report`` to ``path`` atomically (a reader sees the old file or the new one, whole)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(jsoncodec.dumps(dict(report)))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
