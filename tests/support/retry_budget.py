"""The retry budget both orchestrator integrations are held to, and a server that is never available.

One rule, written in :mod:`deployflow.orchestration` ("Retries in pipeline steps"): inside a pipeline
step the client sends each HTTP request once (the transport's retries are off, whatever ``max_retries``
the block or connection says), and the orchestrator's retries are the only retry level. The Prefect and
the Airflow tests import the same numbers from here, so both integrations are checked against the same
budget::

    with AlwaysUnavailable() as server:
        ...  # run a one-request step with retries=STEP_RETRIES, max_retries=CLIENT_MAX_RETRIES_IN_OPTIONS
        assert server.posts == expected_attempts(STEP_RETRIES)
"""

from __future__ import annotations

from .scripted_server import ScriptedResponse, ScriptedServer

__all__ = [
    "CLIENT_MAX_RETRIES_IN_OPTIONS",
    "SECRET_TOKEN",
    "STEP_RETRIES",
    "AlwaysUnavailable",
    "expected_attempts",
]

#: The orchestrator's retries of the step under test (Prefect task ``retries``, Airflow task ``retries``).
STEP_RETRIES = 2

#: The transport retries a user sets in the Prefect block's ``client_options`` or the Airflow
#: connection's extra. Inside a step they must be ignored: with them, one step would send up to
#: ``(1 + STEP_RETRIES) * (1 + CLIENT_MAX_RETRIES_IN_OPTIONS)`` = 15 requests instead of 3.
CLIENT_MAX_RETRIES_IN_OPTIONS = 4

#: A credential planted next to ``max_retries``: the warning about the ignored option must not show it.
SECRET_TOKEN = "rb-tok-4f81c2d9e7a03b65"


def expected_attempts(retries: int) -> int:
    """HTTP attempts of a one-request step retried ``retries`` times by its orchestrator: ``1 + retries``.

    >>> expected_attempts(STEP_RETRIES)
    3
    """
    return 1 + retries


class AlwaysUnavailable(ScriptedServer):
    """A :class:`~support.scripted_server.ScriptedServer` on 127.0.0.1 that answers every request with
    503 and ``Retry-After: 0`` (a retrying client would ask again at once, so any hidden retry level
    shows in the counts) and records what it received.

    ``posts`` counts ``POST /invocations`` (scoring requests), ``gets`` counts GET requests.
    """

    ANSWER = ScriptedResponse(
        503,
        {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "overloaded, try again"},
        {"Retry-After": "0"},
    )

    def _record_and_next(self, request):  # type: ignore[no-untyped-def]
        with self._lock:
            self._requests.append(request)
        return self.ANSWER

    @property
    def posts(self) -> int:
        return sum(1 for r in self.requests if r.method == "POST" and r.path.split("?")[0] == "/invocations")

    @property
    def gets(self) -> int:
        return sum(1 for r in self.requests if r.method == "GET")

    @property
    def target_uri(self) -> str:
        """The ``serving`` target URI of this server."""
        return f"serving+{self.url}"

    def reset_counts(self) -> None:
        with self._lock:
            self._requests.clear()
