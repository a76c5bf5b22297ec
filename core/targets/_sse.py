"""Server-sent events, read defensively: the streaming answers of Databricks, the MLflow gateway and OpenAI.

Shared by the HTTP targets (a private helper: targets never import each other). The rules follow the
WHATWG event-stream format, with the liberties real services take tolerated:

* lines end in ``\\n``, ``\\r\\n`` or ``\\r``; a byte-order mark before the first line is dropped;
* a blank line ends an event; blank lines with no data before them (keep-alives) are skipped;
* lines starting with ``:`` are comments (``: ping`` keep-alives) and are skipped;
* ``data:value`` and ``data: value`` are the same (one space after the colon is dropped);
* several ``data`` lines in one event are joined with ``\\n``; when the joined text is not one JSON value but
  each line is (servers that forget the blank line between events), each line is its own event;
* a line that starts with ``{`` (no field name does) is taken as a whole event (newline-delimited JSON);
* ``data: [DONE]`` ends the stream (OpenAI, Databricks); so does the end of the body;
* an ``event: error`` event, or a JSON event holding ``error`` / ``error_code`` (OpenAI and Databricks
  send one when a model fails mid-answer), raises :class:`~deployflow.errors.RemoteError` with the
  service's message;
* a response that is plain JSON rather than an event stream (a model that cannot stream) yields its one
  JSON object.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import RemoteError
from ..jsoncodec import dumps_text, loads
from ..transport import parse_error_body

if TYPE_CHECKING:  # pragma: no cover - typing only
    import requests

    from ..transport import HttpTransport

__all__ = ["ServerSentEvent", "iter_events", "iter_json_events", "stream_json"]

DONE = "[DONE]"
_EXCERPT_CHARS = 300


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event: its type (``message`` unless the server named one), data and id."""

    data: str
    event: str = "message"
    id: str | None = None


def _lines_of(lines: Iterable[bytes | str]) -> Iterator[str]:
    """Decode and re-split lines: a source may hand over lines still holding ``\\r`` or several lines."""
    first = True
    for raw in lines:
        text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
        if first:
            text = text.lstrip("\ufeff")
            first = False
        if not text:
            yield ""
            continue
        parts = text.splitlines()
        if not parts:  # the text was only line breaks
            yield ""
            continue
        yield from parts


def iter_events(lines: Iterable[bytes | str]) -> Iterator[ServerSentEvent]:
    """Turn the lines of an event stream into :class:`ServerSentEvent` objects (see the module rules)."""
    data: list[str] = []
    event_type = ""
    event_id: str | None = None

    def dispatch() -> ServerSentEvent | None:
        nonlocal data, event_type
        if not data:
            event_type = ""
            return None
        found = ServerSentEvent("\n".join(data), event_type or "message", event_id)
        data, event_type = [], ""
        return found

    for line in _lines_of(lines):
        if not line.strip():
            found = dispatch()
            if found is not None:
                yield found
            continue
        if line.startswith(":"):
            continue
        if line.lstrip().startswith("{"):
            # Newline-delimited JSON instead of events: each line is an event of its own.
            pending = dispatch()
            if pending is not None:
                yield pending
            yield ServerSentEvent(line.strip(), "message", event_id)
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            event_type = value.strip()
        elif field == "id":
            if "\x00" not in value:
                event_id = value
        # "retry" and unknown fields are ignored, as the format says.
    found = dispatch()
    if found is not None:  # the body ended without the blank line after the last event
        yield found


def _excerpt(text: str) -> str:
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."


def _error_in(value: Any) -> bool:
    return isinstance(value, dict) and bool(value.get("error") or value.get("error_code"))


def _stream_error(text: str, what: str) -> RemoteError:
    code, message = parse_error_body(text)
    detail = message or text.strip() or "no details given"
    return RemoteError(
        f"{what}: the stream reported an error after it started: {_excerpt(detail)}",
        error_code=code or "STREAM_ERROR",
        body=_excerpt(text),
    )


def _decode(text: str, what: str) -> list[Any]:
    """The JSON values in one event's data (more than one when a server left out the blank lines)."""
    try:
        return [loads(text)]
    except ValueError:
        pass
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) > 1:
        values = []
        for line in lines:
            if line.strip() == DONE:
                values.append(DONE)
                continue
            try:
                values.append(loads(line))
            except ValueError:
                break
        else:
            return values
    raise RemoteError(f"{what}: the stream sent an event that is not JSON: {_excerpt(text)!r}", body=_excerpt(text))


def iter_json_events(lines: Iterable[bytes | str], *, what: str = "stream") -> Iterator[Any]:
    """Yield the JSON value of each data event until ``[DONE]`` or the end; raise on an error event.

    ``what`` names the request in error messages (for example ``"POST /serving-endpoints/x/invocations"``).
    """
    for event in iter_events(lines):
        if event.event == "error":
            raise _stream_error(event.data, what)
        if event.data.strip() == DONE:
            return
        for value in _decode(event.data, what):
            if value == DONE:
                return
            if _error_in(value):
                raise _stream_error(dumps_text(value), what)
            yield value


def stream_json(transport: HttpTransport, response: requests.Response, *, what: str) -> Iterator[Any]:
    """Yield the JSON chunks of a streamed ``response`` (from ``transport.request(..., stream=True)``).

    The response is closed when the stream ends, when the caller stops early, or on an error. An answer
    that is plain JSON rather than an event stream yields its one object.
    """
    content_type = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if content_type == "application/json":
        try:
            body = response.content
        finally:
            response.close()
        try:
            value = loads(body) if body.strip() else None
        except ValueError as exc:
            raise RemoteError(f"{what}: the answer is not JSON: {_excerpt(body.decode('utf-8', 'replace'))!r}") from exc
        if value is None:
            return
        if _error_in(value):
            raise _stream_error(body.decode("utf-8", "replace"), what)
        yield value
        return
    lines = transport.iter_lines(response)
    with contextlib.closing(lines):
        yield from iter_json_events(lines, what=what)
