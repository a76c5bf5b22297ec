"""The answers a deployment server and an endpoint's router give on their own, and how they are sent.

Both processes answer the same way for the same reason (a body over the size limit, a request past its
time limit, a full queue, a missing credential), so a caller sees one set of rules whether it talks to
a deployment or to an endpoint. Errors are JSON ``{"error_code": ..., "message": ...}``. An answer is a
``(status, headers, body)`` tuple of bytes, sent by :func:`send` as two ASGI messages.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ...jsoncodec import dumps

__all__ = [
    "Response",
    "JSON_TYPE",
    "ARROW_TYPE",
    "CLIENT_LEFT",
    "ok_arrow",
    "TEXT_TYPE",
    "CLOSE",
    "json_error",
    "wrong_method",
    "ok_json",
    "text",
    "too_large",
    "timed_out",
    "overloaded",
    "bad_content_length",
    "unauthorized",
    "bearer_matches",
    "header",
    "send",
    "RETRY_AFTER_SECONDS",
]

Send = Callable[[dict[str, Any]], Awaitable[None]]
Response = tuple[int, list[tuple[bytes, bytes]], bytes]

JSON_TYPE = (b"content-type", b"application/json")
ARROW_TYPE = (b"content-type", b"application/vnd.apache.arrow.stream")
TEXT_TYPE = (b"content-type", b"text/plain; charset=utf-8")
CLOSE = (b"connection", b"close")
#: What a 503 for a full queue tells the caller to wait before trying again (seconds).
RETRY_AFTER_SECONDS = 1


def json_error(status: int, error_code: str, message: str, *extra: tuple[bytes, bytes]) -> Response:
    body = dumps({"error_code": error_code, "message": message})
    return status, [JSON_TYPE, (b"content-length", str(len(body)).encode()), *extra], body


def wrong_method(method: str, path: str, allowed: str) -> Response:
    """405 for ``method`` on ``path``, which takes ``allowed`` (named in ``Allow`` too): one answer for
    a deployment server and a router."""
    return json_error(405, "BAD_REQUEST", f"{path} does not accept {method}; use {allowed}",
                      (b"allow", allowed.encode("ascii")))


def ok_json(body: bytes, status: int = 200) -> Response:
    return status, [JSON_TYPE, (b"content-length", str(len(body)).encode())], body


#: What a request whose client left is finished with, on a server or a router: never sent, it counts
#: as a 499 (nginx's "client closed request") in the metrics.
CLIENT_LEFT: Response = json_error(499, "CANCELLED", "the client left before its answer")


def ok_arrow(body: bytes) -> Response:
    """200 with an Arrow IPC stream body (:func:`deployflow.arrow_chunks.encode_predictions`)."""
    return 200, [ARROW_TYPE, (b"content-length", str(len(body)).encode())], body


def text(status: int, content: str) -> Response:
    body = content.encode("utf-8")
    return status, [TEXT_TYPE, (b"content-length", str(len(body)).encode())], body


def too_large(limit: int) -> Response:
    """413 for a body over ``limit`` bytes; the connection closes, as the rest of the body is not read."""
    return json_error(
        413,
        "RESOURCE_LIMIT_EXCEEDED",
        f"The request body is larger than the server's limit of {limit} bytes (config key max_request_bytes)",
        CLOSE,
    )


def timed_out(limit: float | None) -> Response:
    """504 for a request whose answer did not come within ``limit`` seconds."""
    return json_error(
        504,
        "DEADLINE_EXCEEDED",
        f"Request processing time exceeded the server's limit of {limit} seconds (config key request_timeout)",
    )


def overloaded(reason: str) -> Response:
    """503 with ``Retry-After`` for a request refused before any work because the server is full."""
    return json_error(
        503,
        "TEMPORARILY_UNAVAILABLE",
        f"The server is at capacity ({reason}); try again later",
        (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
    )


def bad_content_length() -> Response:
    return json_error(400, "BAD_REQUEST", "The Content-Length header is not a number", CLOSE)


def declared_length(headers: Iterable[tuple[bytes, bytes]], limit: int, too_large: Response) -> int | Response:
    """The body length ``headers`` declare (0 without Content-Length), or the answer refusing it:
    :func:`bad_content_length` for a value that is not a count, ``too_large`` above ``limit`` bytes."""
    value = header(headers, b"content-length")
    if value is None:
        return 0
    try:
        declared = int(value)
    except ValueError:
        return bad_content_length()
    if declared < 0:
        return bad_content_length()
    return too_large if declared > limit else declared


def unauthorized(what: str) -> Response:
    return json_error(
        401,
        "UNAUTHENTICATED",
        f"{what} requires the header 'Authorization: Bearer <token>' with its token",
        (b"www-authenticate", b"Bearer"),
    )


def bearer_matches(authorization: bytes | None, secret: bytes | None) -> bool:
    """Whether ``authorization`` is ``Bearer <secret>`` (scheme in any case, RFC 7235), compared in
    constant time. No secret configured never matches."""
    if not secret or authorization is None or authorization[:7].lower() != b"bearer ":
        return False
    return hmac.compare_digest(authorization[7:].strip(), secret)


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower-case) in ASGI ``headers``."""
    for key, value in headers:
        if key == name:
            return value
    return None


async def send(send_message: Send, response: Response) -> None:
    status, headers, body = response
    await send_message({"type": "http.response.start", "status": status, "headers": headers})
    await send_message({"type": "http.response.body", "body": body})
