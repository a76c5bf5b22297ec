"""The one HTTP layer every HTTP target uses: pooled connections, one retry policy, domain errors.

Retry policy, in short:

* **What is retried** (:func:`is_retryable`): HTTP 429, 500, 502 and 503 (``RetryPolicy.retry_statuses``,
  which may be narrowed, or widened only to 504), and connection failures: refused, reset or aborted
  connections and connect timeouts (the request never reached the service, or the answer was cut off).
  A *read* timeout is not retried unless ``retry_on_timeout=True``: a slow model is not made faster by
  asking again, and a repeated POST may do the work twice. Everything else (4xx, 504, TLS failures,
  invalid URLs) fails at once.
* **How long to wait**: the service's ``Retry-After`` (seconds or an HTTP date) when it sent one, capped
  to ``max_retry_after``; otherwise exponential backoff ``backoff_factor * 2 ** (retry - 1)`` capped to
  ``backoff_max``, with jitter that shortens each wait by up to ``jitter`` of itself.
* **When to stop**: after ``max_retries`` retries (``max_retries + 1`` attempts), or when the next wait
  would leave no time before the total deadline (``total_timeout``, or ``predict_total_timeout`` for
  ``kind="predict"``, measured on the monotonic clock from the start of the call). Such a wait is not
  taken: the call gives up at once with the last error. Each attempt's connect and read timeouts are
  clipped to the time left before the deadline.
* **What is raised**: the last domain error (see :mod:`deployflow.errors`), chained ``from`` the
  ``requests`` exception when there was one; when the transport gave up, its message says after how many
  attempts and why. Each retry is logged at WARNING on ``deployflow.transport`` without headers or bodies.

Thread safety: one :class:`HttpTransport` may be shared by many threads (batch scoring runs chunks in a
thread pool, Airflow triggers call the sync client through ``asyncio.to_thread``). It holds one
``requests.Session`` whose connection pool keeps ``pool_maxsize`` connections per host; size it to the
number of concurrent callers (more callers still work, but the extra connections are not reused). The
session must not be reconfigured while requests are in flight.
"""

from __future__ import annotations

import email.utils
import json as stdlib_json
import logging
import math
import os
import random
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

import orjson
import requests
import requests.adapters
import requests.exceptions
import tenacity
import urllib3

from .errors import (
    DeploymentError,
    InvalidInputError,
    RemoteError,
    RequestTimeoutError,
    TransientError,
    error_for_status,
)
from .redaction import RedactingFilter, redact, register_secret

__all__ = [
    "RetryPolicy",
    "HttpSettings",
    "HttpTransport",
    "error_from_answer",
    "is_retryable",
    "parse_retry_after",
    "parse_error_body",
    "encode_json",
]

logger = logging.getLogger(__name__)
# A filter on a parent logger does not see records created here, so this logger gets its own.
logger.addFilter(RedactingFilter())

RequestKind = Literal["control", "predict"]

#: Statuses a policy may retry. 504 is allowed but not a default: the gateway already waited.
RETRYABLE_STATUS_CHOICES = frozenset({429, 500, 502, 503, 504})
DEFAULT_RETRY_STATUSES = frozenset({429, 500, 502, 503})

# An attempt with less time than this before the deadline would only produce a misleading timeout.
_MIN_ATTEMPT_SECONDS = 0.05
# Bounds on what is read and kept from an error answer.
_MAX_ERROR_READ_BYTES = 64 * 1024
_MAX_EXCERPT_CHARS = 500
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_JSON_CONTENT_TYPE = {"Content-Type": "application/json"}  # requests copies it; never mutated
_SENSITIVE_HEADER = re.compile(r"(?i)auth|token|key|secret|cookie|password|credential|signature")
_MLFLOW_STYLE_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------


def _invalid(source: str, value: object, expected: str) -> InvalidInputError:
    return InvalidInputError(f"{source} must be {expected}, got {value!r}")


def _as_number(value: object, source: str, *, positive: bool) -> float:
    expected = "a positive number" if positive else "a number >= 0"
    if isinstance(value, bool):
        raise _invalid(source, value, expected)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise _invalid(source, value, expected) from None
    if not isinstance(value, (int, float)):
        raise _invalid(source, value, expected)
    number = float(value)
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise _invalid(source, value, expected)
    return number


def _as_int(value: object, source: str, *, minimum: int) -> int:
    expected = f"an integer >= {minimum}"
    if isinstance(value, bool):
        raise _invalid(source, value, expected)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise _invalid(source, value, expected) from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < minimum:
        raise _invalid(source, value, expected)
    return value


