"""A fake model server speaking MLflow's scoring protocol, for the ``serving`` target's quick tests.

* ``GET /ping`` and ``GET /health``: 200 with a newline body; ``GET /version``: the version string;
* ``POST /invocations`` with a JSON body holding exactly one of ``dataframe_split``, ``dataframe_records``,
  ``instances`` or ``inputs``: ``{"predictions": [...]}`` with one number per row (the sum of its
  numbers); anything else is a 400 ``{"error_code": "BAD_REQUEST", "message": ...}``;
* with ``token`` set, every request needs ``Authorization: Bearer <token>`` and is otherwise a 401.

The real thing (the local target's servers, ``mlflow models serve``) is tested elsewhere; this fake only
saves starting a model process where a test is about the client's credentials.
"""

from __future__ import annotations

from typing import Any

from .base import FakeService, Request, Response

__all__ = ["FakeScoringServer"]

_INPUT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def _bad_request(message: str) -> Response:
    return Response.json({"error_code": "BAD_REQUEST", "message": message}, 400)


def _row_sum(row: Any) -> float:
    values = row.values() if isinstance(row, dict) else row if isinstance(row, list) else [row]
    return float(sum(v for v in values if isinstance(v, (int, float))))


class FakeScoringServer(FakeService):
    def __init__(self, token: str | None = None, version: str = "3.17.2") -> None:
        super().__init__()
        self.token = token
        self.version = version

    def route(self, request: Request) -> Response:
        if self.token is not None and request.header("Authorization") != f"Bearer {self.token}":
            return Response.json({"error_code": "UNAUTHENTICATED", "message": "Missing or wrong bearer token"}, 401)
        if request.method == "GET" and request.path in ("/ping", "/health"):
            return Response(200, b"\n", content_type="application/json")
        if request.method == "GET" and request.path == "/version":
            return Response(200, self.version.encode(), content_type="text/plain")
        if request.method == "POST" and request.path == "/invocations":
            return self._invocations(request)
        return Response.json({"error_code": "NOT_FOUND", "message": f"No route {request.path}"}, 404)

    def _invocations(self, request: Request) -> Response:
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return Response(415, b"Unsupported content type", content_type="text/plain")
        try:
            body = request.json()
        except ValueError:
            return _bad_request("Invalid JSON input")
        if not isinstance(body, dict):
            return _bad_request("The request body must be a JSON object")
        given = [key for key in _INPUT_KEYS if key in body]
        if len(given) != 1:
            return _bad_request(f"The request needs exactly one of {', '.join(_INPUT_KEYS)}")
        data = body[given[0]]
        if given[0] == "dataframe_split":
            if not isinstance(data, dict):
                return _bad_request("dataframe_split must be an object")
            rows = data.get("data") or []
        else:
            rows = data if isinstance(data, list) else [data]
        return Response.json({"predictions": [_row_sum(row) for row in rows]})
