"""A fake OpenAI-compatible server, with Azure OpenAI's routes, as their API references describe.

OpenAI routes (under ``/v1``): ``POST /chat/completions``, ``/completions``, ``/embeddings``;
``GET /models``, ``/models/{id}``. Azure routes: ``POST /openai/deployments/{deployment}/chat/completions``
(and completions, embeddings) and ``GET /openai/models``, each with a required ``api-version`` query.

* auth: ``Authorization: Bearer <key>`` (OpenAI, Azure AD) or the ``api-key`` header (Azure); a wrong key
  is a 401 whose message quotes the key back, harsher than OpenAI (which masks most of it), so tests
  prove deployflow never repeats it;
* errors are ``{"error": {"message", "type", "param", "code"}}``;
* ``"stream": true`` sends ``chat.completion.chunk`` / ``text_completion`` events, with ``: keep-alive``
  comments, ``data:`` with and without a space, and ``data: [DONE]`` at the end; a message containing
  ``explode`` gets an error event after the first chunk, as OpenAI sends when a model fails mid-answer.
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import unquote

from .base import FakeService, Request, Response

__all__ = ["FakeOpenAI", "DEFAULT_KEY", "DEFAULT_MODELS"]

DEFAULT_KEY = "sk-fake0123456789abcdefghijklmnop"
DEFAULT_MODELS = ["gpt-4", "gpt-4o-mini", "gpt-3.5-turbo-instruct", "text-embedding-3-small"]


def _error(status: int, message: str, kind: str, code: str | None = None, param: str | None = None) -> Response:
    return Response.json({"error": {"message": message, "type": kind, "param": param, "code": code}}, status)


class FakeOpenAI(FakeService):
    """The fake server. ``azure_deployments``: Azure deployment name -> model id."""

    def __init__(
        self,
        key: str = DEFAULT_KEY,
        models: list[str] | None = None,
        azure_deployments: dict[str, str] | None = None,
        azure_api_version: str = "2024-06-01",
    ) -> None:
        super().__init__()
        self.key = key
        self.models = list(models if models is not None else DEFAULT_MODELS)
        self.azure_deployments = dict(azure_deployments or {"my-gpt4": "gpt-4"})
        self.azure_api_version = azure_api_version
        self.stream_gate: threading.Event | None = None

    def _model(self, model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 1686935002, "owned_by": "openai"}

    def route(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path.startswith("/openai/"):
            if request.param("api-version") != self.azure_api_version:
                return _error(404, "Resource not found", "invalid_request_error", "404")
            key = request.header("api-key")
            if key is None:
                bearer = request.header("Authorization") or ""
                key = bearer[7:] if bearer.startswith("Bearer ") else None
            if key != self.key:
                return _error(401, "Access denied due to invalid subscription key or wrong API endpoint.", "invalid_request_error", "401")
            return self._azure(request, path[len("/openai"):])
        bearer = request.header("Authorization") or ""
        if not bearer.startswith("Bearer "):
            return _error(401, "You didn't provide an API key.", "invalid_request_error")
        if bearer[7:] != self.key:
            return _error(401, f"Incorrect API key provided: {bearer[7:]}. You can find your API key in your account settings.", "invalid_request_error", "invalid_api_key")
        if not path.startswith("/v1/"):
            return _error(404, f"Invalid URL ({request.method} {request.path})", "invalid_request_error")
        return self._openai(request, path[len("/v1"):])

    def _openai(self, request: Request, path: str) -> Response:
        if request.method == "GET" and path == "/models":
            return Response.json({"object": "list", "data": [self._model(m) for m in self.models]})
        if request.method == "GET" and path.startswith("/models/"):
            model = unquote(path[len("/models/"):])
            if model not in self.models:
                return _error(404, f"The model '{model}' does not exist", "invalid_request_error", "model_not_found", "model")
            return Response.json(self._model(model))
        if request.method == "POST" and path in ("/chat/completions", "/completions", "/embeddings"):
            body = self._body(request)
            if isinstance(body, Response):
                return body
            model = body.get("model")
            if not model:
                return _error(400, "you must provide a model parameter", "invalid_request_error", None, "model")
            if model not in self.models:
                return _error(404, f"The model `{model}` does not exist or you do not have access to it.", "invalid_request_error", "model_not_found")
            return self._task(path[1:], model, body)
        return _error(404, f"Invalid URL ({request.method} {request.path})", "invalid_request_error")

    def _azure(self, request: Request, path: str) -> Response:
        if request.method == "GET" and path == "/models":
            return Response.json({"object": "list", "data": [self._model(m) for m in self.models]})
        if request.method == "GET" and path.startswith("/models/"):
            model = unquote(path[len("/models/"):])
            if model not in self.models:
                return _error(404, "The model does not exist.", "invalid_request_error", "404")
            return Response.json(self._model(model))
        parts = path.split("/")
        if request.method == "POST" and len(parts) >= 4 and parts[1] == "deployments":
            deployment = unquote(parts[2])
            task = "/".join(parts[3:])
            if deployment not in self.azure_deployments:
                return _error(404, "The API deployment for this resource does not exist.", "invalid_request_error", "DeploymentNotFound")
            body = self._body(request)
            if isinstance(body, Response):
                return body
            return self._task(task, self.azure_deployments[deployment], body)
        return _error(404, "Resource not found", "invalid_request_error", "404")

    @staticmethod
    def _body(request: Request) -> dict[str, Any] | Response:
        try:
            body = request.json()
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        if not isinstance(body, dict):
            return _error(400, "The body must be a JSON object.", "invalid_request_error")
        return body

    def _task(self, task: str, model: str, body: dict[str, Any]) -> Response:
        if task == "chat/completions":
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                return _error(400, "'messages' is a required property", "invalid_request_error", None, "messages")
            text = f"Hello! You said: {messages[-1].get('content', '')}"
            if body.get("stream"):
                return Response.stream(self._stream(text, model, chat=True))
            return Response.json({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 1700000000, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 9, "completion_tokens": len(text.split()), "total_tokens": 9 + len(text.split())},
            })
        if task == "completions":
            prompt = body.get("prompt")
            if prompt is None:
                return _error(400, "'prompt' is a required property", "invalid_request_error", None, "prompt")
            text = f"{prompt} ... and so on"
            if body.get("stream"):
                return Response.stream(self._stream(text, model, chat=False))
            return Response.json({
                "id": "cmpl-fake", "object": "text_completion", "created": 1700000000, "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5},
            })
        if task == "embeddings":
            if body.get("stream"):
                return _error(400, "Unrecognized request argument supplied: stream", "invalid_request_error")
            items = body.get("input")
            items = [items] if isinstance(items, str) else items
            if not isinstance(items, list) or not items:
                return _error(400, "'input' is a required property", "invalid_request_error", None, "input")
            return Response.json({
                "object": "list", "model": model,
                "data": [{"object": "embedding", "index": i, "embedding": [float(len(str(t))), 0.25, -0.5]} for i, t in enumerate(items)],
                "usage": {"prompt_tokens": len(items), "total_tokens": len(items)},
            })
        return _error(404, f"Invalid URL (POST /{task})", "invalid_request_error")

    def _stream(self, text: str, model: str, *, chat: bool):
        gate = self.stream_gate
        words = text.split()
        yield b": keep-alive\n\n"
        for index, word in enumerate(words):
            piece = word if index == 0 else " " + word
            if chat:
                choice = {"index": 0, "delta": {"content": piece, **({"role": "assistant"} if index == 0 else {})}, "finish_reason": None}
                event = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000, "model": model, "choices": [choice]}
            else:
                event = {"id": "cmpl-fake", "object": "text_completion", "created": 1700000000, "model": model,
                         "choices": [{"index": 0, "text": piece, "finish_reason": None, "logprobs": None}]}
            prefix = b"data: " if index % 2 == 0 else b"data:"
            yield prefix + json.dumps(event).encode() + b"\n\n"
            if index == 0:
                yield b"\r\n"  # a blank keep-alive line, CRLF style
                if gate is not None:
                    gate.wait(10)
                if "explode" in text:
                    yield b'data: {"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}}\n\n'
                    return
        finish = {"index": 0, "finish_reason": "stop", **({"delta": {}} if chat else {"text": "", "logprobs": None})}
        yield b"data: " + json.dumps({"id": "x", "object": "chat.completion.chunk" if chat else "text_completion", "created": 1700000000, "model": model, "choices": [finish]}).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