_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def _as_bool(value: object, source: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise _invalid(source, value, "true or false")


def _as_verify(value: object, source: str) -> bool | str:
    if isinstance(value, str) and value.strip().lower() not in _TRUE_WORDS | _FALSE_WORDS:
        path = os.path.expanduser(value.strip())
        if not os.path.exists(path):
            raise _invalid(source, value, "true, false or the path of a CA bundle that exists")
        return path
    return _as_bool(value, source)


@dataclass(frozen=True)
class RetryPolicy:
    """How a single HTTP call is retried. Immutable; see the module docstring for the rules.

    ``RetryPolicy(max_retries=0)`` disables retries. ``retry_statuses`` may only name statuses from
    {429, 500, 502, 503, 504}: a policy can be made stricter, but cannot make a 400 "transient".
    """

    max_retries: int = 5
    backoff_factor: float = 1.0
    backoff_max: float = 30.0
    jitter: float = 0.5
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    respect_retry_after: bool = True
    max_retry_after: float = 60.0
    retry_on_timeout: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "max_retries", _as_int(self.max_retries, "max_retries", minimum=0))
        for name in ("backoff_factor", "backoff_max", "max_retry_after"):
            set_(self, name, _as_number(getattr(self, name), name, positive=False))
        jitter = _as_number(self.jitter, "jitter", positive=False)
        if jitter > 1:
            raise _invalid("jitter", self.jitter, "between 0 and 1")
        set_(self, "jitter", jitter)
        statuses = frozenset(self.retry_statuses)
        if not statuses <= RETRYABLE_STATUS_CHOICES:
            raise _invalid("retry_statuses", sorted(statuses), f"a subset of {sorted(RETRYABLE_STATUS_CHOICES)}")
        set_(self, "retry_statuses", statuses)
        set_(self, "respect_retry_after", _as_bool(self.respect_retry_after, "respect_retry_after"))
        set_(self, "retry_on_timeout", _as_bool(self.retry_on_timeout, "retry_on_timeout"))

    def __repr__(self) -> str:
        # The default repr would list retry_statuses in hash order; sorted reads better.
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in ("max_retries", "backoff_factor", "backoff_max", "jitter")
        )
        statuses = ", ".join(str(status) for status in sorted(self.retry_statuses))
        return (
            f"RetryPolicy({fields}, retry_statuses=frozenset({{{statuses}}}), "
            f"respect_retry_after={self.respect_retry_after!r}, max_retry_after={self.max_retry_after!r}, "
            f"retry_on_timeout={self.retry_on_timeout!r})"
        )

    @property
    def max_attempts(self) -> int:
        """Attempts including the first one."""
        return self.max_retries + 1

    def backoff(self, retry_number: int) -> float:
        """Seconds to wait before retry number ``retry_number`` (1 for the first retry), with jitter."""
        exponent = min(max(retry_number - 1, 0), 60)  # 2**60 seconds is far past any cap
        base = min(self.backoff_max, self.backoff_factor * (2.0**exponent))
        return base * (1.0 - self.jitter * random.random())


@dataclass(frozen=True)
class _Setting:
    option: str
    env: tuple[str, ...]
    kind: str  # "seconds", "seconds_or_zero", "count", "positive_count", "bool", "verify"


# Where each setting can come from. Options beat environment variables, which beat the defaults.
_MLFLOW_TIMEOUT = "MLFLOW_DEPLOYMENT_CLIENT_HTTP_REQUEST_TIMEOUT"
_MLFLOW_PREDICT_TIMEOUT = "MLFLOW_DEPLOYMENT_PREDICT_TIMEOUT"
_MLFLOW_PREDICT_TOTAL_TIMEOUT = "MLFLOW_DEPLOYMENT_PREDICT_TOTAL_TIMEOUT"
_SETTINGS: dict[str, _Setting] = {
    "timeout": _Setting("timeout", ("DEPLOYFLOW_HTTP_TIMEOUT", _MLFLOW_TIMEOUT), "seconds"),
    "connect_timeout": _Setting("connect_timeout", ("DEPLOYFLOW_CONNECT_TIMEOUT",), "seconds"),
    "predict_timeout": _Setting("predict_timeout", ("DEPLOYFLOW_PREDICT_TIMEOUT", _MLFLOW_PREDICT_TIMEOUT), "seconds"),
    "total_timeout": _Setting("total_timeout", ("DEPLOYFLOW_HTTP_TOTAL_TIMEOUT",), "seconds"),
    "predict_total_timeout": _Setting(
        "predict_total_timeout", ("DEPLOYFLOW_PREDICT_TOTAL_TIMEOUT", _MLFLOW_PREDICT_TOTAL_TIMEOUT), "seconds"
    ),
    "pool_maxsize": _Setting("pool_maxsize", ("DEPLOYFLOW_HTTP_POOL_MAXSIZE",), "positive_count"),
    "verify": _Setting("verify", (), "verify"),
    # RetryPolicy fields
    "max_retries": _Setting("max_retries", ("DEPLOYFLOW_MAX_RETRIES",), "count"),
    "backoff_factor": _Setting("backoff_factor", ("DEPLOYFLOW_BACKOFF_FACTOR",), "seconds_or_zero"),
    "backoff_max": _Setting("backoff_max", ("DEPLOYFLOW_BACKOFF_MAX",), "seconds_or_zero"),
    "max_retry_after": _Setting("max_retry_after", ("DEPLOYFLOW_MAX_RETRY_AFTER",), "seconds_or_zero"),
    "retry_on_timeout": _Setting("retry_on_timeout", ("DEPLOYFLOW_RETRY_ON_TIMEOUT",), "bool"),
}
_RETRY_FIELDS = frozenset({"max_retries", "backoff_factor", "backoff_max", "max_retry_after", "retry_on_timeout"})


