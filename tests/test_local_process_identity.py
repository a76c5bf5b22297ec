"""Whether a recorded server process is still running, when /proc and the wall clock disagree.

Two things /proc does that once made a starting server look dead, so that the wait for it stopped it
(a flaky Prefect test: "exited (unknown exit status) before it was ready", 2 s after the start):

* right after ``Popen`` returns, the new process's command line can read empty for a few milliseconds
  (measured here: up to 8 ms on an idle machine), so "its spec file is on its command line" fails;
* psutil gives start times in wall-clock seconds (the start since boot plus the boot time, which moves
  when the clock is adjusted and is reported to the whole second), so two readings can differ by 1 s.

These tests make psutil answer that way and check what the local target concludes.
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
    """psutil now says the process started ``seconds`` later than it did (as if it were another one)."""
    real = psutil.Process.create_time
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: real(self) + seconds)


def _adjust_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """The wall clock was set ``seconds`` forward: the boot time psutil reads moves, and every
    wall-clock start time with it."""
    _shift_start(monkeypatch, seconds)
    real_boot = psutil.boot_time
    monkeypatch.setattr(psutil, "boot_time", lambda: real_boot() + seconds)


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


@pytest.fixture
def stranger(tmp_path):
    """A process someone else started (not a child of this interpreter), and its record."""
    spec = str(tmp_path / "s.json")
    popen = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "--spec", spec])
    try:
        deadline = time.monotonic() + 10
        while spec not in psutil.Process(popen.pid).cmdline() and time.monotonic() < deadline:
            time.sleep(0.005)  # its command line reads empty until it has been exec'd
        yield {"pid": popen.pid, **processes.start_times(popen.pid), "spec_path": spec}
    finally:
        popen.kill()
        popen.wait(10)


def test_another_callers_record_survives_any_clock_adjustment(stranger, monkeypatch):
    assert stranger["pid"] not in processes._children and is_running(stranger)
    _adjust_clock(monkeypatch, 3600.0)
    assert is_running(stranger)
    monkeypatch.undo()
    _shift_start(monkeypatch, 5.0)  # the pid's process started later: another process has it
    assert not is_running(stranger)
    monkeypatch.undo()
    assert not is_running({**stranger, "spec_path": stranger["spec_path"] + ".other"})


def test_a_command_line_that_reads_empty_leaves_the_start_time_to_decide(stranger, monkeypatch):
    monkeypatch.setattr(psutil.Process, "cmdline", lambda self: [])
    assert is_running(stranger)
    _shift_start(monkeypatch, 5.0)
    assert not is_running(stranger)


def test_a_record_from_an_older_version_allows_a_second_of_clock_adjustment(stranger, monkeypatch):
    older = {key: value for key, value in stranger.items() if key != "boot_start"}
    _adjust_clock(monkeypatch, 1.0)  # the boot time moved by its one-second step
    assert is_running(older)
    monkeypatch.undo()
    _shift_start(monkeypatch, START_TIME_SLACK + 5.0)
    assert not is_running(older)


def test_an_update_marker_stays_live_across_a_clock_adjustment(monkeypatch):
    from deployflow.targets.local.lifecycle import _operation, _operation_live

    marker = _operation("update")
    assert _operation_live(marker)
    _adjust_clock(monkeypatch, -3600.0)
    assert _operation_live(marker)
    monkeypatch.undo()
    _shift_start(monkeypatch, 30.0)
    assert not _operation_live(marker)  # the owner's pid now names a process that started later


def test_a_start_is_not_taken_for_a_death_while_proc_reads_oddly(child, monkeypatch):
    # While the child starts, psutil answers as if it were another process: the wait goes on until its
    # own deadline instead of stopping a live child.
    _shift_start(monkeypatch, -30.0)
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError):
        wait_until_serving(child, what="sleeper", timeout=1.0, ping=lambda url: False)
    assert time.monotonic() - started >= 1.0
