"""Keeping secrets out of messages, reprs and logs.

Two nets catch a secret before text leaves the library:

* every credential a client is given is registered with :func:`register_secret`, and :func:`redact`
  replaces each registered value wherever it appears;
* well-known shapes of credentials are masked even when nobody registered them: the value after
  ``Authorization:``, ``Bearer``, ``token=``, ``password:``, ``api-key:`` and similar names, Databricks
  ``dapi`` tokens, OpenAI ``sk-`` keys, and the password in ``scheme://user:password@host``.

The second net masks *values*, not words. After a credential name, what follows is masked when it is
written as a value: quoted, or right after the ``=`` / ``:`` (``token=abc``, ``"api_key": "abc"``). When
a space separates them (``password: hunter22``, ``token = dapi...``, a config line ``token dapi...``)
it is masked only if it looks like a credential rather than a word or a count: at least six characters,
with a digit or a symbol such as ``-_./+=``. So "Pass host= and token= to get_deploy_client" keeps its "to", and placeholders
(``<token>``, ``TOKEN``, ``$DATABRICKS_TOKEN``, ``{token}``, ``None``, ``***``) are left alone everywhere.
A registered secret is masked whatever it looks like.

:class:`Secret` holds a credential where a plain string would be shown (a client's ``options``): its
``repr`` and ``str`` are masked, :meth:`Secret.reveal` gives the value, and it registers itself again
when unpickled in another process. :func:`protect_options` wraps the credential options of a client.

:class:`RedactingFilter` applies the same to log records. A logger's filters do not see records that
propagate from its children, so library modules take their logger from :func:`get_logger`, which
attaches the filter to each one.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "MASK",
    "Secret",
    "register_secret",
    "reveal",
    "protect_options",
    "redact",
    "RedactingFilter",
    "get_logger",
]

MASK = "***"

# Shorter strings would mask ordinary words; real credentials are much longer.
_MIN_SECRET_LENGTH = 6

_lock = threading.Lock()
_secrets: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None


class Secret:
    """A credential that shows as ``***``: ``repr``, ``str`` and formatting never reveal it.

    >>> token = Secret("dapi0123456789abcdef")
    >>> token, str(token), token.reveal()[:4]
    (Secret('***'), '***', 'dapi')

    Equal secrets compare and hash equal (options holding them stay usable as keys). Pickling keeps
    the value, so a client sent to a worker process still authenticates; unpickling registers it for
    redaction in that process. ``get_secret_value()`` is the same as :meth:`reveal` (pydantic's name).
    """

    __slots__ = ("_value",)

    def __init__(self, value: object) -> None:
        plain = reveal(value)
        if not isinstance(plain, str):
            raise TypeError(f"a Secret holds a string, got {type(plain).__name__}")
        self._value = plain
        register_secret(plain)

    def reveal(self) -> str:
        """The credential itself, for the one place that sends it."""
        return self._value

    get_secret_value = reveal

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Secret, (self._value,))


def reveal(value: Any) -> Any:
    """The plain value of a :class:`Secret` (or of a pydantic ``SecretStr``); anything else as it is."""
    if isinstance(value, Secret):
        return value.reveal()
    get = getattr(value, "get_secret_value", None)
    if callable(get) and not isinstance(value, str):
        return get()
    return value


# Header names whose values are credentials (Authorization, api-key, X-API-Key, Cookie, ...).
_CREDENTIAL_HEADER = re.compile(r"(?i)auth|token|key|secret|cookie|password|credential|signature")


def protect_options(options: Mapping[str, Any], secret_names: Iterable[str]) -> dict[str, Any]:
    """A copy of a client's ``options`` with its credentials wrapped in :class:`Secret`.

    Options named in ``secret_names`` are wrapped whole; when ``"headers"`` is among them, the values of
    its credential headers (``Authorization``, ``api-key``, ``X-API-Key``, ...) are wrapped instead.
    ``None`` and values that are already secrets stay as they are.
    """
    names = frozenset(secret_names)
    protected: dict[str, Any] = {}
    for name, value in options.items():
        if name not in names or value is None or isinstance(value, Secret):
            protected[name] = value
        elif name == "headers" and isinstance(value, Mapping):
            protected[name] = {
                key: Secret(item) if isinstance(reveal(item), str) and _CREDENTIAL_HEADER.search(str(key)) else item
                for key, item in value.items()
            }
        elif isinstance(reveal(value), str):
            protected[name] = Secret(value)
        else:
            protected[name] = value
    return protected


def register_secret(value: object) -> None:
    """Remember ``value`` so that :func:`redact` masks it from now on in this process."""
    global _secret_pattern
    if not isinstance(value, str):
        value = reveal(value)
        if not isinstance(value, str):
            return
    if not value or len(value) < _MIN_SECRET_LENGTH:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first, so a secret that contains another is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _secret_pattern = re.compile("|".join(re.escape(s) for s in ordered))


# --------------------------------------------------------------------------------------------------
# Credential shapes
# --------------------------------------------------------------------------------------------------

# Names after which a value is a credential. "tokens", "max_tokens" and the like do not match: the name
# must be followed by its separator.
_NAME = r"(?:token|password|passwd|secret|api[_-]?key|apikey|access[_-]?key|private[_-]?key)"
# What a credential value is made of: stops at spaces, quotes and the punctuation that closes it.
_VALUE = r"[^\s'\",&}()\[\]<>;]+"
# Words that follow "bearer" in prose rather than a token.
_BEARER_WORDS = frozenset({"token", "tokens", "auth", "authentication", "authorization", "header", "headers", "scheme", "credentials"})
_AUTH_SCHEMES = frozenset({"bearer", "basic", "token", "digest", "apikey"})
_LITERALS = frozenset({"none", "null", "true", "false", "nil", "undefined"})
# Words used in documentation where a value would go ("https://user:password@host").
_PLACEHOLDER_WORDS = frozenset({"password", "passwd", "pass", "secret", "token", "key", "apikey", "api_key", "value"})


def _is_placeholder(value: str) -> bool:
    """A documented stand-in, not a credential: <token>, {token}, $VAR, ${VAR}, TOKEN, None, ***."""
    if not value or value.startswith(("<", "{", "$", "%", MASK)) or set(value) <= {".", "*", "x", "X"}:
        return True
    if value.lower() in _LITERALS or value.lower() in _PLACEHOLDER_WORDS:
        return True
    return bool(re.fullmatch(r"[A-Z][A-Z_]*", value))  # an upper-case name such as TOKEN or YOUR_API_KEY


def _looks_like_a_credential(value: str) -> bool:
    """For a value set apart by a space: a word of prose has only letters, a number is short; a
    credential is longer and has more than letters."""
    return (
        len(value) >= _MIN_SECRET_LENGTH
        and not _is_placeholder(value)
        and bool(re.search(r"[0-9\-_./+=~]", value))
    )


def _mask_named_value(match: re.Match[str]) -> str:
    quoted, gap, value = match.group("q2"), match.group("gap"), match.group("value")
    as_value = (quoted or not gap) and not _is_placeholder(value)
    if as_value or (gap and not quoted and _looks_like_a_credential(value)):
        return match.group(0)[: match.start("value") - match.start(0)] + MASK
    return match.group(0)


def _mask_config_line(match: re.Match[str]) -> str:
    value = match.group("value")
    if len(value) >= 8 and _looks_like_a_credential(value) and re.search(r"[0-9]", value):
        return match.group(0)[: match.start("value") - match.start(0)] + MASK
    return match.group(0)


def _mask_authorization(match: re.Match[str]) -> str:
    # Whatever follows "Authorization:" is a credential, unless it is a placeholder or a bare scheme.
    value = match.group("value")
    if _is_placeholder(value) or value.lower() in _AUTH_SCHEMES:
        return match.group(0)
    return match.group(0)[: match.start("value") - match.start(0)] + MASK


def _mask_bearer(match: re.Match[str]) -> str:
    value = match.group("value")
    if value.lower() in _BEARER_WORDS or _is_placeholder(value):
        return match.group(0)
    return match.group(0)[: match.start("value") - match.start(0)] + MASK


def _mask_url_password(match: re.Match[str]) -> str:
    if _is_placeholder(match.group("value")):
        return match.group(0)
    return match.group("head") + MASK + "@"


_SHAPES: list[tuple[re.Pattern[str], Any]] = [
    # "Authorization: Bearer abc", "'Authorization': 'Basic abc'", "authorization=abc"
    (
        re.compile(
            r"(?i)\bauthorization['\"]?[ \t]*[:=][ \t]*['\"]?"
            r"(?:(?:bearer|basic|token|digest|apikey)[ \t]+)?(?P<value>[^\s'\",}]+)"
        ),
        _mask_authorization,
    ),
    # token=abc, "api_key": "abc", password: hunter22, X-API-Key: abc, token = dapi...
    (
        re.compile(
            rf"(?i){_NAME}['\"]?[ \t]*[:=](?P<gap>[ \t]*)(?P<q2>['\"]?)(?P<value>{_VALUE})"
        ),
        _mask_named_value,
    ),
    # A config line without a separator ("token dapi...", as configparser quotes a line it rejects).
    (
        re.compile(rf"(?im)(?:^|(?<=['\"]))[ \t]*(?i:{_NAME})[ \t]+(?P<value>{_VALUE})"),
        _mask_config_line,
    ),
    (re.compile(r"(?i)\bbearer\s+(?P<value>[A-Za-z0-9._~+/=-]{6,})"), _mask_bearer),
    (re.compile(r"\bdapi[0-9a-f]{16,}(-\d+)?\b"), MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}\b"), MASK),
    # user:password@host in URLs
    (re.compile(r"(?i)(?P<head>\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)(?P<value>[^/\s@]+)@"), _mask_url_password),
]


def redact(text: object) -> str:
    """Return ``text`` as a string with registered secrets and credential values masked."""
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
