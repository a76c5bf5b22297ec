"""How promotion reads and sets an endpoint's traffic split: the interface a target declares.

A target whose endpoints split traffic gives its client two methods:

``get_traffic_split(endpoint: str) -> dict[str, float]``
    member name (a deployment, served entity or variant) -> percent of the endpoint's requests; the
    percents add up to 100.
``set_traffic_split(endpoint: str, split: Mapping[str, float], *, wait: bool = True) -> dict``
    give each member its percent (a member left out gets none); with ``wait`` the new split is in
    force when the call returns.

and may give a third, optional one:

``traffic_member_target(endpoint: str, member: str) -> dict[str, str]``
    the ``predict`` / :func:`deployflow.batch_predict` keyword arguments that score ``member`` alone,
    bypassing the split. Without it promotion uses ``{"deployment_name": member}`` (the ``local``
    target's form).

The ``local``, ``databricks`` and ``sagemaker`` targets have them. A client without the first two
raises :class:`~deployflow.errors.NotSupportedError` naming them.

Mirroring (shadow traffic: a copy of each request sent to the challenger, its answer discarded) is not
part of the interface: no built-in target offers it through its API, so ``mirror=True`` raises
:class:`~deployflow.errors.NotSupportedError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidInputError, NotSupportedError
from ..redaction import redact

__all__ = ["read_split", "write_split", "member_target", "step_split", "same_split", "check_split_support"]

_TOLERANCE = 0.5  # percent: targets round (Databricks keeps whole percents)


def _target_name(client: Any) -> str:
    return redact(getattr(client, "target_uri", None) or type(client).__name__)


def check_split_support(client: Any) -> None:
    """Raise :class:`NotSupportedError` unless ``client`` has both split methods."""
    missing = [name for name in ("get_traffic_split", "set_traffic_split") if not callable(getattr(client, name, None))]
    if missing:
        raise NotSupportedError(
            f"Target {_target_name(client)!r} cannot split an endpoint's traffic: its client lacks "
            f"{' and '.join(missing)}. Promotion needs get_traffic_split(endpoint) -> {{member: percent}} and "
            f"set_traffic_split(endpoint, split, *, wait=True) (see deployflow.promotion.split)"
        )


def read_split(client: Any, endpoint: str) -> dict[str, float]:
    """The endpoint's current split, checked: numbers from 0 to 100 adding up to 100."""
    split = client.get_traffic_split(endpoint)
    if not isinstance(split, Mapping):
        raise InvalidInputError(f"get_traffic_split({endpoint!r}) returned {type(split).__name__}, not a mapping")
    result = {str(name): float(percent) for name, percent in split.items()}
    total = sum(result.values())
    if result and abs(total - 100.0) > _TOLERANCE:
        raise InvalidInputError(f"The traffic split of endpoint {endpoint!r} adds up to {total:g}, not 100: {result}")
    return result


def write_split(client: Any, endpoint: str, split: Mapping[str, float]) -> None:
    client.set_traffic_split(endpoint, dict(split), wait=True)


def member_target(client: Any, endpoint: str, member: str) -> dict[str, str]:
    """The keyword arguments that score ``member`` of ``endpoint`` alone."""
    method = getattr(client, "traffic_member_target", None)
    if callable(method):
        return dict(method(endpoint, member))
    return {"deployment_name": member}


def step_split(original: Mapping[str, float], challenger: str, weight: float) -> dict[str, float]:
    """The split that gives ``challenger`` ``weight`` percent and the other members the rest, in
    proportion to their shares in ``original`` (all to them equally when they had none).

    >>> step_split({"blue": 100.0}, "green", 10)
    {'blue': 90.0, 'green': 10.0}
    """
    others = {name: share for name, share in original.items() if name != challenger}
    rest = 100.0 - weight
    total = sum(others.values())
    if total > 0:
        split = {name: rest * share / total for name, share in others.items()}
    elif others:
        split = {name: rest / len(others) for name in others}
    else:
        split = {}
    split[challenger] = float(weight)
    return {name: round(share, 6) for name, share in split.items()}


def same_split(first: Mapping[str, float], second: Mapping[str, float]) -> bool:
    """Whether two splits give every member the same share (within rounding); absent means 0."""
    names = set(first) | set(second)
    return all(math.isclose(first.get(n, 0.0), second.get(n, 0.0), abs_tol=_TOLERANCE) for n in names)
