"""Keeping secrets out of messages, reprs and logs.

Two nets catch a secret before text leaves the library:

* every credential a client is given is registered with :func:`register_secret`, and :func:`redact`
  replaces each registered value wherever it appears;
* well-known shapes of credentials (``Authorization`` headers, ``Bearer`` tokens, ``token=...`` /
  ``password=...`` pairs, Databricks ``dapi`` tokens, OpenAI ``sk-`` keys, AWS secret pairs) are masked
  even when nobody registered them.

:class:`RedactingFilter` applies the same to log records. A logger's filters do not see records that
propagate from its children, so library modules take their logger from :func:`get_logger`, which
attaches the filter to each one.
"""

from __future__ import annotations

import logging
import re
import threading

__all__ = ["MASK", "register_secret", "redact", "RedactingFilter", "get_logger"]

MASK = "***"

# Shorter strings would mask ordinary words; real credentials are much longer.
_MIN_SECRET_LENGTH = 6

_lock = threading.Lock()
_secrets: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None

_SHAPES = [
    # "Authorization: Bearer abc", "'Authorization': 'Basic abc'"
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(bearer|basic|token)?\s*[^\s'\",}]+"), r"\1\2 " + MASK),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + MASK),
    # token=..., "api_key": "...", password: ...
    (
        re.compile(
            r"(?i)((?:access_?token|api_?key|apikey|auth_?token|token|password|passwd|secret|"
            r"client_secret|secret_access_key|aws_secret_access_key|session_token)['\"]?\s*[:=]\s*['\"]?)"
            r"[^\s'\",&}()\[\]<>;]+"
        ),
        r"\1" + MASK,
    ),
    (re.compile(r"\bdapi[0-9a-f]{16,}(-\d+)?\b"), MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}\b"), MASK),
    # user:password@host in URLs
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@"), r"\1" + MASK + "@"),
]


def register_secret(value: object) -> None:
    """Remember ``value`` so that :func:`redact` masks it from now on in this process."""
    global _secret_pattern
    if not isinstance(value, str):
        get = getattr(value, "get_secret_value", None)  # pydantic SecretStr
        value = get() if callable(get) else None
    if not value or len(value) < _MIN_SECRET_LENGTH:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first, so a secret that contains another is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _secret_pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: object) -> str:
    """Return ``text`` as a string with registered secrets and credential-shaped values masked."""
    result = text if isinstance(text, str) else str(text)
    pattern = _secret_pattern
    if pattern is not None:
        result = pattern.sub(MASK, result)
    for shape, replacement in _SHAPES:
        result = shape.sub(replacement, result)
    return result


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message of every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the logger's problem, not ours
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


_filter = RedactingFilter()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the redacting filter attached (once)."""
    logger = logging.getLogger(name)
    if _filter not in logger.filters:
        logger.addFilter(_filter)
    return logger