def _convert(kind: str, value: object, source: str) -> Any:
    if kind == "seconds":
        return _as_number(value, source, positive=True)
    if kind == "seconds_or_zero":
        return _as_number(value, source, positive=False)
    if kind == "count":
        return _as_int(value, source, minimum=0)
    if kind == "positive_count":
        return _as_int(value, source, minimum=1)
    if kind == "bool":
        return _as_bool(value, source)
    return _as_verify(value, source)


@dataclass(frozen=True)
class HttpSettings:
    """Timeouts (seconds), retry policy and connection pool of one :class:`HttpTransport`. Immutable.

    ``timeout`` and ``predict_timeout`` bound each attempt's wait for an answer (control calls and
    ``kind="predict"`` calls); ``total_timeout`` and ``predict_total_timeout`` bound a whole call,
    retries and waits included; ``connect_timeout`` bounds opening a connection.

    Build it from client options with :meth:`from_options`; change a copy with ``dataclasses.replace``.
    """

    timeout: float = 300.0
    connect_timeout: float = 10.0
    predict_timeout: float = 120.0
    total_timeout: float = 600.0
    predict_total_timeout: float = 600.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    pool_maxsize: int = 16
    verify: bool | str = True

    #: The client option names :meth:`from_options` reads; every other option belongs to the client.
    OPTION_NAMES: ClassVar[frozenset[str]] = frozenset(setting.option for setting in _SETTINGS.values())

    def __post_init__(self) -> None:
        for name in ("timeout", "connect_timeout", "predict_timeout", "total_timeout", "predict_total_timeout"):
            object.__setattr__(self, name, _as_number(getattr(self, name), name, positive=True))
        object.__setattr__(self, "pool_maxsize", _as_int(self.pool_maxsize, "pool_maxsize", minimum=1))
        object.__setattr__(self, "verify", _as_verify(self.verify, "verify"))
        if not isinstance(self.retry, RetryPolicy):
            raise _invalid("retry", self.retry, "a RetryPolicy")

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> HttpSettings:
        """Read the settings from client options, then environment variables, then the defaults.

        Only the keys in :attr:`OPTION_NAMES` are read; an option whose value is ``None`` counts as
        not given. A value that is not valid raises :class:`~deployflow.errors.InvalidInputError`
        naming the option or environment variable it came from.

        >>> HttpSettings.from_options({"timeout": "30", "max_retries": 2}, environ={}).timeout
        30.0
        """
        options = options or {}
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, setting in _SETTINGS.items():
            raw = options.get(setting.option)
            if raw is not None:
                values[name] = _convert(setting.kind, raw, f"option {setting.option!r}")
                continue
            for variable in setting.env:
                raw = environ.get(variable)
                if raw is not None and raw.strip():
                    values[name] = _convert(setting.kind, raw, f"environment variable {variable}")
                    break
        retry_values = {name: values.pop(name) for name in _RETRY_FIELDS if name in values}
        return cls(retry=RetryPolicy(**retry_values), **values)

    @classmethod
    def split_options(cls, options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split client options into ``(http_options, other_options)``.

        A client passes ``http_options`` to :meth:`from_options` and checks ``other_options`` against
        the options it knows, so a misspelt option is an error rather than silently ignored.
        """
        http = {key: value for key, value in options.items() if key in cls.OPTION_NAMES}
        rest = {key: value for key, value in options.items() if key not in cls.OPTION_NAMES}
        return http, rest

    def timeouts_for(self, kind: str) -> tuple[float, float]:
        """``(per-attempt read timeout, total timeout)`` for a call of this kind."""
        if kind == "predict":
            return self.predict_timeout, self.predict_total_timeout
        if kind == "control":
            return self.timeout, self.total_timeout
        raise _invalid("kind", kind, "'control' or 'predict'")


# --------------------------------------------------------------------------------------------------
# Helpers shared with targets
# --------------------------------------------------------------------------------------------------


def error_from_answer(
    method: str, path: str, status: int, reason: str | None, headers: Mapping[str, str], raw: bytes
) -> DeploymentError:
    """The domain error for an HTTP error answer: its class from the status and the service's
    ``error_code``, its message from the service's own (redacted, clipped), ``Retry-After`` kept.
    ``headers`` must look names up case-insensitively (requests' and aiohttp's headers both do)."""
    text = raw[:_MAX_ERROR_READ_BYTES].decode("utf-8", "replace")
    code, server_message = parse_error_body(text)
    excerpt = text.strip()[:_MAX_EXCERPT_CHARS] or None
    if server_message is None:
        server_message = excerpt or reason or ""
    retry_after = parse_retry_after(headers.get("Retry-After"))
    error = error_for_status(status, "", error_code=code, body=excerpt, retry_after=retry_after)
    message = f"{method} {path} failed with HTTP {status} ({error.error_code})"
    if server_message:
        message += f": {server_message.strip()[:_MAX_EXCERPT_CHARS]}"
    _set_message(error, message)
    return error


def is_retryable(error: BaseException, policy: RetryPolicy) -> bool:
    """Whether ``policy`` retries a call that failed with ``error`` (a domain error).

    Retried: HTTP statuses in ``policy.retry_statuses`` and connection failures. A read timeout only
    with ``policy.retry_on_timeout``. Nothing else.
    """
    if not isinstance(error, TransientError):
        return False
    if error.status_code is not None:
        return error.status_code in policy.retry_statuses
    if isinstance(error, RequestTimeoutError):
        return policy.retry_on_timeout
    return True  # the connection failed before or while the answer came


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta seconds or HTTP date), ``None`` if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # HTTP dates are GMT
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def parse_error_body(text: str) -> tuple[str | None, str | None]:
    """``(error_code, message)`` from an error answer's body, for the body styles services use.

    Understood: MLflow and Databricks ``{"error_code": ..., "message": ...}``; OpenAI
    ``{"error": {"message": ..., "code"/"type": ...}}`` and ``{"error": "..."}``; FastAPI
    ``{"detail": ...}``. ``error_code`` is returned only when it is MLflow-style (``UPPER_SNAKE``);
    another service's code is appended to the message instead. Returns ``(None, None)`` for other
    bodies.
    """
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None, None
    try:
        data = _loads(stripped)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    code = data.get("error_code")
    message = data.get("message")
    nested = data.get("error")
    if isinstance(nested, dict):
        message = message if message is not None else nested.get("message")
        code = code if code is not None else (nested.get("code") or nested.get("type"))
    elif isinstance(nested, str) and message is None:
        message = nested
    detail = data.get("detail")
    if message is None and detail is not None:
        message = detail if isinstance(detail, str) else orjson.dumps(detail).decode()
    mlflow_code: str | None = None
    if isinstance(code, str) and _MLFLOW_STYLE_CODE.match(code):
        mlflow_code = code
    elif code is not None and code != "":
        message = f"{message} [{code}]" if message is not None else f"[{code}]"
    if message is not None and not isinstance(message, str):
        message = orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS).decode()
    return mlflow_code, message


def _json_default(value: Any) -> Any:
    # Non-contiguous numpy arrays, pandas Series and similar: anything that can become a list.
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def encode_json(payload: Any) -> bytes:
    """Encode ``payload`` as JSON bytes with orjson: numpy arrays and scalars allowed, NaN becomes null.

    Raises :class:`~deployflow.errors.InvalidInputError` for what cannot be encoded.
    """
    try:
        return orjson.dumps(payload, default=_json_default, option=_JSON_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise InvalidInputError(f"the request body cannot be encoded as JSON: {exc}") from exc


def _loads(content: bytes | str) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        # Python servers (MLflow's among them) write NaN and Infinity, which orjson refuses.
        return stdlib_json.loads(content)


@lru_cache(maxsize=1)
def _user_agent() -> str:
    try:
        from importlib.metadata import version

        return f"deployflow/{version('deployflow')}"
    except Exception:  # not installed as a distribution (a source checkout)
        return "deployflow"


# --------------------------------------------------------------------------------------------------
# The transport
# --------------------------------------------------------------------------------------------------


class _Call:
    """What one ``request()`` needs across its attempts. Reached from tenacity's callbacks via args."""

    __slots__ = (
        "method", "url", "path", "kwargs", "read_timeout", "total_timeout", "deadline",
        "max_attempts", "attempts", "planned_for", "planned_wait", "gave_up", "stream", "first_error",
    )

    def __init__(self, method: str, url: str, path: str, kwargs: dict[str, Any], read_timeout: float,
                 total_timeout: float, max_attempts: int, stream: bool) -> None:
        self.method = method
        self.url = url
        self.path = path
        self.kwargs = kwargs
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self.deadline = time.monotonic() + total_timeout
        self.max_attempts = max_attempts
        self.stream = stream
        self.attempts = 0
        self.planned_for = 0
        self.planned_wait = 0.0
        self.gave_up: str | None = None
        self.first_error: DeploymentError | None = None


def _set_message(error: DeploymentError, message: str) -> None:
    error.message = redact(message)
    error.args = (error.message,)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _root_reason(exc: BaseException) -> str:
    """The innermost OS-level reason of a requests/urllib3 failure, e.g. '[Errno 111] Connection refused'.

    The wrappers' own messages repeat the URL (query string included), so they are the last resort.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    first_os_error: OSError | None = None
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError):
            if current.strerror:
                return f"[Errno {current.errno}] {current.strerror}" if current.errno else current.strerror
            if first_os_error is None and not isinstance(current, requests.RequestException):
                first_os_error = current  # e.g. RemoteDisconnected, which has no errno
        for linked in (getattr(current, "reason", None), *current.args, current.__cause__, current.__context__):
            if isinstance(linked, BaseException):
                pending.append(linked)
    cause = first_os_error if first_os_error is not None else exc
    return redact(f"{type(cause).__name__}: {cause}")[:_MAX_EXCERPT_CHARS]


def _secrets_in_headers(headers: Mapping[str, Any]) -> Iterator[str]:
    for name, value in headers.items():
        if isinstance(value, str) and _SENSITIVE_HEADER.search(name):
            yield value
            scheme, _, credential = value.partition(" ")
            if credential and scheme.isalpha():  # "Bearer <token>": the token alone may be echoed
                yield credential.strip()


class HttpTransport:
    """HTTP calls to one service, with pooled connections, retries and deployflow errors.

    ``base_url`` is the service root (``https://host/prefix``); request paths are joined to it.
    ``headers`` are sent with every request; credentials in them, in ``auth`` and in ``secrets`` are
    registered for redaction so they never show in messages, reprs or logs. Credentials embedded in
    the URL (``https://user:pass@host``) are moved to basic auth.

    Safe to share between threads; see the module docstring. Use as a context manager or call
    :meth:`close`.

    >>> with HttpTransport("http://127.0.0.1:5000") as transport:  # doctest: +SKIP
    ...     transport.request_json("POST", "/invocations", json={"inputs": [[1, 2]]}, kind="predict")
    """

    def __init__(
        self,
        base_url: str,
        *,
        settings: HttpSettings | None = None,
        headers: Mapping[str, str] | None = None,
        auth: Any = None,
        secrets: Iterable[Any] = (),
    ) -> None:
        self.settings = settings if settings is not None else HttpSettings.from_options()
        for secret in secrets:
            register_secret(secret)
        base_url, url_auth = self._parse_base_url(base_url)
        self.base_url = base_url
        parts = urlsplit(base_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path.rstrip("/")
        if auth is None:
            auth = url_auth
        self._register_auth(auth)
        if headers:
            for secret in _secrets_in_headers(headers):
                register_secret(secret)

        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=4, pool_maxsize=self.settings.pool_maxsize, max_retries=0
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = _user_agent()
        session.headers["Accept"] = "application/json"
        if headers:
            session.headers.update(headers)
        session.verify = self.settings.verify
        if session.trust_env:
            auth = self._settle_environment(session, auth)
        session.auth = auth
        self.session = session
        self._direct = self._direct_pool(session)
        self._closed = False
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(self._should_retry),
            stop=self._stop,
            wait=self._planned_wait,
            before_sleep=self._log_retry,
            reraise=True,
        )

    # -- construction helpers -------------------------------------------------------------------

    @staticmethod
    def _parse_base_url(base_url: str) -> tuple[str, tuple[str, str] | None]:
        if not isinstance(base_url, str) or not base_url.strip():
            raise InvalidInputError(f"base_url must be an http(s) URL, got {base_url!r}")
        try:
            parts = urlsplit(base_url.strip())
            port = parts.port  # raises ValueError for a bad port
        except ValueError as exc:
            raise InvalidInputError(f"base_url is not a valid URL: {redact(base_url)}") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInputError(f"base_url must be an http(s) URL with a host, got {redact(base_url)!r}")
        if parts.query or parts.fragment:
            raise InvalidInputError(
                f"base_url must not have a query or fragment (pass params per request): {redact(base_url)!r}"
            )
        auth = None
        if parts.username is not None or parts.password is not None:
            auth = (parts.username or "", parts.password or "")
            register_secret(parts.password)
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        netloc = host if port is None else f"{host}:{port}"
        return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", "")), auth

    def _settle_environment(self, session: requests.Session, auth: Any) -> Any:
        """Read proxies, CA bundle and netrc from the environment once, instead of on every request.

        requests does this per request when ``trust_env`` is on (about 150 µs each, netrc file
        included); every request of a transport goes to one origin, so the answer cannot differ.
        """
        # Passing our verify keeps verify=False from being overridden by REQUESTS_CA_BUNDLE.
        environment = session.merge_environment_settings(self.base_url, {}, None, session.verify, None)
        session.proxies.update(environment["proxies"])
        session.verify = environment["verify"]
        if auth is None:
            auth = requests.utils.get_netrc_auth(self.base_url)
            self._register_auth(auth)
        session.trust_env = False
        return auth

    def _direct_pool(self, session: requests.Session) -> urllib3.PoolManager | None:
        """A urllib3 pool for plain requests, or ``None`` when requests' own machinery is needed.

        requests spends about 400 µs of CPU per call on work a transport to one origin does not need
        (rebuilding the request, cookie jars, hooks, reading the body in 10 KiB pieces): as much as
        encoding a 2,000-row chunk. Batch scoring sends thousands of calls, so calls with an in-memory
        body and no streaming go straight to urllib3 (which requests itself uses underneath) when the
        session holds nothing only requests can apply: no proxy, no client certificate, no auth object
        other than a (user, password) pair.
        """
        if session.proxies or session.cert is not None:
            return None
        if session.auth is not None and not isinstance(session.auth, tuple):
            return None
        verify = session.verify
        tls: dict[str, Any] = {}
        if verify is False:
            tls["cert_reqs"] = "CERT_NONE"
        elif isinstance(verify, str):
            tls["ca_certs" if os.path.isfile(verify) else "ca_cert_dir"] = verify
        else:
            import certifi

            tls["ca_certs"] = certifi.where()
        headers = dict(session.headers)
        if isinstance(session.auth, tuple):
            headers.update(urllib3.util.make_headers(basic_auth=":".join(session.auth)))
        self._direct_headers = headers
        return urllib3.PoolManager(num_pools=4, maxsize=self.settings.pool_maxsize, **tls)

    @staticmethod
    def _register_auth(auth: Any) -> None:
        if isinstance(auth, tuple):
            for item in auth[1:]:
                register_secret(item)
        elif auth is not None:
            for attribute in ("password", "token", "api_key", "secret"):
                register_secret(getattr(auth, attribute, None))

    # -- public API -----------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.base_url)!r}, pool_maxsize={self.settings.pool_maxsize})"

    def __enter__(self) -> HttpTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections. The transport cannot be used afterwards."""
        self._closed = True
        self.session.close()
        if self._direct is not None:
            self._direct.clear()

    def url_for(self, path: str) -> str:
        """The absolute URL of ``path`` (relative to ``base_url``, or an absolute URL on the same origin)."""
        if path.startswith(("http://", "https://")):
            if path != self._origin and not path.startswith(self._origin + "/"):
                raise InvalidInputError(
                    f"refusing to send {self!r}'s credentials to another origin: {redact(path.split('?')[0])}"
                )
            return path
        if not path:
            return self.base_url
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        kind: RequestKind = "control",
        timeout: float | None = None,
        total_timeout: float | None = None,
        stream: bool = False,
        retry: bool = True,
    ) -> requests.Response:
        """Send one request, retrying per the policy, and return the successful response.

        ``json`` is encoded with orjson (see :func:`encode_json`); ``data`` is sent as is (bytes, str or
        a form dict; a file or iterator body is sent once, never retried). ``kind="predict"`` uses the
        predict timeouts. ``timeout`` overrides the per-attempt read timeout and ``total_timeout`` the
        deadline for this call; ``retry=False`` makes a single attempt (for callers that retry
        themselves, so retries do not multiply). With ``stream=True`` the body is not read: close the
        response, or iterate it with :meth:`iter_lines`.

        Raises a :class:`~deployflow.errors.DeploymentError` for an error status or a failed request.
        """
        if self._closed:
            raise DeploymentError(f"{self!r} is closed")
        read_timeout, total = self.settings.timeouts_for(kind)
        if timeout is not None:
            read_timeout = _as_number(timeout, "timeout", positive=True)
        if total_timeout is not None:
            total = _as_number(total_timeout, "total_timeout", positive=True)
        method = method.upper()
        url = self.url_for(path)
        message_path = self._base_path + "/" + path.lstrip("/") if "://" not in path else urlsplit(path).path
        message_path = message_path.split("?", 1)[0]

        if headers:
            for secret in _secrets_in_headers(headers):
                register_secret(secret)
        rewindable = True
        if json is not None:
            if data is not None:
                raise InvalidInputError("pass either json or data, not both")
            data = encode_json(json)
            if not headers or not any(name.lower() == "content-type" for name in headers):
                headers = {**headers, "Content-Type": "application/json"} if headers else _JSON_CONTENT_TYPE
        elif data is not None and not isinstance(data, (bytes, bytearray, memoryview, str, dict, list, tuple)):
            rewindable = False  # a file or generator is consumed by the first attempt

        kwargs: dict[str, Any] = {"params": params, "data": data, "headers": headers, "stream": stream}
        max_attempts = self.settings.retry.max_attempts if (retry and rewindable) else 1
        call = _Call(method, url, message_path, kwargs, read_timeout, total, max_attempts, stream)
        # The first attempt runs outside tenacity: most calls succeed at once, and entering the
        # controller costs about a third of the client's own time per request (measured).
        try:
            return self._attempt(call)
        except DeploymentError as error:
            if max_attempts == 1 or not self._should_retry(error):
                raise
            call.first_error = error
        # Outside the except block, so later errors are not implicitly chained to the first one.
        try:
            return self._retrying(self._replay_then_attempt, call)
        except DeploymentError as error:
            if call.gave_up:
                _set_message(error, f"{error.message}; {call.gave_up}")
            else:
                _set_message(error, f"{error.message} (after {_plural(call.attempts, 'attempt')})")
            raise

    def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Like :meth:`request`, and decode the JSON answer (``None`` for an empty body).

        NaN and Infinity in the answer are accepted. A body that is not JSON raises
        :class:`~deployflow.errors.RemoteError`.
        """
        kwargs["stream"] = False
        response = self.request(method, path, **kwargs)
        content = response.content
        if not content or not content.strip():
            return None
        try:
            return _loads(content)
        except ValueError as exc:
            excerpt = content[:_MAX_EXCERPT_CHARS].decode("utf-8", "replace")
            where = f"{method.upper()} {urlsplit(response.url).path}"
            raise RemoteError(
                f"{where} answered HTTP {response.status_code} with a body that is not JSON: {excerpt}",
                status_code=response.status_code,
                body=excerpt,
            ) from exc

    def iter_lines(self, response: requests.Response) -> Iterator[bytes]:
        """Iterate the lines of a streamed response (``stream=True``), then close it.

        A connection that breaks mid-stream raises a deployflow error, as :meth:`request` does; the
        stream is not retried.
        """
        request = response.request
        call = _Call(request.method or "GET", response.url, urlsplit(response.url).path, {},
                     self.settings.timeout, self.settings.total_timeout, 1, True)
        try:
            yield from response.iter_lines()
        except requests.RequestException as exc:
            raise self._error_from_exception(exc, call, clipped=False) from exc
        finally:
            response.close()

    # -- one attempt ----------------------------------------------------------------------------

    def _replay_then_attempt(self, call: _Call) -> requests.Response:
        # tenacity's attempt 1 is the attempt already made: hand it its outcome, so attempt numbers,
        # waits, stop decisions and logs are the same as if tenacity had made it.
        error = call.first_error
        if error is not None:
            call.first_error = None
            raise error
        return self._attempt(call)

    def _attempt(self, call: _Call) -> requests.Response:
        call.attempts += 1
        remaining = call.deadline - time.monotonic()
        if remaining <= 0:
            # Reachable only when a retry's sleep overshot the deadline it was planned to respect.
            raise RequestTimeoutError(f"{call.method} {call.path}: no time left before the total deadline")
        read_timeout = min(call.read_timeout, remaining)
        connect_timeout = min(self.settings.connect_timeout, remaining)
        started = time.perf_counter()
        try:
            kwargs = call.kwargs
            if (
                self._direct is not None
                and not call.stream
                and kwargs["params"] is None
                and (kwargs["data"] is None or isinstance(kwargs["data"], (bytes, bytearray)))
            ):
                response = self._direct_request(call, connect_timeout, read_timeout)
            else:
                response = self.session.request(
                    call.method, call.url, timeout=(connect_timeout, read_timeout), **kwargs
                )
        except requests.RequestException as exc:
            clipped = read_timeout < call.read_timeout
            raise self._error_from_exception(
                exc, call, clipped=clipped, connect_timeout=connect_timeout, read_timeout=read_timeout
            ) from exc
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s -> HTTP %d in %.1f ms", call.method, call.path, response.status_code,
                         (time.perf_counter() - started) * 1000)
        if response.status_code >= 400:
            raise self._error_from_response(call, response)
        return response

    def _direct_request(self, call: _Call, connect_timeout: float, read_timeout: float) -> requests.Response:
        """One call through the urllib3 pool, answered as a ``requests.Response`` and failing with the
        requests exception requests would raise, so everything after it is shared."""
        headers = self._direct_headers
        if call.kwargs["headers"]:
            headers = {**headers, **call.kwargs["headers"]}
        exceptions = requests.exceptions
        try:
            answer = self._direct.urlopen(  # type: ignore[union-attr]
                call.method,
                call.url,
                body=call.kwargs["data"],
                headers=headers,
                retries=False,
                redirect=False,
                preload_content=True,
                timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            )
        except urllib3.exceptions.NewConnectionError as exc:  # a subclass of ConnectTimeoutError: first
            raise exceptions.ConnectionError(exc) from exc
        except urllib3.exceptions.ConnectTimeoutError as exc:
            raise exceptions.ConnectTimeout(exc) from exc
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise exceptions.ReadTimeout(exc) from exc
        except urllib3.exceptions.SSLError as exc:
            raise exceptions.SSLError(exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise exceptions.ConnectionError(exc) from exc
        response = requests.Response()
        response.status_code = answer.status
        response.headers = requests.structures.CaseInsensitiveDict(answer.headers)
        response._content = answer.data
        response.reason = answer.reason
        response.url = call.url
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        return response

    def _error_from_response(self, call: _Call, response: requests.Response) -> DeploymentError:
        """The single place an HTTP error answer becomes a deployflow error."""
        try:
            if call.stream:
                raw = response.raw.read(_MAX_ERROR_READ_BYTES, decode_content=True) or b""
            else:
                raw = response.content or b""
        except Exception:  # the body is a nicety; the status says what happened
            raw = b""
        finally:
            response.close()
        return error_from_answer(call.method, call.path, response.status_code, response.reason, response.headers, raw)

    def _error_from_exception(
        self,
        exc: requests.RequestException,
        call: _Call,
        *,
        clipped: bool,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> DeploymentError:
        """The single place a requests exception becomes a deployflow error (chain it with ``from``)."""
        where = f"{call.method} {call.path}"
        exceptions = requests.exceptions
        if isinstance(exc, exceptions.ConnectTimeout):  # before ConnectionError and Timeout: it is both
            limit = f" within {connect_timeout:g} s" if connect_timeout is not None else ""
            return TransientError(f"{where}: could not connect to {self._origin}{limit}")
        if isinstance(exc, exceptions.Timeout):
            if clipped:
                detail = f"no answer before the total deadline of {call.total_timeout:g} s"
            else:
                limit = f" within {read_timeout:g} s" if read_timeout is not None else ""
                detail = f"no answer{limit} (read timeout)"
            if not self.settings.retry.retry_on_timeout and call.max_attempts > 1:
                detail += "; timeouts are not retried unless retry_on_timeout is set"
            return RequestTimeoutError(f"{where}: {detail}")
        if isinstance(exc, exceptions.SSLError):  # a certificate problem does not go away by retrying
            return RemoteError(f"{where}: TLS with {self._origin} failed: {_root_reason(exc)}")
        if isinstance(exc, (exceptions.ConnectionError, exceptions.ChunkedEncodingError)):
            return TransientError(f"{where}: connection to {self._origin} failed: {_root_reason(exc)}")
        if isinstance(exc, (exceptions.InvalidURL, exceptions.MissingSchema, exceptions.InvalidSchema,
                            exceptions.URLRequired, exceptions.InvalidHeader)):
            return InvalidInputError(f"{where}: invalid request: {_root_reason(exc)}")
        return RemoteError(f"{where}: {type(exc).__name__}: {_root_reason(exc)}")

    # -- tenacity callbacks (one Retrying per transport; per-call state lives on the _Call) ------

    def _should_retry(self, error: BaseException) -> bool:
        return is_retryable(error, self.settings.retry)

    def _planned_wait(self, retry_state: tenacity.RetryCallState) -> float:
        # Computed once per attempt: both stop and wait need it, in an order that varies by tenacity version.
        call: _Call = retry_state.args[0]
        if call.planned_for != retry_state.attempt_number:
            policy = self.settings.retry
            error = retry_state.outcome.exception() if retry_state.outcome else None
            retry_after = getattr(error, "retry_after", None) if policy.respect_retry_after else None
            if retry_after is not None:
                wait = min(retry_after, policy.max_retry_after)
            else:
                wait = policy.backoff(retry_state.attempt_number)
            call.planned_for = retry_state.attempt_number
            call.planned_wait = wait
        return call.planned_wait

    def _stop(self, retry_state: tenacity.RetryCallState) -> bool:
        call: _Call = retry_state.args[0]
        attempts = retry_state.attempt_number
        if attempts >= call.max_attempts:
            call.gave_up = f"gave up after {_plural(attempts, 'attempt')}"
            return True
        wait = self._planned_wait(retry_state)
        if time.monotonic() + wait + _MIN_ATTEMPT_SECONDS > call.deadline:
            call.gave_up = (
                f"gave up after {_plural(attempts, 'attempt')}: waiting {wait:.3g} s for the next one "
                f"would pass the total deadline of {call.total_timeout:g} s"
            )
            return True
        return False

    def _log_retry(self, retry_state: tenacity.RetryCallState) -> None:
        call: _Call = retry_state.args[0]
        error = retry_state.outcome.exception() if retry_state.outcome else None
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        logger.warning(
            "%s; retrying in %.2f s (attempt %d of %d)",
            redact(error), wait, retry_state.attempt_number + 1, call.max_attempts,
        )

