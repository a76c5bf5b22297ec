"""Promotion: validate a challenger offline, shift an endpoint's traffic to it in steps judged with
golden traffic sent through the endpoint, then promote it or put the traffic back.

:func:`promote` is the entry point; :mod:`deployflow.promotion.checks` describes the check strings and
metrics, :mod:`deployflow.promotion.split` the two client methods a target declares to take part.
Needs the ``batch`` extra (scoring goes through :func:`deployflow.batch_predict`).
"""

from __future__ import annotations

from ._promote import DEFAULT_STEPS, ON_INCONCLUSIVE, parse_steps, promote
from .checks import Check, parse_check, parse_checks
from .report import (
    OUTCOMES,
    PromotionError,
    PromotionInconclusiveError,
    PromotionInterruptedError,
    PromotionRejectedError,
    PromotionReport,
    PromotionRolledBackError,
    default_record_path,
    load_record,
)

__all__ = [
    "promote",
    "PromotionReport",
    "PromotionError",
    "PromotionRejectedError",
    "PromotionRolledBackError",
    "PromotionInconclusiveError",
    "PromotionInterruptedError",
    "Check",
    "parse_check",
    "parse_checks",
    "parse_steps",
    "default_record_path",
    "load_record",
    "OUTCOMES",
    "ON_INCONCLUSIVE",
    "DEFAULT_STEPS",
]
