"""The sync HTTP edge every HTTP target uses: pooled ``requests`` connections, one retry policy, domain errors.

One of two I/O edges (the other, on aiohttp, is :mod:`deployflow.aio`). What decides a retry, what
raises and how long to wait are not written here: the decision is :func:`deployflow.retry.should_retry`,
the wait :func:`deployflow.retry.retry_wait`, the errors :mod:`deployflow.http_errors`, JSON
:mod:`deployflow.jsoncodec`. In short:

* **What is retried**: connection failures before sending, for every request; 429 and 503 for every
  request; 500, 502 and connections dropped after sending only for idempotent requests (GET, HEAD, PUT,
  DELETE, and a POST the caller declares ``idempotent=True``, as model-server targets do for predict);
  read timeouts only for idempotent requests and with ``retry_on_timeout=True``. A POST that is not
  idempotent and may have reached the service raises :class:`~deployflow.errors.OutcomeUnknownError`
  and is never sent twice, unless the client option ``retry_non_idempotent=True`` says it is safe.
* **How long to wait**: the service's ``Retry-After`` (seconds or an HTTP date), capped to
  ``max_retry_after``; otherwise exponential backoff ``backoff_factor * 2 ** (retry - 1)`` capped to
  ``backoff_max``, shortened by up to ``jitter`` of itself.
* **When to stop**: after ``max_retries`` retries, when the next wait would pass the total deadline
  (``total_timeout``, or ``predict_total_timeout`` for ``kind="predict"``, from the start of the call),
  or when the enclosing :func:`deployflow.retry.operation` scope has no attempts or time left: all the
  attempts of one operation share one budget, and the scope's deadline clips every request under it.
  Each attempt's connect and read timeouts are clipped to the time left.
* **Redirects** are followed (at most :data:`MAX_REDIRECTS`), as requests does: 301/302/303 turn a POST
  into a GET, 307/308 repeat it; credentials are not sent to another host.
* **What is raised**: the last domain error, chained ``from`` the ``requests`` exception when there was
  one; when the transport gave up, its message says after how many attempts and why. Each retry is
  logged at WARNING on ``deployflow.transport`` without headers or bodies.

Thread safety: one :class:`HttpTransport` may be shared by many threads. It holds one
``requests.Session`` whose connection pool keeps ``pool_maxsize`` connections per host; size it to the
number of concurrent callers. The session must not be reconfigured while requests are in flight.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

import requests
import requests.adapters
import requests.exceptions
import tenacity

from .errors import DeploymentError, InvalidInputError, RemoteError, RequestTimeoutError
from .http_errors import (
    MAX_ERROR_READ_BYTES,
    MAX_EXCERPT_CHARS,
    error_from_answer,
    error_from_failure,
    parse_error_body,
    parse_retry_after,
    set_message,
    settle,
    tls_error,
)
from .jsoncodec import dumps as encode_json
from .jsoncodec import loads as _loads
from .redaction import RedactingFilter, redact, register_secret
from .retry import (
    FALSE_WORDS,
    TRUE_WORDS,
    Failure,
    RetryPolicy,
    as_bool,
    as_int,
    as_number,
    current_budget,
    is_idempotent_method,
    retry_wait,
)
from .retry import _invalid  # the settings' one message shape: "<source> must be <expected>, got <value>"

__all__ = [
    "RetryPolicy",
    "HttpSettings",
    "HttpTransport",
    "MAX_REDIRECTS",
    "error_from_answer",
    "parse_retry_after",
    "parse_error_body",
    "encode_json",
]

logger = logging.getLogger(__name__)
# A filter on a parent logger does not see records created here, so this logger gets its own.
logger.addFilter(RedactingFilter())

RequestKind = Literal["control", "predict"]

#: Redirects followed per request, by both edges.
MAX_REDIRECTS = 10
# An attempt with less time than this before the deadline would only produce a misleading timeout.
_MIN_ATTEMPT_SECONDS = 0.05
_JSON_CONTENT_TYPE = {"Content-Type": "application/json"}  # requests copies it; never mutated
_SENSITIVE_HEADER = re.compile(r"(?i)auth|token|key|secret|cookie|password|credential|signature")


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------


def _as_verify(value: object, source: str) -> bool | str:
    if isinstance(value, str) and value.strip().lower() not in TRUE_WORDS | FALSE_WORDS:
        path = os.path.expanduser(value.strip())
        if not os.path.exists(path):
            raise _invalid(source, value, "true, false or the path of a CA bundle that exists")
        return path
    return as_bool(value, source)


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
    "retry_non_idempotent": _Setting("retry_non_idempotent", ("DEPLOYFLOW_RETRY_NON_IDEMPOTENT",), "bool"),
}
_RETRY_FIELDS = frozenset(
    {"max_retries", "backoff_factor", "backoff_max", "max_retry_after", "retry_on_timeout", "retry_non_idempotent"}
)


def _convert(kind: str, value: object, source: str) -> Any:
    if kind == "seconds":
        return as_number(value, source, positive=True)
    if kind == "seconds_or_zero":
        return as_number(value, source, positive=False)
    if kind == "count":
        return as_int(value, source, minimum=0)
    if kind == "positive_count":
        return as_int(value, source, minimum=1)
    if kind == "bool":
        return as_bool(value, source)
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
            object.__setattr__(self, name, as_number(getattr(self, name), name, positive=True))
        object.__setattr__(self, "pool_maxsize", as_int(self.pool_maxsize, "pool_maxsize", minimum=1))
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
# The transport
# --------------------------------------------------------------------------------------------------


def default_headers() -> dict[str, str]:
    """The headers both edges send with every request."""
    return {"User-Agent": _user_agent(), "Accept": "application/json"}


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
        "idempotent", "statuses", "budget",
    )

    def __init__(self, method: str, url: str, path: str, kwargs: dict[str, Any], read_timeout: float,
                 total_timeout: float, max_attempts: int, stream: bool, *, idempotent: bool = True,
                 statuses: frozenset[int] | None = None, budget: Any = None) -> None:
        self.method = method
        self.url = url
        self.path = path
        self.kwargs = kwargs
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self.deadline = time.monotonic() + total_timeout
        self.max_attempts = max_attempts
        self.stream = stream
        self.idempotent = idempotent
        self.statuses = statuses
        self.budget = budget
        self.attempts = 0
        self.planned_for = 0
        self.planned_wait = 0.0
        self.gave_up: str | None = None
        self.first_error: DeploymentError | None = None


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
    return redact(f"{type(cause).__name__}: {cause}")[:MAX_EXCERPT_CHARS]


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
        session.headers.update(default_headers())
        if headers:
            session.headers.update(headers)
        session.verify = self.settings.verify
        if session.trust_env:
            auth = self._settle_environment(session, auth)
        session.auth = auth
        session.max_redirects = MAX_REDIRECTS
        self.session = session
        self._closed = False
        self._retrying = tenacity.Retrying(
            retry=self._should_retry,
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
        idempotent: bool | None = None,
        retry_statuses: Collection[int] | None = None,
    ) -> requests.Response:
        """Send one request, retrying per the policy, and return the successful response.

        ``json`` is encoded with :func:`deployflow.jsoncodec.dumps`; ``data`` is sent as is (bytes, str
        or a form dict; a file or iterator body is sent once, never retried). ``kind="predict"`` uses
        the predict timeouts. ``timeout`` overrides the per-attempt read timeout and ``total_timeout``
        the deadline for this call; ``retry=False`` makes a single attempt. ``idempotent`` declares
        whether sending the request twice is safe (default: by method, so a POST is not);
        ``retry_statuses`` narrows the statuses retried for this request (for a server whose other 5xx
        answers are known to be deterministic). With ``stream=True`` the body is not read: close the
        response, or iterate it with :meth:`iter_lines`.

        Raises a :class:`~deployflow.errors.DeploymentError` for an error status or a failed request.
        """
        if self._closed:
            raise DeploymentError(f"{self!r} is closed")
        read_timeout, total = self.settings.timeouts_for(kind)
        if timeout is not None:
            read_timeout = as_number(timeout, "timeout", positive=True)
        if total_timeout is not None:
            total = as_number(total_timeout, "total_timeout", positive=True)
        method = method.upper()
        url = self.url_for(path)
        message_path = self._base_path + "/" + path.lstrip("/") if "://" not in path else urlsplit(path).path
        message_path = message_path.split("?", 1)[0]
        if idempotent is None:
            idempotent = is_idempotent_method(method)
        statuses = frozenset(retry_statuses) if retry_statuses is not None else None

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

        max_attempts = self.settings.retry.max_attempts if (retry and rewindable) else 1
        budget = current_budget()
        if budget is not None:
            left = budget.remaining_attempts()
            if left is not None:
                max_attempts = max(1, min(max_attempts, left))
            seconds = budget.remaining_seconds()
            if seconds is not None:
                if seconds < _MIN_ATTEMPT_SECONDS:
                    raise RequestTimeoutError(f"{method} {message_path}: the operation's deadline has passed")
                total = min(total, seconds)
        kwargs: dict[str, Any] = {"params": params, "data": data, "headers": headers, "stream": stream}
        call = _Call(method, url, message_path, kwargs, read_timeout, total, max_attempts, stream,
                     idempotent=idempotent, statuses=statuses, budget=budget)
        # The first attempt runs outside tenacity: most calls succeed at once, and entering the
        # controller costs about a third of the client's own time per request (measured).
        try:
            return self._attempt(call)
        except DeploymentError as error:
            if max_attempts == 1 or not error.retryable:
                raise
            call.first_error = error
        # Outside the except block, so later errors are not implicitly chained to the first one.
        try:
            return self._retrying(self._replay_then_attempt, call)
        except DeploymentError as error:
            if call.gave_up:
                set_message(error, f"{error.message}; {call.gave_up}")
            else:
                set_message(error, f"{error.message} (after {_plural(call.attempts, 'attempt')})")
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
            excerpt = content[:MAX_EXCERPT_CHARS].decode("utf-8", "replace")
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
                     self.settings.timeout, self.settings.total_timeout, 1, True, idempotent=False)
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
        if call.budget is not None:
            call.budget.spend()
        read_timeout = min(call.read_timeout, remaining)
        connect_timeout = min(self.settings.connect_timeout, remaining)
        started = time.perf_counter()
        try:
            response = self.session.request(
                call.method, call.url, timeout=(connect_timeout, read_timeout), **call.kwargs
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

    def _error_from_response(self, call: _Call, response: requests.Response) -> DeploymentError:
        """An HTTP error answer, read (bounded) and handed to the one translator."""
        try:
            if call.stream:
                raw = response.raw.read(MAX_ERROR_READ_BYTES, decode_content=True) or b""
            else:
                raw = response.content or b""
        except Exception:  # the body is a nicety; the status says what happened
            raw = b""
        finally:
            response.close()
        error = error_from_answer(call.method, call.path, response.status_code, response.reason, response.headers, raw)
        return settle(error, self.settings.retry, idempotent=call.idempotent, statuses=call.statuses)

    def _error_from_exception(
        self,
        exc: requests.RequestException,
        call: _Call,
        *,
        clipped: bool,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> DeploymentError:
        """What a requests exception means, handed to the one translator (chain it with ``from``)."""
        exceptions = requests.exceptions
        policy = self.settings.retry
        if isinstance(exc, exceptions.ConnectTimeout):  # before ConnectionError and Timeout: it is both
            limit = f" within {connect_timeout:g} s" if connect_timeout is not None else ""
            failure, detail = Failure.CONNECT_TIMEOUT, f"could not connect to {self._origin}{limit}"
        elif isinstance(exc, exceptions.Timeout):
            if clipped:
                detail = f"no answer before the total deadline of {call.total_timeout:g} s"
            else:
                limit = f" within {read_timeout:g} s" if read_timeout is not None else ""
                detail = f"no answer{limit} (read timeout)"
            if not policy.retry_on_timeout and call.max_attempts > 1 and call.idempotent:
                detail += "; timeouts are not retried unless retry_on_timeout is set"
            failure = Failure.READ_TIMEOUT
        elif isinstance(exc, exceptions.SSLError):  # a certificate problem does not go away by retrying
            return tls_error(call.method, call.path, self._origin, _root_reason(exc))
        elif isinstance(exc, (exceptions.ConnectionError, exceptions.ChunkedEncodingError)):
            failure = Failure.CONNECT if _never_connected(exc) else Failure.DROPPED
            detail = f"connection to {self._origin} failed: {_root_reason(exc)}"
        elif isinstance(exc, exceptions.TooManyRedirects):
            return RemoteError(f"{call.method} {call.path}: more than {MAX_REDIRECTS} redirects")
        elif isinstance(exc, (exceptions.InvalidURL, exceptions.MissingSchema, exceptions.InvalidSchema,
                              exceptions.URLRequired, exceptions.InvalidHeader)):
            return InvalidInputError(f"{call.method} {call.path}: invalid request: {_root_reason(exc)}")
        else:
            return RemoteError(f"{call.method} {call.path}: {type(exc).__name__}: {_root_reason(exc)}")
        return error_from_failure(failure, call.method, call.path, detail, idempotent=call.idempotent, policy=policy)

    # -- tenacity callbacks (one Retrying per transport; per-call state lives on the _Call) ------

    @staticmethod
    def _should_retry(retry_state: tenacity.RetryCallState) -> bool:
        # The error's ``retryable`` was set by the one decision when the error was made.
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        return isinstance(error, DeploymentError) and error.retryable

    def _planned_wait(self, retry_state: tenacity.RetryCallState) -> float:
        # Computed once per attempt: both stop and wait need it, in an order that varies by tenacity version.
        call: _Call = retry_state.args[0]
        if call.planned_for != retry_state.attempt_number:
            error = retry_state.outcome.exception() if retry_state.outcome else None
            call.planned_for = retry_state.attempt_number
            call.planned_wait = retry_wait(self.settings.retry, error, retry_state.attempt_number)
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


def _never_connected(exc: BaseException) -> bool:
    """Whether a requests ConnectionError happened before the request could be sent: the connection
    was refused or the host not found (urllib3's NewConnectionError, under requests' wrappers)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (ConnectionRefusedError, socket.gaierror)):
            return True
        if type(current).__name__ in ("NewConnectionError", "NameResolutionError"):
            return True
        for linked in (getattr(current, "reason", None), *current.args, current.__cause__, current.__context__):
            if isinstance(linked, BaseException):
                pending.append(linked)
    return False
