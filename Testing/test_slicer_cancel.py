"""Cancel reaches the process that does the work (issue 19, defects 8 and 9): in Slicer a job's command runs under
``PythonSlicer``, a launcher that starts ``python-real`` as its child and forwards no signal
(``python_slicer_launcher.py`` mirrors it), and on Windows the tree is ended by ``taskkill`` without a console."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import python_slicer_launcher
from python_slicer_launcher import running
import slicer_scene  # noqa: F401  (puts the module folder on sys.path)
from ContrastSegLogic import process as process_module
from ContrastSegLogic.job import Job, JobStep
from ContrastSegLogic.job_folder import JobFolder
from ContrastSegLogic.process import SubprocessHandle, SubprocessLauncher, library_environment

POSIX_WITH_PROC = pytest.mark.skipif(os.name == "nt" or not Path("/proc/self/stat").exists(),
                                     reason="reads process states from Linux's /proc")

# python-real's side of a job (ContrastSegLib.runtime.stop): the first SIGTERM only asks the loop to stop after its
# step, and the weights are then written ("stop and keep"); here a step and the write take a second.
STOPS_AND_KEEPS = """
import json, os, time
from pathlib import Path
from ContrastSegLib.runtime.stop import keep_on_stop, stop_on_signals, stop_requested
with stop_on_signals():
    keep_on_stop()
    print(json.dumps({"event": "progress", "step": 1, "total": 9, "pid": os.getpid()}), flush=True)
    while stop_requested() is None:
        with open("outputs/steps.txt", "a") as steps:
            steps.write("step\\n")
        time.sleep(0.05)
    time.sleep(1.0)
    Path("outputs").mkdir(exist_ok=True)
    Path("outputs/kept.pt").write_text("weights")
"""
# a python-real that a SIGTERM does not end (stuck in native code, or a signal handler that never returns)
IGNORES_SIGTERM = """
import json, os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(json.dumps({"event": "progress", "step": 1, "total": 9, "pid": os.getpid()}), flush=True)
while True:
    with open("outputs/steps.txt", "a") as steps:
        steps.write("step\\n")
    time.sleep(0.05)
"""


@pytest.fixture
def python_slicer(tmp_path, monkeypatch):
    """``PythonSlicer`` on PATH is the launcher stand-in, so jobs run as Slicer runs them."""
    script = python_slicer_launcher.install(tmp_path / "slicer-bin")
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    assert process_module.python_executable() == str(script)
    return script


def started_job(tmp_path: Path, code: str) -> tuple[Job, int]:
    """A job whose one step runs ``code`` under ``PythonSlicer``, once its python-real reported: (job, its pid)."""
    folder = JobFolder.create(tmp_path / "jobs", "finetune")
    command = [process_module.python_executable(), "-c", code]
    job = Job("finetune", folder, [JobStep("train", command)], SubprocessLauncher(), library_environment()).start()
    deadline = time.monotonic() + 60
    while True:
        progress = [e for e in job.poll() if e.get("event") == "progress"]
        if progress:
            return job, progress[0]["pid"]
        assert time.monotonic() < deadline and not job.done, (job.error, job.folder.log_tail())
        time.sleep(0.05)


@POSIX_WITH_PROC
@pytest.mark.parametrize("code", [STOPS_AND_KEEPS, IGNORES_SIGTERM], ids=["stops-and-keeps", "ignores-sigterm"])
def test_cancel_ends_python_real_under_the_launcher_before_its_folder_goes(tmp_path, python_slicer, monkeypatch,
                                                                           code):
    monkeypatch.setattr(process_module, "KILL_GRACE_S", 2.0)
    job, real_pid = started_job(tmp_path, code)
    launcher = job._handle.process
    assert real_pid != launcher.pid and os.getpgid(real_pid) == launcher.pid  # python-real: a child in its group
    try:
        job.cancel()
        assert job.state == "cancelled" and launcher.poll() is not None
        assert not running(real_pid), "python-real outlived the cancel"
        time.sleep(1.5)  # what a survivor would write after the folder was emptied
        assert not job.folder.outputs.exists() and not job.folder.inputs.exists()
        assert json.loads(job.folder.record_path.read_text(encoding="utf-8"))["state"] == "cancelled"
    finally:
        if running(real_pid):
            os.kill(real_pid, signal.SIGKILL)


class FinishedRun:
    """``subprocess.run``'s stand-in: records each call's arguments and keywords."""

    def __init__(self):
        self.calls: list[tuple[list[str], dict]] = []

    def __call__(self, command, **options):
        self.calls.append((list(command), options))
        return subprocess.CompletedProcess(command, 0, "", "")


def test_windows_cancel_runs_taskkill_without_a_console(monkeypatch):
    """On Windows the tree is ended by ``taskkill /F /T``, itself a console program: it must be started with
    CREATE_NO_WINDOW, or a console window flashes up over Slicer at every cancel."""
    run = FinishedRun()
    monkeypatch.setattr(subprocess, "run", run)
    polls = []
    process = SimpleNamespace(pid=4242, poll=lambda: 1 if polls.append(1) or len(polls) > 1 else None,
                              wait=lambda timeout=None: 1)
    with monkeypatch.context() as windows:
        windows.setattr(os, "name", "nt")
        SubprocessHandle(process).kill_tree()
    (command, options), = run.calls
    assert command == ["taskkill", "/F", "/T", "/PID", "4242"]
    assert options.get("creationflags", 0) & process_module.CREATE_NO_WINDOW


class Unkillable:
    """A process handle whose tree did not end when cancelled (e.g. a member no longer ours to signal)."""

    def lines(self):
        return iter(())

    def poll(self):
        return None

    def wait(self, timeout=None):
        return 0

    def interrupt(self):
        pass

    def kill_tree(self):
        return False


def test_a_cancel_that_could_not_end_a_process_keeps_its_folder(tmp_path):
    folder = JobFolder.create(tmp_path / "jobs", "finetune")
    launcher = SimpleNamespace(launch=lambda command, cwd, env, log_path: Unkillable())
    job = Job("finetune", folder, [JobStep("train", ["python"])], launcher, {}).start()
    job.cancel()
    assert job.state == "cancelled" and folder.inputs.is_dir() and folder.outputs.is_dir()
    record = folder.record()
    assert record["state"] == "cancelled" and f"{folder.root} was kept" in record["message"]
