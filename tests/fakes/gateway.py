"""A fake MLflow deployments server (AI gateway), as MLflow's server answers.

* ``GET /api/2.0/endpoints/`` lists endpoints ``page_size`` at a time: ``page_token`` in,
  ``next_page_token`` out (absent on the last page); a token it did not hand out is a 400;
* ``GET /api/2.0/endpoints/{name}``: one endpoint, or 404 with FastAPI's ``{"detail": ...}``;
* ``POST /endpoints/{name}/invocations``: llm/v1/chat, llm/v1/completions and llm/v1/embeddings answers;
  ``"stream": true`` streams chat and completions chunks as server-sent events;
* ``GET /health``.

Endpoint records carry ``endpoint_url`` as a path (``/gateway/{name}/invocations``), as MLflow's server
does; clients turn it into a URL on the server they called.

Auth is off unless ``token`` or ``basic`` is given; then a request without it is a 401. ``prefix`` mounts
the server under a path, as a reverse proxy would.
"""

from __future__ import annotations

import base64
import json
import threading
from typing import Any
from urllib.parse import unquote

from .base import FakeService, Request, Response, sse

__all__ = ["FakeGateway", "DEFAULT_ENDPOINTS"]

DEFAULT_ENDPOINTS = [
    {"name": "chat", "endpoint_type": "llm/v1/chat", "model": {"name": "gpt-3.5-turbo", "provider": "openai"}},
    {"name": "completions", "endpoint_type": "llm/v1/completions", "model": {"name": "gpt-3.5-turbo-instruct", "provider": "openai"}},
    {"name": "embeddings", "endpoint_type": "llm/v1/embeddings", "model": {"name": "text-embedding-3-small", "provider": "openai"}},
]


def _detail(status: int, message: str) -> Response:
    return Response.json({"detail": message}, status)


class FakeGateway(FakeService):
    """The fake server. ``endpoints``: dicts with name, endpoint_type and model."""

    def __init__(
        self,
        endpoints: list[dict[str, Any]] | None = None,
        *,
        page_size: int = 2,
        token: str | None = None,
        basic: tuple[str, str] | None = None,
        prefix: str = "",
    ) -> None:
        super().__init__()
        self.prefix = prefix.rstrip("/")
        self.endpoints = [dict(e) for e in (endpoints if endpoints is not None else DEFAULT_ENDPOINTS)]
        self.page_size = page_size
        self.token = token
        self.basic = basic
        self.stream_gate: threading.Event | None = None

    def _record(self, endpoint: dict[str, Any]) -> dict[str, Any]:
        return {**endpoint, "endpoint_url": f"{self.prefix}/gateway/{endpoint['name']}/invocations"}

    def _authorised(self, request: Request) -> bool:
        if self.token is None and self.basic is None:
            return True
        header = request.header("Authorization") or ""
        if self.token is not None and header == f"Bearer {self.token}":
            return True
        if self.basic is not None and header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False
            return (user, password) == self.basic
        return False

    def route(self, request: Request) -> Response:
        if not self._authorised(request):
            return Response.json({"detail": "Unauthorized"}, 401, {"WWW-Authenticate": 'Basic realm="mlflow"'})
        path = request.path
        if self.prefix:  # mounted under a path, as behind a reverse proxy
            if not path.startswith(self.prefix + "/"):
                return _detail(404, "Not Found")
            path = path[len(self.prefix):]
        if path == "/health" and request.method == "GET":
            return Response(200, b"OK", content_type="text/plain")
        if path == "/api/2.0/endpoints/" and request.method == "GET":
            return self._list(request)
        if path.startswith("/api/2.0/endpoints/") and request.method == "GET":
            name = unquote(path[len("/api/2.0/endpoints/"):].rstrip("/"))
            found = self._find(name)
            if found is None:
                return _detail(404, f"The endpoint '{name}' is not present or active on the server. Please verify the endpoint name.")
            return Response.json(self._record(found))
        if path.startswith("/endpoints/") and path.endswith("/invocations") and request.method == "POST":
            name = unquote(path[len("/endpoints/"):-len("/invocations")])
            found = self._find(name)
            if found is None:
                return _detail(404, f"The endpoint '{name}' is not present or active on the server. Please verify the endpoint name.")
            return self._query(found, request)
        return _detail(404, "Not Found")

    def _find(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.endpoints if e["name"] == name), None)

    def _list(self, request: Request) -> Response:
        token = request.param("page_token")
        start = 0
        if token:
            try:
                start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:"))
            except ValueError:
                return _detail(400, f"Invalid page token: {token}")
        page = self.endpoints[start:start + self.page_size]
        answer: dict[str, Any] = {"endpoints": [self._record(e) for e in page]}
        if start + self.page_size < len(self.endpoints):
            answer["next_page_token"] = base64.urlsafe_b64encode(f"offset:{start + self.page_size}".encode()).decode()
        return Response.json(answer)

    def _query(self, endpoint: dict[str, Any], request: Request) -> Response:
        try:
            body = request.json() or {}
        except ValueError:
            return _detail(400, "Malformed JSON")
        kind = endpoint["endpoint_type"]
        model = endpoint["model"]["name"]
        if kind == "llm/v1/chat":
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                return _detail(422, "messages: field required")
            text = f"Echo: {messages[-1].get('content', '')}"
            if body.get("stream"):
                return Response.stream(self._chunks(text, model, "chat.completion.chunk", chat=True))
            return Response.json({
                "id": "chatcmpl-gw", "object": "chat.completion", "created": 1700000000, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": len(text.split()), "total_tokens": 3 + len(text.split())},
            })
        if kind == "llm/v1/completions":
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                return _detail(422, "prompt: field required")
            text = f"Completed: {prompt}"
            if body.get("stream"):
                return Response.stream(self._chunks(text, model, "text_completion_chunk", chat=False))
            return Response.json({
                "id": "cmpl-gw", "object": "text_completion", "created": 1700000000, "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            })
        if kind == "llm/v1/embeddings":
            if body.get("stream"):
                return _detail(400, "Streaming is not supported for embeddings endpoints")
            items = body.get("input")
            items = [items] if isinstance(items, str) else items
            if not isinstance(items, list):
                return _detail(422, "input: field required")
            return Response.json({
                "object": "list", "model": model,
                "data": [{"object": "embedding", "index": i, "embedding": [float(len(str(t))), 0.5]} for i, t in enumerate(items)],
                "usage": {"prompt_tokens": len(items), "total_tokens": len(items)},
            })
        return _detail(400, f"Unsupported endpoint type {kind}")

    def _chunks(self, text: str, model: str, kind: str, *, chat: bool):
        gate = self.stream_gate
        words = text.split()
        for index, word in enumerate(words):
            piece = word if index == 0 else " " + word
            choice = {"index": 0, "finish_reason": None, **({"delta": {"role": "assistant", "content": piece}} if chat else {"text": piece})}
            # MLflow's server writes "data: {...}" and a blank line per chunk.
            yield b"data: " + json.dumps({"id": "gw-stream", "object": kind, "created": 1700000000, "model": model, "choices": [choice]}).encode() + b"\n\n"
            if index == 0 and gate is not None:
                gate.wait(10)
            if index == 0 and "explode" in text:
                yield b"event: error\ndata: {\"detail\": \"The provider failed mid-stream\"}\n\n"
                return
        last = {"index": 0, "finish_reason": "stop", **({"delta": {}} if chat else {"text": ""})}
        yield from sse({"id": "gw-stream", "object": kind, "created": 1700000000, "model": model, "choices": [last]}, done=False)
