"""Whether a recorded server process is still running, when /proc and the wall clock disagree.

psutil reports a process's start in wall-clock seconds (its start since boot plus the boot time, which
moves when the clock is adjusted and is given to the whole second). A check that compared two readings
to half a second once took a server that was starting for a dead one, and stopped it (a flaky Prefect
test, "exited (unknown exit status) before it was ready"). These tests shift psutil's answers the way
such an adjustment does and check what the local target concludes.
"""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from deployflow.errors import WaitTimeoutError
from deployflow.targets.local import process as processes
from deployflow.targets.local.process import START_TIME_SLACK, is_running, spawn, stop, wait_until_serving


def _shift_start(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    real = psutil.Process.create_time
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: real(self) + seconds)


@pytest.fixture
def child(tmp_path):
    """A process this interpreter started the way servers are started (spawn), sleeping."""
    record = spawn("deployflow_sleeper", {"ready_file": str(tmp_path / "ready.json")}, tmp_path,
                   log_name="log.txt", generation="g1", env_extra={"PYTHONPATH": str(tmp_path)})
    yield record
    stop(record, timeout=5)


@pytest.fixture(autouse=True)
def _sleeper_module(tmp_path):
    (tmp_path / "deployflow_sleeper.py").write_text("import time\ntime.sleep(60)\n")


def test_a_child_is_judged_by_its_own_process_handle_not_by_proc(child, monkeypatch):
    assert is_running(child)
    # However far the start time moves and whatever the command line reads, a child that was not
    # reaped keeps its pid: it is running.
    _shift_start(monkeypatch, 3600.0)
    monkeypatch.setattr(psutil.Process, "cmdline", lambda self: [])
    assert is_running(child)
    monkeypatch.undo()
    stop(child, timeout=5)
    assert not is_running(child)


def test_another_callers_record_survives_a_clock_adjustment_of_a_second(tmp_path, monkeypatch):
    # Started by someone else: not a child of this interpreter, so psutil's view is all there is.
    popen = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "--spec", str(tmp_path / "s.json")])
    try:
        record = {"pid": popen.pid, "create_time": psutil.Process(popen.pid).create_time(),
                  "spec_path": str(tmp_path / "s.json")}
        assert popen.pid not in processes._children and is_running(record)
        _shift_start(monkeypatch, 1.0)  # the boot time moved by its one-second step
        assert is_running(record)
        monkeypatch.undo()
        _shift_start(monkeypatch, START_TIME_SLACK + 5.0)  # a much later start: another process
        assert not is_running(record)
        monkeypatch.undo()
        assert not is_running({**record, "spec_path": str(tmp_path / "other.json")})
    finally:
        popen.kill()
        popen.wait(10)


def test_a_start_is_not_taken_for_a_death_while_proc_reads_oddly(child, monkeypatch):
    # While the child starts, /proc answers as if the clock had been set back: the wait goes on until
    # its own deadline instead of stopping a live process.
    _shift_start(monkeypatch, -30.0)
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError):
        wait_until_serving(child, what="sleeper", timeout=1.0, ping=lambda url: False)
    assert time.monotonic() - started >= 1.0
