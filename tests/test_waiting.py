"""Waiting for readiness: the rules of deployflow.waiting, through the base client, sync and async."""

from __future__ import annotations

import asyncio
import time

import pytest

from deployflow import (
    BaseDeploymentClient,
    DeploymentFailedError,
    InvalidInputError,
    NotFoundError,
    RemoteError,
    State,
    Status,
    TransientError,
    WaitTimeoutError,
)

FAST = {"poll_interval": 0.01, "max_poll_interval": 0.02}


class ScriptedClient(BaseDeploymentClient):
    """A client whose status answers follow a script; the last entry repeats forever."""

    def __init__(self, target_uri: str = "scripted", script: list | None = None, **options):
        super().__init__(target_uri, **options)
        self.script = list(script or [])
        self.polls = 0

    def _next(self):
        self.polls += 1
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        return step if isinstance(step, Status) else Status(State(step))

    def deployment_status(self, name, endpoint=None):
        return self._next()

    def endpoint_status(self, endpoint):
        return self._next()

    # The abstract MLflow methods are not used by these tests.
    def create_deployment(self, name, model_uri, flavor=None, config=None, endpoint=None):
        raise NotImplementedError

    def update_deployment(self, name, model_uri=None, flavor=None, config=None, endpoint=None):
        raise NotImplementedError

    def delete_deployment(self, name, config=None, endpoint=None):
        raise NotImplementedError

    def list_deployments(self, endpoint=None):
        return []

    def get_deployment(self, name, endpoint=None):
        raise NotImplementedError

    def predict(self, deployment_name=None, inputs=None, endpoint=None):
        raise NotImplementedError


def _wait(client: ScriptedClient, mode: str, kind: str, **kwargs):
    kwargs = {**FAST, **kwargs}
    if mode == "sync":
        if kind == "deployment":
            return client.wait_for_deployment("d", **kwargs)
        return client.wait_for_endpoint("e", **kwargs)
    if kind == "deployment":
        return asyncio.run(client.wait_for_deployment_async("d", **kwargs))
    return asyncio.run(client.wait_for_endpoint_async("e", **kwargs))


MODES = pytest.mark.parametrize("mode", ["sync", "async"])
KINDS = pytest.mark.parametrize("kind", ["deployment", "endpoint"])


@MODES
@KINDS
def test_pending_then_ready(mode, kind):
    client = ScriptedClient(script=["PENDING", "PENDING", "READY"])
    status = _wait(client, mode, kind, timeout=5)
    assert status.state is State.READY
    assert client.polls == 3


@MODES
@KINDS
def test_transient_errors_while_polling_are_tolerated(mode, kind):
    client = ScriptedClient(
        script=["PENDING", TransientError("503 from the service", status_code=503), "READY"]
    )
    assert _wait(client, mode, kind, timeout=5).is_ready
    assert client.polls == 3


@MODES
def test_non_retryable_error_while_polling_propagates_at_once(mode):
    client = ScriptedClient(script=["PENDING", RemoteError("permission denied"), "READY"])
    with pytest.raises(RemoteError, match="permission denied"):
        _wait(client, mode, "deployment", timeout=5)
    assert client.polls == 2


@MODES
def test_not_found_tolerated_during_grace_then_ready(mode):
    client = ScriptedClient(script=["NOT_FOUND", "NOT_FOUND", "PENDING", "READY"])
    assert _wait(client, mode, "deployment", timeout=5, not_found_grace=5).is_ready
    assert client.polls == 4


@MODES
def test_not_found_past_grace_raises_not_found(mode):
    client = ScriptedClient(script=["NOT_FOUND"])
    start = time.monotonic()
    with pytest.raises(NotFoundError, match="still not found"):
        _wait(client, mode, "deployment", timeout=30, not_found_grace=0.1)
    # It gave up because of the grace period, not the 30 s deadline.
    assert time.monotonic() - start < 10
    assert client.polls >= 2


@MODES
@KINDS
def test_failed_raises_at_once_with_reason(mode, kind):
    client = ScriptedClient(
        script=["PENDING", Status(State.FAILED, reason="model.pkl: unpickling error"), "READY"]
    )
    with pytest.raises(DeploymentFailedError) as info:
        _wait(client, mode, kind, timeout=30)
    assert info.value.reason == "model.pkl: unpickling error"
    assert "unpickling error" in str(info.value)
    assert client.polls == 2
    assert not info.value.retryable


@MODES
@KINDS
def test_timeout_raises_with_last_state(mode, kind):
    client = ScriptedClient(script=[Status(State.PENDING, reason="scaling up")])
    start = time.monotonic()
    with pytest.raises(WaitTimeoutError) as info:
        _wait(client, mode, kind, timeout=0.3)
    elapsed = time.monotonic() - start
    assert 0.3 <= elapsed < 5
    assert info.value.last_status == Status(State.PENDING, reason="scaling up")
    assert "PENDING (scaling up)" in str(info.value)
    assert not info.value.retryable  # the timeout was the whole budget


@MODES
def test_timeout_while_only_errors_reports_last_error(mode):
    client = ScriptedClient(script=[TransientError("connection refused")])
    with pytest.raises(WaitTimeoutError, match="connection refused") as info:
        _wait(client, mode, "deployment", timeout=0.2)
    assert info.value.last_status is None


def test_last_sleep_is_clipped_to_the_deadline():
    # A long poll interval must not carry the wait far past its deadline.
    client = ScriptedClient(script=["PENDING"])
    start = time.monotonic()
    with pytest.raises(WaitTimeoutError):
        client.wait_for_deployment("d", timeout=0.3, poll_interval=30, max_poll_interval=30)
    assert time.monotonic() - start < 3


def test_backoff_grows_and_is_capped():
    client = ScriptedClient(script=["PENDING"])
    sleeps: list[float] = []
    from deployflow.waiting import WaitPlan, wait_until_ready

    plan = WaitPlan("Deployment 'd'", timeout=1000, poll_interval=1, max_poll_interval=4, jitter=0)
    calls = 0

    def fake_sleep(seconds: float) -> None:
        nonlocal calls
        sleeps.append(seconds)
        calls += 1
        if calls == 6:
            client.script = ["READY"]

    wait_until_ready(lambda: client.deployment_status("d"), plan, sleep=fake_sleep)
    assert sleeps == [1, 1.5, 2.25, 3.375, 4, 4]


def test_on_change_sees_each_state_once():
    client = ScriptedClient(
        script=["PENDING", "PENDING", Status(State.PENDING, "loading"), "PENDING", "READY", "READY"]
    )
    seen: list[Status] = []
    client.wait_for_deployment("d", timeout=5, on_change=seen.append, **FAST)
    assert [str(s) for s in seen] == ["PENDING", "PENDING (loading)", "PENDING", "READY"]


def test_async_wait_does_not_block_the_event_loop():
    class SlowStatus(ScriptedClient):
        def deployment_status(self, name, endpoint=None):
            time.sleep(0.05)  # a blocking HTTP call in the sync client
            return super().deployment_status(name, endpoint)

    client = SlowStatus(script=["PENDING"] * 8 + ["READY"])
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def main():
        task = asyncio.create_task(ticker())
        status = await client.wait_for_deployment_async("d", timeout=10, **FAST)
        task.cancel()
        return status

    assert asyncio.run(main()).is_ready
    # Nine blocking polls of 50 ms each: the ticker kept running in between.
    assert ticks >= 20


BAD_WAIT_ARGUMENTS = [
    ({"timeout": -1}, "timeout"),
    ({"timeout": float("nan")}, "timeout"),
    ({"timeout": float("inf")}, "timeout"),
    ({"timeout": "soon"}, "timeout"),
    ({"timeout": None}, "timeout"),
    ({"timeout": True}, "timeout"),
    ({"timeout": [5]}, "timeout"),
    ({"poll_interval": 0}, "poll_interval"),
    ({"poll_interval": -0.5}, "poll_interval"),
    ({"poll_interval": float("nan")}, "poll_interval"),
    ({"poll_interval": float("inf")}, "poll_interval"),
    ({"poll_interval": "fast"}, "poll_interval"),
    ({"poll_interval": False}, "poll_interval"),
    ({"max_poll_interval": float("nan")}, "max_poll_interval"),
    ({"max_poll_interval": 0}, "max_poll_interval"),
    ({"max_poll_interval": "often"}, "max_poll_interval"),
    ({"not_found_grace": float("nan")}, "not_found_grace"),
    ({"not_found_grace": -1}, "not_found_grace"),
    ({"not_found_grace": "a while"}, "not_found_grace"),
    ({"on_change": "print"}, "on_change"),
]


# A wait that does not refuse nan never ends: the time limit turns that into a failure, not a hang.
@pytest.mark.timeout(10)
@MODES
@KINDS
@pytest.mark.parametrize("kwargs, named", BAD_WAIT_ARGUMENTS)
def test_bad_wait_arguments_are_invalid_input(mode, kind, kwargs, named):
    client = ScriptedClient(script=["PENDING"])
    with pytest.raises(InvalidInputError) as caught:
        _wait(client, mode, kind, **kwargs)
    message = str(caught.value)
    assert message.startswith(named + " must be"), message
    assert repr(next(iter(kwargs.values()))) in message  # it says what it got
    assert client.polls == 0  # refused before the first look


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"timeout": float("nan")}, "timeout"),
        ({"poll_interval": "often"}, "poll_interval"),
        ({"backoff": 0.5}, "backoff"),
        ({"backoff": float("inf")}, "backoff"),
        ({"jitter": 1.5}, "jitter"),
        ({"jitter": float("nan")}, "jitter"),
        ({"what": ""}, "what"),
    ],
)
def test_the_wait_plan_itself_refuses_bad_arguments(kwargs, named):
    from deployflow.waiting import WaitPlan

    what = kwargs.pop("what", "Deployment 'd'")
    with pytest.raises(InvalidInputError, match=f"^{named} must be"):
        WaitPlan(what, **kwargs)


@MODES
def test_numeric_strings_are_accepted_as_the_cli_and_templates_send_them(mode):
    client = ScriptedClient(script=["PENDING", "READY"])
    status = _wait(client, mode, "deployment", timeout="5", poll_interval="0.01", max_poll_interval="0.02",
                   not_found_grace="1.5")
    assert status.is_ready


def test_a_max_poll_interval_below_the_poll_interval_is_raised_to_it():
    from deployflow.waiting import WaitPlan

    plan = WaitPlan("Deployment 'd'", timeout=10, poll_interval=20, jitter=0)  # max_poll_interval 15
    assert plan.max_poll_interval == 20
    assert plan.observe(Status(State.PENDING)) == pytest.approx(10, abs=0.5)  # clipped to the deadline only


# --------------------------------------------------------------------------------------------------
# Deadlines flow down: a status call that hangs cannot hold a wait past its timeout
# --------------------------------------------------------------------------------------------------


@MODES
@pytest.mark.parametrize("target", ["serving", "gateway"])
def test_a_hung_status_call_ends_at_the_wait_deadline(mode, target):
    from support.scripted_server import ScriptedServer

    from deployflow import get_deploy_client

    with ScriptedServer() as server:
        server.add(200, {"name": "d"}, delay=30.0, times=3)  # far past the wait's timeout
        uri = f"serving+{server.url}" if target == "serving" else server.url
        # The client's own timeouts are far longer than the wait: only the wait's deadline can end it.
        with get_deploy_client(uri, timeout=120, total_timeout=300) as client:
            started = time.monotonic()
            kind = "deployment" if target == "serving" else "endpoint"  # the gateway serves endpoints
            wait = getattr(client, f"wait_for_{kind}" + ("_async" if mode == "async" else ""))
            with pytest.raises(WaitTimeoutError):
                if mode == "sync":
                    wait("d", timeout=3, poll_interval=0.1)
                else:
                    asyncio.run(wait("d", timeout=3, poll_interval=0.1))
            elapsed = time.monotonic() - started
        assert len(server.requests) >= 1
    assert 2.9 <= elapsed < 4.5, elapsed


class HangingClient(ScriptedClient):
    """A plugin-like client whose async status check never returns and makes no HTTP call."""

    async def deployment_status_async(self, name, endpoint=None):
        await asyncio.sleep(3600)


def test_the_async_wait_cancels_a_poll_that_outlives_the_deadline():
    client = HangingClient(script=[State.PENDING])
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError):
        asyncio.run(client.wait_for_deployment_async("d", timeout=1, poll_interval=0.1))
    assert time.monotonic() - started < 3.0


# --------------------------------------------------------------------------------------------------
# A wait inside a step's deadline ends by it (the step's one deadline reaches every wait under it)
# --------------------------------------------------------------------------------------------------


@pytest.mark.timeout(10)
@MODES
@KINDS
def test_a_wait_inside_a_deadline_scope_ends_by_that_deadline(mode, kind):
    from deployflow.retry import operation

    client = ScriptedClient(script=[Status(State.PENDING, reason="loading")])
    started = time.monotonic()
    with operation(timeout=0.5), pytest.raises(WaitTimeoutError) as caught:
        _wait(client, mode, kind, timeout=30)
    assert time.monotonic() - started < 2.5
    assert "caller's deadline" in str(caught.value) and "timeout was 30 s" in str(caught.value)
    assert caught.value.last_status == Status(State.PENDING, reason="loading")
